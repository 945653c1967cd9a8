//! Taking the binaries out of a release tarball.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::fsx::{self, Outcome};

use super::DownloadError;

/// Binaries a release carries; `etcd` is required, the others are taken when present.
pub const BINARIES: [&str; 3] = ["etcd", "etcdctl", "etcdutl"];

/// Reads `etcd`, `etcdctl` and `etcdutl` from `<top>/` inside the gzip tarball `data`.
///
/// Guarantees: fails (with nothing returned) when `etcd` is not in the tarball.
pub fn binaries(data: &[u8], top: &str) -> Result<Vec<(String, Vec<u8>)>, DownloadError> {
    let bad = |reason: String| DownloadError::BadTarball { reason };
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(data));
    let mut out = Vec::new();
    for entry in ar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let rel = path.strip_prefix(top).ok().map(Path::to_path_buf);
        let Some(name) = rel.as_ref().and_then(|r| r.to_str()) else {
            continue;
        };
        if BINARIES.contains(&name) && entry.header().entry_type().is_file() {
            let mut buf = Vec::new();
            entry
                .read_to_end(&mut buf)
                .map_err(|e| bad(e.to_string()))?;
            out.push((name.to_string(), buf));
        }
    }
    if !out.iter().any(|(n, _)| n == "etcd") {
        return Err(bad(format!("no {top}/etcd inside")));
    }
    out.sort();
    Ok(out)
}

/// Writes binaries into `dir` (0755, atomically); returns the paths that changed.
pub fn install_binaries(
    bins: &[(String, Vec<u8>)],
    dir: &Path,
) -> Result<Vec<PathBuf>, DownloadError> {
    fsx::ensure_dir(dir, 0o755)?;
    let mut changed = Vec::new();
    for (name, data) in bins {
        let p = dir.join(name);
        if fsx::write_file(&p, data, 0o755)? != Outcome::Unchanged {
            changed.push(p);
        }
    }
    Ok(changed)
}
