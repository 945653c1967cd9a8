//! Putting files and directories in place with exact mode and owner, only when different.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::{chown, Gid, Uid};

use crate::fsx::{self, FsError};

use super::InstallError;

fn set_owner(path: &Path, uid: Uid, gid: Gid) -> Result<bool, InstallError> {
    let meta = std::fs::metadata(path).map_err(|e| FsError::new("stat", path, e))?;
    if meta.uid() == uid.as_raw() && meta.gid() == gid.as_raw() {
        return Ok(false);
    }
    chown(path, Some(uid), Some(gid)).map_err(|e| InstallError::Chown {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(true)
}

/// Installs `content` at `dest` with `mode`, owned by `uid:gid`; creates missing parent
/// directories 0755 root.
///
/// Guarantees: a file already identical in content, mode and owner is not touched; a new
/// content is written by temp + rename with the mode set before the first byte. Returns
/// whether anything changed.
pub fn file(
    dest: &Path,
    content: &[u8],
    mode: u32,
    uid: Uid,
    gid: Gid,
) -> Result<bool, InstallError> {
    if let Some(parent) = dest.parent() {
        if !parent.is_dir() {
            fsx::ensure_dir(parent, 0o755)?;
        }
    }
    let changed = fsx::write_file(dest, content, mode)?.changed();
    Ok(set_owner(dest, uid, gid)? || changed)
}

/// Creates `dir` (and parents) with exactly `mode`, owned by `uid:gid`. Returns whether
/// anything changed.
pub fn dir(dir: &Path, mode: u32, uid: Uid, gid: Gid) -> Result<bool, InstallError> {
    let changed = fsx::ensure_dir(dir, mode)?;
    Ok(set_owner(dir, uid, gid)? || changed)
}
