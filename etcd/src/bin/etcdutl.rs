//! `etcdutl`: offline tools on snapshots and data dirs, as etcd's `etcdutl` (3.5+; the
//! same as `etcdctl snapshot restore` of 3.4).
//!
//! `etcdutl snapshot restore <file> --data-dir ... --name ... --initial-cluster ...
//! --initial-cluster-token ... --initial-advertise-peer-urls ...` makes a new member's
//! data dir from a backup taken with `etcdctl snapshot save`; `etcdutl snapshot status
//! <file>` checks one and prints its hash, revision, key count and size.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "etcdutl", version = etcd::config::ETCD_VERSION, about = "An administrative command line tool for etcd snapshots and data dirs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manages etcd node snapshots.
    #[command(subcommand)]
    Snapshot(Snapshot),
    /// Prints the version of etcdutl.
    Version,
}

#[derive(Subcommand)]
enum Snapshot {
    /// Restores an etcd member snapshot to an etcd directory.
    Restore(Restore),
    /// Gets backend snapshot status of a given file.
    Status {
        /// The snapshot file.
        file: PathBuf,
        /// Output format (simple, table or json).
        #[arg(short = 'w', long = "write-out", default_value = "simple")]
        write_out: String,
    },
}

#[derive(clap::Args)]
struct Restore {
    /// The snapshot file.
    file: PathBuf,
    /// Path to the output data directory (default: <name>.etcd).
    #[arg(long = "data-dir")]
    data_dir: Option<PathBuf>,
    /// Path to the raft log directory (default: <data-dir>/member/wal).
    #[arg(long = "wal-dir")]
    wal_dir: Option<PathBuf>,
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    name: String,
    /// Initial cluster configuration for restore bootstrap.
    #[arg(
        long = "initial-cluster",
        default_value = "default=http://localhost:2380"
    )]
    initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap.
    #[arg(long = "initial-cluster-token", default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(
        long = "initial-advertise-peer-urls",
        default_value = "http://localhost:2380"
    )]
    initial_advertise_peer_urls: String,
    /// Ignore the snapshot's integrity hash value (required if copied from a data dir).
    #[arg(long = "skip-hash-check", num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    skip_hash_check: bool,
}

fn urls(s: &str) -> anyhow::Result<Vec<String>> {
    s.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            url::Url::parse(u)
                .map(|p| etcd::config::etcd_url_string(&p))
                .with_context(|| format!("invalid URL {u:?}"))
        })
        .collect()
}

fn restore(r: Restore) -> anyhow::Result<()> {
    let cluster = etcd::config::parse_initial_cluster(&r.initial_cluster)
        .map_err(|e| anyhow::anyhow!("--initial-cluster: {e}"))?;
    let initial_cluster = cluster
        .into_iter()
        .flat_map(|(n, us)| {
            us.into_iter()
                .map(move |u| (n.clone(), etcd::config::etcd_url_string(&u)))
        })
        .collect();
    let data_dir = r
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", r.name)));
    let o = etcd::server::restore::RestoreOptions {
        snapshot: r.file.clone(),
        data_dir: data_dir.clone(),
        wal_dir: r.wal_dir,
        name: r.name,
        initial_cluster,
        initial_cluster_token: r.initial_cluster_token,
        initial_advertise_peer_urls: urls(&r.initial_advertise_peer_urls)?,
        skip_hash_check: r.skip_hash_check,
    };
    eprintln!(
        "restoring snapshot {} to data-dir {}",
        r.file.display(),
        data_dir.display()
    );
    let done = etcd::server::restore::restore(&o)?;
    eprintln!(
        "restored snapshot {}: member-id {:x}, cluster-id {:x}, revision {}",
        r.file.display(),
        done.member_id,
        done.cluster_id,
        done.revision
    );
    Ok(())
}

fn status(file: PathBuf, write_out: &str) -> anyhow::Result<()> {
    let s = etcd::server::restore::status(&file)?;
    match write_out {
        "json" => println!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}",
            s.hash, s.revision, s.total_keys, s.total_size
        ),
        "table" => {
            println!("+----------+----------+------------+------------+");
            println!("|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |");
            println!("+----------+----------+------------+------------+");
            println!(
                "| {:8x} | {:8} | {:10} | {:>10} |",
                s.hash, s.revision, s.total_keys, s.total_size
            );
            println!("+----------+----------+------------+------------+");
        }
        _ => println!(
            "{:x}, {}, {}, {}",
            s.hash, s.revision, s.total_keys, s.total_size
        ),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Snapshot(Snapshot::Restore(r)) => restore(r),
        Command::Snapshot(Snapshot::Status { file, write_out }) => status(file, &write_out),
        Command::Version => {
            println!("etcdutl version: {}", etcd::config::ETCD_VERSION);
            Ok(())
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
