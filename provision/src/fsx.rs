//! File writing that is atomic and idempotent.
//!
//! Every file the provisioner produces goes through [`write_file`]: the content is written
//! to a temporary file in the same directory, fsynced and renamed over the target, so a
//! reader (a running etcd reloading its certificate) sees either the old or the new file,
//! never a torn one. A file whose content and mode already match is not touched at all, so
//! its mtime stays as it was: a second run of any command changes nothing.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A filesystem failure, naming the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct FsError {
    /// What was being done ("write", "create directory", ...).
    pub action: &'static str,
    /// The path involved.
    pub path: PathBuf,
    /// The underlying I/O error.
    #[source]
    pub source: std::io::Error,
}

impl FsError {
    /// Wraps an I/O error with the action and path it belongs to.
    pub fn new(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What [`write_file`] did to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Content and mode were already as requested; the file was not touched.
    Unchanged,
    /// The file did not exist and was created.
    Created,
    /// The content differed and the file was replaced (temp + rename).
    Updated,
    /// Only the mode differed and was changed.
    ModeChanged,
}

impl Outcome {
    /// True when the file on disk changed in any way.
    pub fn changed(self) -> bool {
        self != Outcome::Unchanged
    }
}

/// Writes `content` to `path` with permission bits `mode`, atomically and only if needed.
///
/// Guarantees: when the existing file has the same bytes and mode, nothing is written
/// (mtime preserved) and [`Outcome::Unchanged`] is returned; otherwise the new content is
/// written to a temporary file beside `path` with `mode` set before any byte is written,
/// fsynced, and renamed over `path`, so readers never see partial content and a secret
/// never exists with looser permissions. Parent directories must exist.
pub fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<Outcome, FsError> {
    match fs::read(path) {
        Ok(existing) if existing == content => {
            let meta = fs::metadata(path).map_err(|e| FsError::new("stat", path, e))?;
            if meta.permissions().mode() & 0o7777 == mode {
                return Ok(Outcome::Unchanged);
            }
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|e| FsError::new("chmod", path, e))?;
            Ok(Outcome::ModeChanged)
        }
        Ok(_) => {
            replace(path, content, mode)?;
            Ok(Outcome::Updated)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            replace(path, content, mode)?;
            Ok(Outcome::Created)
        }
        Err(e) => Err(FsError::new("read", path, e)),
    }
}

/// Unconditionally replaces `path` with `content` via a temporary file and rename.
fn replace(path: &Path, content: &[u8], mode: u32) -> Result<(), FsError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".etcd-provision.")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(|e| FsError::new("create temporary file in", dir, e))?;
    // The umask may have narrowed the mode given at creation; set it exactly.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))
        .map_err(|e| FsError::new("chmod", tmp.path(), e))?;
    tmp.write_all(content)
        .map_err(|e| FsError::new("write", tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| FsError::new("fsync", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| FsError::new("rename into", path, e.error))?;
    Ok(())
}

/// Creates `path` (and missing parents) and sets its mode to `mode`.
///
/// Guarantees: an existing directory with the right mode is left untouched; returns
/// whether anything changed.
pub fn ensure_dir(path: &Path, mode: u32) -> Result<bool, FsError> {
    let mut changed = false;
    if !path.is_dir() {
        fs::create_dir_all(path).map_err(|e| FsError::new("create directory", path, e))?;
        changed = true;
    }
    let meta = fs::metadata(path).map_err(|e| FsError::new("stat", path, e))?;
    if meta.permissions().mode() & 0o7777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| FsError::new("chmod", path, e))?;
        changed = true;
    }
    Ok(changed)
}

/// Reads a file, or `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FsError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FsError::new("read", path, e)),
    }
}

/// Checks that `dir` exists (creating it with `mode` if not) and that a file can be created
/// in it, before anything is written there.
///
/// Guarantees: on success a probe file was created and removed; on failure nothing is left
/// behind except directories that did not exist before.
pub fn check_writable(dir: &Path, mode: u32) -> Result<(), FsError> {
    ensure_dir(dir, mode)?;
    let probe = tempfile::Builder::new()
        .prefix(".etcd-provision.probe.")
        .tempfile_in(dir)
        .map_err(|e| FsError::new("write in", dir, e))?;
    probe
        .close()
        .map_err(|e| FsError::new("remove probe file in", dir, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn second_identical_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.key");
        assert_eq!(write_file(&p, b"secret", 0o600).unwrap(), Outcome::Created);
        let m1 = fs::metadata(&p).unwrap();
        assert_eq!(m1.permissions().mode() & 0o777, 0o600);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(
            write_file(&p, b"secret", 0o600).unwrap(),
            Outcome::Unchanged
        );
        let m2 = fs::metadata(&p).unwrap();
        assert_eq!(m1.mtime_nsec(), m2.mtime_nsec());
        assert_eq!(m1.ino(), m2.ino());
    }

    #[test]
    fn content_change_replaces_by_rename_and_mode_change_chmods() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.crt");
        write_file(&p, b"one", 0o644).unwrap();
        let ino1 = fs::metadata(&p).unwrap().ino();
        assert_eq!(write_file(&p, b"two", 0o644).unwrap(), Outcome::Updated);
        assert_ne!(
            fs::metadata(&p).unwrap().ino(),
            ino1,
            "renamed, not rewritten"
        );
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(write_file(&p, b"two", 0o600).unwrap(), Outcome::ModeChanged);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // No temporary files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unwritable_directory_is_reported_with_path() {
        let err = check_writable(Path::new("/proc/self/etcd-provision-test"), 0o755).unwrap_err();
        assert!(
            err.to_string().contains("/proc/self/etcd-provision-test"),
            "{err}"
        );
    }
}
