//! `systemctl` calls.

use std::process::Command;

use super::InstallError;

fn systemctl(args: &[&str]) -> Result<std::process::Output, InstallError> {
    Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| InstallError::Command {
            command: format!("systemctl {}", args.join(" ")),
            reason: e.to_string(),
        })
}

fn must(args: &[&str]) -> Result<(), InstallError> {
    let out = systemctl(args)?;
    if out.status.success() {
        return Ok(());
    }
    Err(InstallError::Command {
        command: format!("systemctl {}", args.join(" ")),
        reason: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ),
    })
}

/// `systemctl daemon-reload`.
pub fn daemon_reload() -> Result<(), InstallError> {
    must(&["daemon-reload"])
}

/// Enables `unit` unless `systemctl is-enabled` already says `enabled`. Returns whether it
/// changed anything.
pub fn enable(unit: &str) -> Result<bool, InstallError> {
    let out = systemctl(&["is-enabled", unit])?;
    if String::from_utf8_lossy(&out.stdout).trim() == "enabled" {
        return Ok(false);
    }
    must(&["enable", unit])?;
    Ok(true)
}

/// True when `systemctl is-active` says `active`.
pub fn is_active(unit: &str) -> Result<bool, InstallError> {
    Ok(systemctl(&["is-active", unit])?.status.success())
}

/// Starts `unit` unless it is active (`no_block`: do not wait for readiness, as the first
/// members of a new cluster must not). Returns whether it started it.
pub fn start(unit: &str, no_block: bool) -> Result<bool, InstallError> {
    if is_active(unit)? {
        return Ok(false);
    }
    if no_block {
        must(&["start", "--no-block", unit])?;
    } else {
        must(&["start", unit])?;
    }
    Ok(true)
}

/// Restarts `unit`.
pub fn restart(unit: &str, no_block: bool) -> Result<(), InstallError> {
    if no_block {
        must(&["restart", "--no-block", unit])
    } else {
        must(&["restart", unit])
    }
}
