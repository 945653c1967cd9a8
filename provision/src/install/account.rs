//! The service user and group: looked up with nix, created with `groupadd`/`useradd`.

use std::path::Path;
use std::process::Command;

use nix::unistd::{Gid, Group, Uid, User};

use super::InstallError;

fn run(cmd: &mut Command) -> Result<(), InstallError> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| InstallError::Command {
        command: shown.clone(),
        reason: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(InstallError::Command {
            command: shown,
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

fn lookup_group(name: &str) -> Result<Option<Group>, InstallError> {
    Group::from_name(name).map_err(|e| InstallError::Account(format!("look up group {name}: {e}")))
}

fn lookup_user(name: &str) -> Result<Option<User>, InstallError> {
    User::from_name(name).map_err(|e| InstallError::Account(format!("look up user {name}: {e}")))
}

/// Makes sure the system group `group` and the system user `user` (primary group `group`,
/// home `home`, no login shell) exist. Returns their ids and whether anything was created.
///
/// Guarantees: existing accounts are left as they are (a user whose primary group differs
/// is an error, not silently changed).
pub fn ensure(user: &str, group: &str, home: &Path) -> Result<(Uid, Gid, bool), InstallError> {
    let mut created = false;
    let g = match lookup_group(group)? {
        Some(g) => g,
        None => {
            run(Command::new("groupadd").args(["--system", group]))?;
            created = true;
            lookup_group(group)?.ok_or_else(|| {
                InstallError::Account(format!("group {group} missing after groupadd"))
            })?
        }
    };
    let u = match lookup_user(user)? {
        Some(u) => u,
        None => {
            run(Command::new("useradd")
                .args([
                    "--system",
                    "--gid",
                    group,
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                ])
                .arg("--home-dir")
                .arg(home)
                .arg("--comment")
                .arg("etcd key-value store")
                .arg(user))?;
            created = true;
            lookup_user(user)?.ok_or_else(|| {
                InstallError::Account(format!("user {user} missing after useradd"))
            })?
        }
    };
    if u.gid != g.gid {
        return Err(InstallError::Account(format!(
            "user {user} exists with primary group id {} instead of {group} ({})",
            u.gid, g.gid
        )));
    }
    Ok((u.uid, g.gid, created))
}
