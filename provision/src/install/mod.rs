//! Installing a member bundle on its node (as root): binaries, the service account, the
//! data directory (0700, owned by the service user), certificates, unit and config; then
//! `systemctl daemon-reload`, enable and start when asked.
//!
//! Idempotent: a file identical in content, mode and owner is not touched, systemd is
//! reloaded only when the unit changed, and enable/start are skipped when already done, so
//! a second run changes nothing. Everything is read and checked before the first change.

mod account;
mod files;
mod systemd;

use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};

use crate::fsx::FsError;
use crate::render::{read_manifest, Manifest, Owner};

/// Why an install failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Not running as root.
    #[error("install must run as root (it creates users and writes system paths)")]
    NotRoot,
    /// The bundle is unusable.
    #[error("bundle {dir}: {reason}")]
    Bundle {
        /// Bundle directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No etcd binary to install or already installed.
    #[error("no etcd binary: {0}")]
    NoBinary(String),
    /// A user or group problem.
    #[error("{0}")]
    Account(String),
    /// A command failed.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command.
        command: String,
        /// Its error output.
        reason: String,
    },
    /// chown failed.
    #[error("chown {path}: {reason}")]
    Chown {
        /// The path.
        path: PathBuf,
        /// The error.
        reason: String,
    },
    /// A file operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// Options of an install.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Directory holding `etcd` (and optionally `etcdctl`, `etcdutl`) to install; without it
    /// the binary must already be in the bundle's bin dir.
    pub binaries: Option<PathBuf>,
    /// `systemctl enable` the unit.
    pub enable: bool,
    /// `systemctl start` the unit (if not active).
    pub start: bool,
    /// Do not wait for readiness when starting (new clusters: start all members at once).
    pub no_block: bool,
    /// Restart an active unit when its unit, config or binaries changed.
    pub restart_on_change: bool,
    /// Skip all systemctl calls (image building).
    pub no_systemd: bool,
}

/// What an install changed, one line per change.
#[derive(Debug, Clone, Default)]
pub struct InstallReport {
    /// Changes in order; empty when nothing changed.
    pub changes: Vec<String>,
}

struct Staged {
    dest: PathBuf,
    content: Vec<u8>,
    mode: u32,
    owner: Owner,
    needs_restart: bool,
}

fn stage(
    bundle: &Path,
    manifest: &Manifest,
    opts: &InstallOptions,
) -> Result<Vec<Staged>, InstallError> {
    let bad = |reason: String| InstallError::Bundle {
        dir: bundle.to_path_buf(),
        reason,
    };
    let mut staged = Vec::new();
    for f in &manifest.files {
        if f.source.contains("..") || !f.dest.starts_with('/') {
            return Err(bad(format!("unsafe entry {} -> {}", f.source, f.dest)));
        }
        let src = bundle.join(&f.source);
        let content = std::fs::read(&src).map_err(|e| bad(format!("{}: {e}", src.display())))?;
        staged.push(Staged {
            dest: PathBuf::from(&f.dest),
            content,
            mode: f.mode_bits(),
            owner: f.owner,
            needs_restart: !f.source.starts_with("pki/"),
        });
    }
    let bin_dir = PathBuf::from(&manifest.bin_dir);
    match &opts.binaries {
        Some(dir) => {
            let mut found = false;
            for name in crate::download::BINARIES {
                let src = dir.join(name);
                match std::fs::read(&src) {
                    Ok(content) => {
                        found |= name == "etcd";
                        staged.push(Staged {
                            dest: bin_dir.join(name),
                            content,
                            mode: 0o755,
                            owner: Owner::Root,
                            needs_restart: name == "etcd",
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(InstallError::NoBinary(format!("{}: {e}", src.display())))
                    }
                }
            }
            if !found {
                return Err(InstallError::NoBinary(format!(
                    "{} has no etcd",
                    dir.display()
                )));
            }
        }
        None => {
            let etcd = bin_dir.join("etcd");
            if !etcd.is_file() {
                return Err(InstallError::NoBinary(format!(
                    "{} does not exist; pass --binaries DIR or --download",
                    etcd.display()
                )));
            }
        }
    }
    Ok(staged)
}

/// Installs the bundle in `bundle` on this node.
///
/// Guarantees: refuses to run unless root; reads and checks every source file before the
/// first change; creates the account, the data directory (0700, service user), and every
/// manifest file with its mode and owner; reloads systemd only when the unit changed;
/// enables/starts only when asked and not already done. A second identical run reports no
/// change and leaves every file's content and mtime as they were.
pub fn install(bundle: &Path, opts: &InstallOptions) -> Result<InstallReport, InstallError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(InstallError::NotRoot);
    }
    let manifest = read_manifest(bundle).map_err(|reason| InstallError::Bundle {
        dir: bundle.to_path_buf(),
        reason,
    })?;
    let staged = stage(bundle, &manifest, opts)?;
    let mut report = InstallReport::default();
    let data_dir = PathBuf::from(&manifest.data_dir);
    let (uid, gid, created) = account::ensure(&manifest.user, &manifest.group, &data_dir)?;
    if created {
        report.changes.push(format!(
            "created user {} and group {}",
            manifest.user, manifest.group
        ));
    }
    let root = (Uid::from_raw(0), Gid::from_raw(0));
    if files::dir(&data_dir, 0o700, uid, gid)? {
        report.changes.push(format!(
            "data directory {} (0700 {})",
            data_dir.display(),
            manifest.user
        ));
    }
    let unit_file = format!("{}.service", manifest.unit_name);
    let mut unit_changed = false;
    let mut restart_needed = false;
    for s in &staged {
        // Directories holding private keys the service reads: root:group 0750.
        if s.owner == Owner::Service {
            if let Some(parent) = s.dest.parent() {
                if files::dir(parent, 0o750, root.0, gid)? {
                    report.changes.push(format!(
                        "directory {} (0750 root:{})",
                        parent.display(),
                        manifest.group
                    ));
                }
            }
        }
        let (u, g) = match s.owner {
            Owner::Root => root,
            Owner::Service => (uid, gid),
        };
        if files::file(&s.dest, &s.content, s.mode, u, g)? {
            report
                .changes
                .push(format!("{} ({:04o})", s.dest.display(), s.mode));
            restart_needed |= s.needs_restart;
            if s.dest.file_name().and_then(|n| n.to_str()) == Some(unit_file.as_str()) {
                unit_changed = true;
            }
        }
    }
    if opts.no_systemd {
        return Ok(report);
    }
    if unit_changed {
        systemd::daemon_reload()?;
        report.changes.push("systemctl daemon-reload".into());
    }
    if opts.enable && systemd::enable(&unit_file)? {
        report.changes.push(format!("enabled {unit_file}"));
    }
    if opts.start {
        if systemd::start(&unit_file, opts.no_block)? {
            report.changes.push(format!("started {unit_file}"));
        } else if restart_needed {
            if opts.restart_on_change {
                systemd::restart(&unit_file, opts.no_block)?;
                report.changes.push(format!("restarted {unit_file}"));
            } else {
                tracing::warn!(unit = %unit_file, "unit, config or binary changed while running; restart it (or pass --restart-on-change)");
            }
        }
    }
    for c in &report.changes {
        tracing::info!(change = %c, "installed");
    }
    Ok(report)
}
