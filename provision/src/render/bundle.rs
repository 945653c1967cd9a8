//! A member's bundle: the files in memory, written as a directory and as a tarball.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::fsx::{self, FsError, Outcome};

use super::manifest::{Manifest, MANIFEST_NAME};

/// One file of a bundle, in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    /// Path inside the bundle.
    pub name: String,
    /// Content.
    pub content: Vec<u8>,
    /// Mode inside the bundle directory and tarball.
    pub mode: u32,
}

/// A member's complete bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The manifest (also one of `files`).
    pub manifest: Manifest,
    /// Every file, manifest included, sorted by name.
    pub files: Vec<BundleFile>,
}

impl Bundle {
    /// The file named `name`.
    pub fn file(&self, name: &str) -> Option<&BundleFile> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Writes the bundle into `dir` (created 0700: it holds private keys).
    ///
    /// Guarantees: unchanged files are not touched; returns the paths that changed.
    pub fn write_dir(&self, dir: &Path) -> Result<Vec<PathBuf>, FsError> {
        let mut changed = Vec::new();
        fsx::ensure_dir(dir, 0o700)?;
        for f in &self.files {
            let path = dir.join(&f.name);
            if let Some(parent) = path.parent() {
                if !parent.is_dir() {
                    fsx::ensure_dir(parent, 0o700)?;
                }
            }
            if fsx::write_file(&path, &f.content, f.mode)? != Outcome::Unchanged {
                changed.push(path);
            }
        }
        Ok(changed)
    }

    /// The bundle as a gzip-compressed tarball under the top directory `<member>/`.
    ///
    /// Guarantees: deterministic (sorted entries, mtime 0, uid/gid 0), so the same bundle
    /// gives the same bytes and rewriting it changes nothing.
    pub fn tarball(&self) -> Result<Vec<u8>, std::io::Error> {
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.mode(tar::HeaderMode::Deterministic);
        let top = &self.manifest.member;
        let mut dirs: Vec<String> = vec![String::new()];
        for f in &self.files {
            for d in Path::new(&f.name).ancestors().skip(1) {
                let d = d.display().to_string();
                if !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
        }
        dirs.sort();
        for d in dirs {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o700);
            h.set_size(0);
            h.set_mtime(0);
            let name = if d.is_empty() {
                format!("{top}/")
            } else {
                format!("{top}/{d}/")
            };
            tar.append_data(&mut h, name, std::io::empty())?;
        }
        for f in &self.files {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(f.mode);
            h.set_size(f.content.len() as u64);
            h.set_mtime(0);
            tar.append_data(&mut h, format!("{top}/{}", f.name), f.content.as_slice())?;
        }
        let mut gz = tar.into_inner()?;
        gz.flush()?;
        gz.finish()
    }
}

/// Reads a bundle directory's manifest.
pub fn read_manifest(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join(MANIFEST_NAME);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}
