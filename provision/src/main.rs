//! `etcd-provision` command line: parses arguments, sets up logging and calls the library.
//! The only place that uses `anyhow`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use provision::spec::{self, quick::QuickStart, ClusterSpec};
use provision::{cluster, download, install, pki, render};

/// From an inventory of controllers to every file a TLS etcd cluster needs.
#[derive(Parser, Debug)]
#[command(name = "etcd-provision", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log level filter (also RUST_LOG).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
}

/// Where the cluster spec comes from: a file, or quick-start flags.
#[derive(Args, Debug, Clone)]
struct SpecArgs {
    /// Cluster spec file (TOML). See `etcd-provision example-spec`.
    #[arg(long, conflicts_with_all = ["member", "token", "no_tls", "release_version"])]
    spec: Option<PathBuf>,
    /// Quick start: a member as NAME=IP[,IP|HOSTNAME...]; repeat for each member.
    #[arg(long, value_name = "NAME=ADDRS")]
    member: Vec<String>,
    /// Quick start: initial cluster token.
    #[arg(long)]
    token: Option<String>,
    /// Quick start: plain HTTP instead of TLS.
    #[arg(long)]
    no_tls: bool,
    /// Quick start: etcd release version.
    #[arg(long = "release-version")]
    release_version: Option<String>,
}

impl SpecArgs {
    fn load(&self) -> Result<ClusterSpec> {
        let raw = match &self.spec {
            Some(path) => spec::load_file(path)?,
            None => QuickStart {
                members: self.member.clone(),
                token: self.token.clone(),
                no_tls: self.no_tls,
                version: self.release_version.clone(),
            }
            .to_raw()?,
        };
        Ok(spec::validate(&raw)?)
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a spec and print the members it describes.
    Validate {
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Print an annotated example spec.
    ExampleSpec,
    /// Render each member's unit, config, env files and certificates (directory + tarball).
    Render(RenderArgs),
    /// Download a release tarball, verify it, cache it, and optionally extract the binaries.
    Download {
        #[command(flatten)]
        release: ReleaseArgs,
        /// Write etcd, etcdctl and etcdutl into this directory.
        #[arg(long)]
        extract_to: Option<PathBuf>,
    },
    /// Install a rendered member bundle on this node (root): binaries, user, dirs, files, unit.
    Install {
        /// The member's bundle directory (from `render`).
        #[arg(long)]
        bundle: PathBuf,
        /// Directory with etcd/etcdctl/etcdutl to install.
        #[arg(long, conflicts_with = "download")]
        binaries: Option<PathBuf>,
        /// Download (verified, cached) the release and install its binaries.
        #[arg(long)]
        download: bool,
        #[command(flatten)]
        release: ReleaseArgs,
        /// systemctl enable the unit.
        #[arg(long)]
        enable: bool,
        /// systemctl start the unit (if not active).
        #[arg(long)]
        start: bool,
        /// Start without waiting for readiness (bootstrapping a new cluster).
        #[arg(long)]
        no_block: bool,
        /// Restart a running member whose unit, config or binary changed.
        #[arg(long)]
        restart_on_change: bool,
        /// Do not call systemctl at all.
        #[arg(long)]
        no_systemd: bool,
    },
    /// Show every member's health, role, leader and revision.
    Status {
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Add a spec member to a running cluster as a learner and render its bundle
    /// (initial-cluster = current members + itself, state existing).
    Join {
        #[command(flatten)]
        spec: SpecArgs,
        /// The joining member (a name in the spec).
        #[arg(long = "name")]
        name: String,
        /// PKI directory made by `certs generate` (with TLS).
        #[arg(long)]
        pki_dir: Option<PathBuf>,
        /// Output directory for the member's bundle.
        #[arg(long)]
        out: PathBuf,
        /// How the unit passes settings to etcd.
        #[arg(long, default_value = "flags", value_parser = parse_unit_config)]
        unit_config: render::UnitConfig,
        #[command(flatten)]
        access: AccessArgs,
        /// Also install the bundle on this node and start it (root; needs --binaries).
        #[arg(long, requires = "binaries")]
        install: bool,
        /// Binaries for --install.
        #[arg(long)]
        binaries: Option<PathBuf>,
        /// Then wait for the learner to catch up and promote it.
        #[arg(long)]
        promote: bool,
        /// How long to wait for promotion, in seconds.
        #[arg(long, default_value_t = 300)]
        promote_timeout_secs: u64,
    },
    /// Promote a learner (found by the spec member's peer URL) once it has caught up.
    Promote {
        #[command(flatten)]
        spec: SpecArgs,
        /// The member to promote (a name in the spec).
        #[arg(long = "name")]
        name: String,
        #[command(flatten)]
        access: AccessArgs,
        /// How long to wait, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout_secs_promote: u64,
    },
    /// Make or renew the CA, member and client certificates.
    Certs {
        #[command(subcommand)]
        action: CertsAction,
    },
}

/// Which release to fetch and how to verify it.
#[derive(Args, Debug, Clone)]
struct ReleaseArgs {
    /// Take version, URL and pinned digest from this spec's [release] section.
    #[arg(long = "spec", conflicts_with_all = ["version", "url", "sha256"])]
    release_spec: Option<PathBuf>,
    /// Release version (X.Y.Z).
    #[arg(long = "release-version", default_value = spec::DEFAULT_VERSION)]
    version: String,
    /// Base URL: the tarball is <URL>/v<ver>/etcd-v<ver>-linux-amd64.tar.gz.
    #[arg(long, default_value = spec::DEFAULT_RELEASE_URL)]
    url: String,
    /// Pinned SHA-256 of the tarball (otherwise <URL>/v<ver>/SHA256SUMS is used).
    #[arg(long)]
    sha256: Option<String>,
    /// Extra CA certificate(s) to trust (PEM), for a private mirror.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Cache of verified tarballs.
    #[arg(long, default_value = "/var/cache/etcd-provision")]
    cache_dir: PathBuf,
    /// Use only the cache; never touch the network.
    #[arg(long)]
    offline: bool,
}

impl ReleaseArgs {
    fn request(&self) -> Result<download::Request> {
        let (version, base_url, sha256) = match &self.release_spec {
            Some(path) => {
                let spec = spec::validate(&spec::load_file(path)?)?;
                (
                    spec.release.version,
                    spec.release.base_url,
                    spec.release.sha256,
                )
            }
            None => {
                let mut raw = spec::RawSpec::default();
                raw.release.version = Some(self.version.clone());
                raw.release.url = Some(self.url.clone());
                raw.release.sha256 = self.sha256.clone();
                raw.members.push(spec::RawMember {
                    name: "x".into(),
                    ips: vec!["127.0.0.1".into()],
                    ..Default::default()
                });
                let spec = spec::validate(&raw)?;
                (
                    spec.release.version,
                    spec.release.base_url,
                    spec.release.sha256,
                )
            }
        };
        Ok(download::Request {
            version,
            base_url,
            sha256,
            ca_file: self.ca_file.clone(),
            cache_dir: self.cache_dir.clone(),
            offline: self.offline,
        })
    }
}

/// How to reach a running cluster (defaults from the ETCDCTL_* variables of etcdctl.env).
#[derive(Args, Debug, Clone)]
struct AccessArgs {
    /// Client URLs of running members.
    #[arg(
        long,
        env = "ETCDCTL_ENDPOINTS",
        value_delimiter = ',',
        required = true
    )]
    endpoints: Vec<String>,
    /// CA certificate of the cluster.
    #[arg(long, env = "ETCDCTL_CACERT")]
    cacert: Option<PathBuf>,
    /// Client certificate (e.g. the admin certificate).
    #[arg(long, env = "ETCDCTL_CERT")]
    cert: Option<PathBuf>,
    /// Client key.
    #[arg(long, env = "ETCDCTL_KEY")]
    key: Option<PathBuf>,
    /// Timeout of each request, in seconds.
    #[arg(long, default_value_t = 5)]
    timeout_secs: u64,
}

impl AccessArgs {
    fn access(&self) -> cluster::Access {
        cluster::Access {
            endpoints: self.endpoints.clone(),
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            timeout: Duration::from_secs(self.timeout_secs),
        }
    }
}

/// Arguments of `render`.
#[derive(Args, Debug)]
struct RenderArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// PKI directory made by `certs generate` (with TLS).
    #[arg(long)]
    pki_dir: Option<PathBuf>,
    /// Output directory: one directory and one .tar.gz per member.
    #[arg(long)]
    out: PathBuf,
    /// Only these members (repeatable; default all).
    #[arg(long = "only")]
    only: Vec<String>,
    /// How the unit passes settings to etcd: flags, env-file or config-file.
    #[arg(long, default_value = "flags", value_parser = parse_unit_config)]
    unit_config: render::UnitConfig,
}

fn parse_unit_config(s: &str) -> Result<render::UnitConfig, String> {
    render::UnitConfig::parse(s)
        .ok_or_else(|| format!("{s:?} is not one of flags, env-file, config-file"))
}

#[derive(Subcommand, Debug)]
enum CertsAction {
    /// Create missing certificates; keep valid ones; reissue wrong or expired ones.
    Generate {
        #[command(flatten)]
        spec: SpecArgs,
        /// PKI directory.
        #[arg(long)]
        dir: PathBuf,
        /// Reissue every leaf certificate with a new key (the CA is kept).
        #[arg(long)]
        force: bool,
        /// Use this existing CA certificate (copied into --dir when it has no CA yet).
        #[arg(long, requires = "ca_key")]
        ca_cert: Option<PathBuf>,
        /// Key of --ca-cert.
        #[arg(long, requires = "ca_cert")]
        ca_key: Option<PathBuf>,
    },
    /// Reissue certificates that expire within the renewal window, in place, keeping keys.
    Renew {
        #[command(flatten)]
        spec: SpecArgs,
        /// PKI directory.
        #[arg(long)]
        dir: PathBuf,
        /// Override the spec's renew-before-days.
        #[arg(long)]
        renew_before_days: Option<u32>,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Validate { spec } => {
            let spec = spec.load()?;
            for m in &spec.members {
                let ips: Vec<String> = m.ips.iter().map(|i| i.to_string()).collect();
                println!(
                    "{}: {} client {} peer {}",
                    m.name,
                    ips.join(","),
                    m.client_port,
                    m.peer_port
                );
            }
            println!("spec is valid: {} member(s)", spec.members.len());
        }
        Command::Render(args) => {
            let spec = args.spec.load()?;
            if spec.tls.enabled && args.pki_dir.is_none() {
                bail!("TLS is on: give --pki-dir (the directory `certs generate` wrote)");
            }
            let opts = render::RenderOptions {
                unit_config: args.unit_config,
                pki_dir: args.pki_dir,
            };
            let report =
                render::write_all(&spec, &args.out, &args.only, &render::Bootstrap::New, &opts)?;
            for (member, dir, tar, changed) in &report.members {
                let state = if changed.is_empty() {
                    "unchanged"
                } else {
                    "written"
                };
                println!(
                    "{member}: {} and {} ({state})",
                    dir.display(),
                    tar.display()
                );
            }
        }
        Command::Download {
            release,
            extract_to,
        } => {
            let req = release.request()?;
            let rt = runtime()?;
            match extract_to {
                Some(dest) => {
                    let (fetched, changed) =
                        rt.block_on(download::fetch_and_extract(&req, &dest))?;
                    println!(
                        "verified {} sha256 {}",
                        fetched.path.display(),
                        fetched.sha256
                    );
                    for p in &changed {
                        println!("installed {}", p.display());
                    }
                    if changed.is_empty() {
                        println!("binaries in {} unchanged", dest.display());
                    }
                }
                None => {
                    let fetched = rt.block_on(download::fetch(&req))?;
                    println!(
                        "verified {} sha256 {}",
                        fetched.path.display(),
                        fetched.sha256
                    );
                }
            }
        }
        Command::Install {
            bundle,
            binaries,
            download: do_download,
            release,
            enable,
            start,
            no_block,
            restart_on_change,
            no_systemd,
        } => {
            let staging = tempfile::tempdir()?;
            let binaries = if do_download {
                let req = release.request()?;
                runtime()?.block_on(download::fetch_and_extract(&req, staging.path()))?;
                Some(staging.path().to_path_buf())
            } else {
                binaries
            };
            let opts = install::InstallOptions {
                binaries,
                enable,
                start,
                no_block,
                restart_on_change,
                no_systemd,
            };
            let report = install::install(&bundle, &opts)?;
            for c in &report.changes {
                println!("changed: {c}");
            }
            if report.changes.is_empty() {
                println!("no changes");
            }
        }
        Command::Status { access } => {
            let statuses =
                runtime()?.block_on(cluster::status::cluster_status(&access.access()))?;
            print!("{}", cluster::status::format_table(&statuses));
            let down = statuses.iter().filter(|s| !s.healthy).count();
            if down > 0 {
                bail!("{down} of {} member(s) unhealthy", statuses.len());
            }
        }
        Command::Join {
            spec,
            name,
            pki_dir,
            out,
            unit_config,
            access,
            install: do_install,
            binaries,
            promote,
            promote_timeout_secs,
        } => {
            let spec = spec.load()?;
            let member = spec
                .member(&name)
                .with_context(|| format!("member {name:?} is not in the spec"))?
                .clone();
            if spec.tls.enabled && pki_dir.is_none() {
                bail!("TLS is on: give --pki-dir (the directory `certs generate` wrote)");
            }
            let opts = render::RenderOptions {
                unit_config,
                pki_dir,
            };
            // Render once before touching the cluster, so missing certificates fail early.
            render::render_member(&spec, &member, &render::Bootstrap::New, &opts)?;
            let access = access.access();
            let rt = runtime()?;
            let peer_url = render::settings::peer_url(&spec, &member);
            let added = rt.block_on(cluster::join::add_learner(&access, &name, &[peer_url]))?;
            let initial = render::settings::initial_cluster_join(&added.members, added.id, &name);
            println!(
                "{} learner {:x}; initial-cluster {initial}",
                if added.newly_added {
                    "added"
                } else {
                    "found existing"
                },
                added.id
            );
            let report = render::write_all(
                &spec,
                &out,
                std::slice::from_ref(&name),
                &render::Bootstrap::Existing(initial),
                &opts,
            )?;
            for (m, dir, tar, _) in &report.members {
                println!("{m}: {} and {}", dir.display(), tar.display());
            }
            if do_install {
                let iopts = install::InstallOptions {
                    binaries,
                    enable: true,
                    start: true,
                    no_block: true,
                    ..Default::default()
                };
                let r = install::install(&out.join(&name), &iopts)?;
                for c in &r.changes {
                    println!("changed: {c}");
                }
            }
            if promote {
                rt.block_on(cluster::join::promote(
                    &access,
                    added.id,
                    Duration::from_secs(promote_timeout_secs),
                ))?;
                println!("promoted {name} ({:x})", added.id);
            } else {
                println!("start the member, then: etcd-provision promote --name {name} ...");
            }
        }
        Command::Promote {
            spec,
            name,
            access,
            timeout_secs_promote,
        } => {
            let spec = spec.load()?;
            let member = spec
                .member(&name)
                .with_context(|| format!("member {name:?} is not in the spec"))?;
            let peer_url = render::settings::peer_url(&spec, member);
            let access = access.access();
            let rt = runtime()?;
            let found = rt.block_on(cluster::join::find_by_peer_url(
                &access,
                std::slice::from_ref(&peer_url),
            ))?;
            let id = match found {
                None => bail!("no member has peer URL {peer_url}; run `etcd-provision join` first"),
                Some(f) if !f.is_learner => {
                    println!("{name} ({:x}) is already a voting member", f.id);
                    return Ok(());
                }
                Some(f) => f.id,
            };
            rt.block_on(cluster::join::promote(
                &access,
                id,
                Duration::from_secs(timeout_secs_promote),
            ))?;
            println!("promoted {name} ({id:x})");
        }
        Command::ExampleSpec => print!("{}", EXAMPLE_SPEC),
        Command::Certs { action } => {
            let (spec, dir, mode) = match action {
                CertsAction::Generate {
                    spec,
                    dir,
                    force,
                    ca_cert,
                    ca_key,
                } => (
                    {
                        let spec = spec.load()?;
                        if let (Some(c), Some(k)) = (&ca_cert, &ca_key) {
                            if pki::import_ca(&dir, c, k, time::OffsetDateTime::now_utc())? {
                                println!("imported CA {}", c.display());
                            }
                        }
                        spec
                    },
                    dir,
                    if force {
                        pki::Mode::Force
                    } else {
                        pki::Mode::Generate
                    },
                ),
                CertsAction::Renew {
                    spec,
                    dir,
                    renew_before_days,
                } => {
                    let mut spec = spec.load()?;
                    if let Some(d) = renew_before_days {
                        spec.tls.renew_before_days = d;
                    }
                    (spec, dir, pki::Mode::Renew)
                }
            };
            if !spec.tls.enabled {
                bail!("TLS is off in this spec; there are no certificates to make");
            }
            let report = pki::ensure(&spec, &dir, mode, time::OffsetDateTime::now_utc())?;
            print!("{report}");
            if report.unchanged() {
                println!("no changes");
            }
        }
    }
    Ok(())
}

const EXAMPLE_SPEC: &str = include_str!("../example-spec.toml");

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log_level);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
