//! Rendering a member's files: unit, TOML config, `ETCD_*` env file, etcdctl env file and
//! its certificates, with a manifest saying where each goes; written as one directory per
//! member plus `<member>.tar.gz`.
//!
//! Every format is written from one list of settings ([`settings::member_settings`]), so
//! the unit, the TOML file and the env file always agree.

pub mod bundle;
pub mod formats;
pub mod manifest;
pub mod settings;
pub mod unit;

use std::path::{Path, PathBuf};

use crate::fsx::{self, FsError};
use crate::pki::Layout;
use crate::spec::{ClusterSpec, Member};

pub use bundle::{read_manifest, Bundle, BundleFile};
pub use manifest::{Manifest, ManifestFile, Owner, MANIFEST_NAME};
pub use settings::{Bootstrap, MemberPaths, RunningMember};
pub use unit::UnitConfig;

/// Why rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// TLS is on but a certificate the bundle needs is missing.
    #[error("{path} is missing; run `etcd-provision certs generate` first")]
    MissingCert {
        /// The missing file.
        path: PathBuf,
    },
    /// The named member is not in the spec.
    #[error("member {0:?} is not in the spec")]
    UnknownMember(String),
    /// A file could not be read or written.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The tarball could not be built.
    #[error("cannot build tarball for {member}: {source}")]
    Tar {
        /// Member.
        member: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The manifest could not be serialized.
    #[error("cannot serialize manifest: {0}")]
    Manifest(String),
}

/// Options of a render.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// How the unit passes settings.
    pub unit_config: UnitConfig,
    /// PKI directory made by `certs generate` (needed with TLS).
    pub pki_dir: Option<PathBuf>,
}

fn text_file(name: &str, content: String, mode: u32) -> BundleFile {
    BundleFile {
        name: name.into(),
        content: content.into_bytes(),
        mode,
    }
}

/// Renders one member's bundle in memory.
///
/// Guarantees: deterministic for the same inputs; with TLS on, fails with
/// [`RenderError::MissingCert`] before producing anything if a certificate is missing.
pub fn render_member(
    spec: &ClusterSpec,
    member: &Member,
    bootstrap: &Bootstrap,
    opts: &RenderOptions,
) -> Result<Bundle, RenderError> {
    let paths = MemberPaths::new(spec, member);
    let settings = settings::member_settings(spec, member, bootstrap);
    let etcd_bin = paths.bin_dir.join("etcd");
    let unit_name = format!("{}.service", spec.paths.unit_name);
    let mut files = vec![
        text_file(
            &unit_name,
            unit::render_unit(&unit::UnitInput {
                member: &member.name,
                etcd_bin: &etcd_bin,
                user: &spec.paths.user,
                group: &spec.paths.group,
                data_dir: &paths.data_dir,
                config_dir: &paths.config_dir,
                settings: &settings,
                config: opts.unit_config,
            }),
            0o644,
        ),
        text_file(
            "etcd.toml",
            formats::to_toml(&settings, &member.name),
            0o644,
        ),
        text_file("etcd.env", formats::to_env(&settings, &member.name), 0o644),
    ];
    let endpoints: Vec<String> = spec
        .members
        .iter()
        .map(|m| settings::client_url(spec, m))
        .collect();
    let mut manifest_files = vec![
        ManifestFile {
            source: unit_name.clone(),
            dest: paths.unit_dir.join(&unit_name).display().to_string(),
            mode: "0644".into(),
            owner: Owner::Root,
        },
        ManifestFile {
            source: "etcd.toml".into(),
            dest: paths.config_dir.join("etcd.toml").display().to_string(),
            mode: "0644".into(),
            owner: Owner::Root,
        },
        ManifestFile {
            source: "etcd.env".into(),
            dest: paths.config_dir.join("etcd.env").display().to_string(),
            mode: "0644".into(),
            owner: Owner::Root,
        },
        ManifestFile {
            source: "etcdctl.env".into(),
            dest: paths.config_dir.join("etcdctl.env").display().to_string(),
            mode: "0644".into(),
            owner: Owner::Root,
        },
    ];
    if spec.tls.enabled {
        files.push(text_file(
            "etcdctl.env",
            formats::etcdctl_env(
                &endpoints,
                Some((
                    &paths.pki("ca.crt"),
                    &paths.pki("admin.crt"),
                    &paths.pki("admin.key"),
                )),
            ),
            0o644,
        ));
        let pki_dir = opts.pki_dir.clone().unwrap_or_else(|| PathBuf::from("pki"));
        let layout = Layout::new(&pki_dir);
        let server = layout.server(&member.name);
        let peer = layout.peer(&member.name);
        let admin = layout.client("admin");
        let certs: [(&Path, &str, u32, Owner); 7] = [
            (&layout.ca().cert, "ca.crt", 0o644, Owner::Root),
            (&server.cert, "server.crt", 0o644, Owner::Root),
            (&server.key, "server.key", 0o600, Owner::Service),
            (&peer.cert, "peer.crt", 0o644, Owner::Root),
            (&peer.key, "peer.key", 0o600, Owner::Service),
            (&admin.cert, "admin.crt", 0o644, Owner::Root),
            (&admin.key, "admin.key", 0o600, Owner::Root),
        ];
        for (src, name, mode, owner) in certs {
            let content = fsx::read_optional(src)?.ok_or_else(|| RenderError::MissingCert {
                path: src.to_path_buf(),
            })?;
            files.push(BundleFile {
                name: format!("pki/{name}"),
                content,
                mode,
            });
            manifest_files.push(ManifestFile {
                source: format!("pki/{name}"),
                dest: paths.pki(name),
                mode: format!("{mode:04o}"),
                owner,
            });
        }
    } else {
        files.push(text_file(
            "etcdctl.env",
            formats::etcdctl_env(&endpoints, None),
            0o644,
        ));
    }
    let manifest = Manifest {
        member: member.name.clone(),
        unit_name: spec.paths.unit_name.clone(),
        user: spec.paths.user.clone(),
        group: spec.paths.group.clone(),
        data_dir: paths.data_dir.display().to_string(),
        bin_dir: paths.bin_dir.display().to_string(),
        client_url: settings::client_url(spec, member),
        files: manifest_files,
    };
    let manifest_text = format!(
        "# Install manifest of member {}: `etcd-provision install --bundle <this directory>`.\n{}",
        member.name,
        toml::to_string(&manifest).map_err(|e| RenderError::Manifest(e.to_string()))?
    );
    files.push(text_file(MANIFEST_NAME, manifest_text, 0o644));
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Bundle { manifest, files })
}

/// What [`write_all`] wrote.
#[derive(Debug, Clone, Default)]
pub struct RenderReport {
    /// Per member: bundle directory, tarball, and the paths that changed.
    pub members: Vec<(String, PathBuf, PathBuf, Vec<PathBuf>)>,
}

/// Renders the named members (all when `only` is empty) of a new cluster into `out`:
/// `out/<member>/` and `out/<member>.tar.gz`.
///
/// Guarantees: every bundle is rendered in memory before anything is written, so a missing
/// certificate or unknown member writes nothing; unchanged files keep their mtime.
pub fn write_all(
    spec: &ClusterSpec,
    out: &Path,
    only: &[String],
    bootstrap: &Bootstrap,
    opts: &RenderOptions,
) -> Result<RenderReport, RenderError> {
    for name in only {
        if spec.member(name).is_none() {
            return Err(RenderError::UnknownMember(name.clone()));
        }
    }
    let mut bundles = Vec::new();
    for m in &spec.members {
        if only.is_empty() || only.contains(&m.name) {
            let b = render_member(spec, m, bootstrap, opts)?;
            let tgz = b.tarball().map_err(|source| RenderError::Tar {
                member: m.name.clone(),
                source,
            })?;
            bundles.push((b, tgz));
        }
    }
    fsx::check_writable(out, 0o700)?;
    let mut report = RenderReport::default();
    for (b, tgz) in bundles {
        let dir = out.join(&b.manifest.member);
        let mut changed = b.write_dir(&dir)?;
        let tar_path = out.join(format!("{}.tar.gz", b.manifest.member));
        if fsx::write_file(&tar_path, &tgz, 0o600)?.changed() {
            changed.push(tar_path.clone());
        }
        report
            .members
            .push((b.manifest.member.clone(), dir, tar_path, changed));
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
