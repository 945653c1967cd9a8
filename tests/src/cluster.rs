//! Multi-member clusters: N real `etcd` processes started from
//! ExecStart-style flags, optionally with TLS on client and peer URLs
//! (client-cert-auth on both) and optionally each member in its own network
//! namespace (for partitions, see [`crate::netns`]).
//!
//! * [`EtcdCluster::start`] starts all members at once with
//!   `--initial-cluster-state new` (a fresh member waits for quorum, so they
//!   must start concurrently) and waits until every member is healthy.
//! * Per member: [`EtcdCluster::kill9`], [`EtcdCluster::sigterm`],
//!   [`EtcdCluster::restart`] (same data dir and flags), endpoint URLs,
//!   [`EtcdCluster::etcdctl`] with the right TLS flags (run inside the
//!   member's namespace when namespaces are used).
//! * Cluster-wide: [`EtcdCluster::leader`], [`EtcdCluster::wait_for_leader`],
//!   [`EtcdCluster::member_list`], [`EtcdCluster::add_member`] (runs
//!   `etcdctl member add` and prepares the new member's flags with
//!   `--initial-cluster-state existing`), [`EtcdCluster::remove_member`].
//!
//! Every process is killed when the cluster is dropped; data dirs, logs and
//! certificates live in one temporary directory (kept with
//! `ETCD_E2E_KEEP_DIRS=1`). Each member writes
//! `<dir>/<name>/logs/etcd.<n>.{stdout,stderr}` where `n` counts its starts.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::bins::{etcd_bin, etcdctl_bin};
use crate::certs::{Ca, CertFiles, Usage};
use crate::etcdctl::Output;
use crate::netns::NetLab;
use crate::ports::free_port;
use crate::process::KEEP_DIRS_ENV;

static CLUSTER_SEQ: AtomicU32 = AtomicU32::new(0);

/// Client port of every member when members run in namespaces.
pub const NETNS_CLIENT_PORT: u16 = 2379;
/// Peer port of every member when members run in namespaces.
pub const NETNS_PEER_PORT: u16 = 2380;

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of members started with `--initial-cluster-state new`.
    pub size: usize,
    /// TLS on client and peer URLs, with `--client-cert-auth` and
    /// `--peer-client-cert-auth`.
    pub tls: bool,
    /// Run each member in its own network namespace (see [`crate::netns`]).
    pub netns: bool,
    /// Extra flags for every member, appended after the standard ones.
    pub args: Vec<String>,
    /// How long to wait for the members to become healthy.
    pub ready_timeout: Duration,
    /// Prefix of the member names (`<prefix>1`, `<prefix>2`, ...).
    pub name_prefix: String,
}

impl ClusterOptions {
    /// `size` plaintext members on loopback with default timings.
    pub fn new(size: usize) -> Self {
        Self {
            size,
            tls: false,
            netns: false,
            args: Vec::new(),
            ready_timeout: Duration::from_secs(30),
            name_prefix: "m".to_string(),
        }
    }

    /// Enables TLS with client-cert-auth on client and peer URLs.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Runs each member in its own network namespace.
    pub fn netns(mut self, on: bool) -> Self {
        self.netns = on;
        self
    }

    /// Appends one flag for every member.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets the readiness timeout.
    pub fn ready_timeout(mut self, t: Duration) -> Self {
        self.ready_timeout = t;
        self
    }
}

/// What `etcdctl endpoint status -w json` says about one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// The answering member's ID.
    pub member_id: u64,
    /// The cluster ID.
    pub cluster_id: u64,
    /// The leader the member knows of (0: none).
    pub leader: u64,
    /// Raft term.
    pub raft_term: u64,
    /// Raft index.
    pub raft_index: u64,
    /// Applied index (0 when not reported).
    pub raft_applied_index: u64,
    /// Store revision.
    pub revision: i64,
    /// True when the member is a learner.
    pub is_learner: bool,
}

impl MemberStatus {
    fn from_json(v: &serde_json::Value) -> Result<Self> {
        let s = &v["Status"];
        let u = |x: &serde_json::Value| x.as_u64().unwrap_or(0);
        Ok(Self {
            member_id: s["header"]["member_id"]
                .as_u64()
                .ok_or_else(|| anyhow!("status without header.member_id: {v}"))?,
            cluster_id: u(&s["header"]["cluster_id"]),
            leader: u(&s["leader"]),
            raft_term: u(&s["raftTerm"]),
            raft_index: u(&s["raftIndex"]),
            raft_applied_index: u(&s["raftAppliedIndex"]),
            revision: s["header"]["revision"].as_i64().unwrap_or(0),
            is_learner: s["isLearner"].as_bool().unwrap_or(false),
        })
    }
}

/// One entry of `etcdctl member list -w json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedMember {
    /// Member ID.
    pub id: u64,
    /// Name (empty until a newly added member has started).
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs (empty until a newly added member has started).
    pub client_urls: Vec<String>,
    /// True for a learner.
    pub is_learner: bool,
}

/// A member registered by [`EtcdCluster::add_member`] (not started yet).
#[derive(Debug, Clone)]
pub struct AddedMember {
    /// Index of the new member in the cluster.
    pub index: usize,
    /// Its member ID (from `Member <hex> added to cluster <hex>`).
    pub id: u64,
    /// `ETCD_INITIAL_CLUSTER` as printed by `etcdctl member add`.
    pub initial_cluster: String,
    /// The full command line flags it will be started with.
    pub flags: Vec<String>,
    /// Everything `etcdctl member add` printed.
    pub output: String,
}

struct Member {
    name: String,
    dir: PathBuf,
    host: String,
    node: Option<usize>,
    client_port: u16,
    peer_port: u16,
    flags: Vec<String>,
    child: Option<Child>,
    starts: u32,
    removed: bool,
}

struct Tls {
    ca: Ca,
    ca_file: PathBuf,
    client: CertFiles,
}

/// A running cluster; see the module documentation.
pub struct EtcdCluster {
    opts: ClusterOptions,
    token: String,
    tls: Option<Tls>,
    members: Vec<Member>,
    lab: Option<NetLab>,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `opts.size` members concurrently and waits until all are healthy.
    ///
    /// A loopback port picked by the free-port allocator can be taken by
    /// another process before etcd binds it; then the whole cluster is
    /// prepared again with fresh ports (up to three attempts).
    pub fn start(opts: ClusterOptions) -> Result<Self> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut c = Self::prepare(opts.clone())?;
            match c.start_all() {
                Ok(()) => return Ok(c),
                Err(e) => {
                    let logs = c.dump_logs(30);
                    if attempt < 3 && logs.to_lowercase().contains("address already in use") {
                        eprintln!("[cluster] port collision, retrying with fresh ports");
                        continue;
                    }
                    bail!("{e:#}\n{logs}");
                }
            }
        }
    }

    /// Spawns every member, then waits until each is ready.
    fn start_all(&mut self) -> Result<()> {
        for i in 0..self.members.len() {
            self.spawn(i)?;
        }
        let timeout = self.opts.ready_timeout;
        let all: Vec<usize> = (0..self.members.len()).collect();
        self.wait_all_ready(&all, timeout)
    }

    /// Creates the directories, certificates, namespaces and flags of all
    /// members without starting any process.
    pub fn prepare(opts: ClusterOptions) -> Result<Self> {
        let mut dir = tempfile::Builder::new()
            .prefix("etcd-e2e-cluster-")
            .tempdir()
            .context("create temp dir")?;
        if std::env::var(KEEP_DIRS_ENV).is_ok_and(|v| v == "1") {
            dir.disable_cleanup(true);
        }
        let token = format!(
            "e2e-{}-{}",
            std::process::id(),
            CLUSTER_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let tls = if opts.tls {
            let certs = dir.path().join("certs");
            std::fs::create_dir_all(&certs)?;
            let ca = Ca::new("etcd e2e cluster CA")?;
            let ca_file = ca.write(&certs.join("ca.pem"))?;
            let client = ca.leaf_files(
                &certs,
                "client",
                "etcdctl",
                &["localhost".to_string(), "127.0.0.1".to_string()],
                Usage::Client,
            )?;
            Some(Tls {
                ca,
                ca_file,
                client,
            })
        } else {
            None
        };
        let lab = if opts.netns {
            Some(NetLab::new(opts.size)?)
        } else {
            None
        };
        let mut c = Self {
            opts,
            token,
            tls,
            members: Vec::new(),
            lab,
            dir,
        };
        for i in 0..c.opts.size {
            let name = format!("{}{}", c.opts.name_prefix, i + 1);
            let m = c.new_member(name, Some(i), None)?;
            c.members.push(m);
        }
        let initial = c.initial_cluster();
        for i in 0..c.members.len() {
            let flags = c.member_flags(i, &initial, "new");
            c.members[i].flags = flags;
        }
        eprintln!(
            "[cluster] {} members, token {}, dir {}, tls {}, netns {}",
            c.members.len(),
            c.token,
            c.dir.path().display(),
            c.tls.is_some(),
            c.lab.is_some()
        );
        Ok(c)
    }

    /// A new member `name` (on lab node `node`, or on loopback address `loopback`, by
    /// default 127.0.0.1), with its certificates when the cluster has TLS.
    fn new_member(
        &mut self,
        name: String,
        node: Option<usize>,
        loopback: Option<&str>,
    ) -> Result<Member> {
        let dir = self.dir.path().join(&name);
        std::fs::create_dir_all(dir.join("logs")).context("create member dir")?;
        let (host, node, client_port, peer_port) = match self.lab.as_mut() {
            Some(lab) => {
                let node = match node {
                    Some(n) if n < lab.len() => n,
                    _ => lab.add_node()?,
                };
                (lab.ip(node), Some(node), NETNS_CLIENT_PORT, NETNS_PEER_PORT)
            }
            None => (
                loopback.unwrap_or("127.0.0.1").to_string(),
                None,
                free_port(),
                free_port(),
            ),
        };
        if let Some(tls) = &self.tls {
            let sans = vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                host.clone(),
            ];
            tls.ca
                .leaf_files(&dir, "server", &name, &sans, Usage::Both)?;
            tls.ca.leaf_files(&dir, "peer", &name, &sans, Usage::Both)?;
        }
        Ok(Member {
            name,
            dir,
            host,
            node,
            client_port,
            peer_port,
            flags: Vec::new(),
            child: None,
            starts: 0,
            removed: false,
        })
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// `--initial-cluster` value for the current (not removed) members.
    pub fn initial_cluster(&self) -> String {
        (0..self.members.len())
            .filter(|&i| !self.members[i].removed)
            .map(|i| format!("{}={}", self.members[i].name, self.peer_url(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The ExecStart-style flags of member `i` for a given `--initial-cluster`
    /// and `--initial-cluster-state`, plus the cluster-wide extra flags.
    fn member_flags(&self, i: usize, initial_cluster: &str, state: &str) -> Vec<String> {
        let m = &self.members[i];
        let mut listen_client = self.client_url(i);
        if m.node.is_some() {
            // As in the ExecStart lines of "etcd the hard way": clients also on loopback.
            listen_client = format!(
                "{listen_client},{}://127.0.0.1:{}",
                self.scheme(),
                m.client_port
            );
        }
        let mut a = vec![
            "--name".to_string(),
            m.name.clone(),
            "--data-dir".to_string(),
            m.dir.join("data").display().to_string(),
            "--listen-peer-urls".to_string(),
            self.peer_url(i),
            "--initial-advertise-peer-urls".to_string(),
            self.peer_url(i),
            "--listen-client-urls".to_string(),
            listen_client,
            "--advertise-client-urls".to_string(),
            self.client_url(i),
            "--initial-cluster".to_string(),
            initial_cluster.to_string(),
            "--initial-cluster-token".to_string(),
            self.token.clone(),
            "--initial-cluster-state".to_string(),
            state.to_string(),
        ];
        if self.tls.is_some() {
            let d = |f: &str| m.dir.join(f).display().to_string();
            let ca = self
                .tls
                .as_ref()
                .map(|t| t.ca_file.display().to_string())
                .unwrap_or_default();
            a.extend([
                format!("--cert-file={}", d("server.pem")),
                format!("--key-file={}", d("server-key.pem")),
                format!("--trusted-ca-file={ca}"),
                "--client-cert-auth".to_string(),
                format!("--peer-cert-file={}", d("peer.pem")),
                format!("--peer-key-file={}", d("peer-key.pem")),
                format!("--peer-trusted-ca-file={ca}"),
                "--peer-client-cert-auth".to_string(),
            ]);
        }
        a.extend(self.opts.args.iter().cloned());
        a
    }

    /// Number of members (including removed ones).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when the cluster has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Indexes of the members that were not removed.
    pub fn indexes(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| !self.members[i].removed)
            .collect()
    }

    /// The temporary directory of the cluster (certificates, member dirs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `--initial-cluster-token`.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The CA that signed every certificate (TLS clusters).
    pub fn ca(&self) -> Option<&Ca> {
        self.tls.as_ref().map(|t| &t.ca)
    }

    /// The CA certificate file (TLS clusters).
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca_file.as_path())
    }

    /// The network lab (namespace clusters).
    pub fn lab(&self) -> Option<&NetLab> {
        self.lab.as_ref()
    }

    /// Name of member `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// Directory of member `i` (data dir `data`, certificates, `logs/`).
    pub fn member_dir(&self, i: usize) -> &Path {
        &self.members[i].dir
    }

    /// Address member `i` listens on (127.0.0.1, or its namespace IP).
    pub fn host(&self, i: usize) -> &str {
        &self.members[i].host
    }

    /// Client port of member `i`.
    pub fn client_port(&self, i: usize) -> u16 {
        self.members[i].client_port
    }

    /// Advertised client URL of member `i`.
    pub fn client_url(&self, i: usize) -> String {
        let m = &self.members[i];
        format!("{}://{}:{}", self.scheme(), m.host, m.client_port)
    }

    /// Advertised peer URL of member `i`.
    pub fn peer_url(&self, i: usize) -> String {
        let m = &self.members[i];
        format!("{}://{}:{}", self.scheme(), m.host, m.peer_port)
    }

    /// Comma-separated client URLs of `members`.
    pub fn endpoints_of(&self, members: &[usize]) -> String {
        members
            .iter()
            .map(|&i| self.client_url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Comma-separated client URLs of all members that were not removed.
    pub fn endpoints(&self) -> String {
        self.endpoints_of(&self.indexes())
    }

    /// The full command line member `i` is (or will be) started with.
    pub fn flags(&self, i: usize) -> &[String] {
        &self.members[i].flags
    }

    /// Replaces the flags member `i` is started with next time.
    pub fn set_flags(&mut self, i: usize, flags: Vec<String>) {
        self.members[i].flags = flags;
    }

    /// The etcdctl TLS flags (`--cacert`, `--cert`, `--key`) of this cluster.
    pub fn tls_flags(&self) -> Vec<String> {
        match &self.tls {
            Some(t) => vec![
                format!("--cacert={}", t.ca_file.display()),
                format!("--cert={}", t.client.cert.display()),
                format!("--key={}", t.client.key.display()),
            ],
            None => Vec::new(),
        }
    }

    fn log_path(&self, i: usize, n: u32, stream: &str) -> PathBuf {
        self.members[i]
            .dir
            .join("logs")
            .join(format!("etcd.{n}.{stream}"))
    }

    /// A `Command` for `program` in member `i`'s network (its namespace, if any).
    fn command_for(&self, i: usize, program: &Path) -> Command {
        match (&self.lab, self.members[i].node) {
            (Some(lab), Some(node)) => lab.command(node, program),
            _ => Command::new(program),
        }
    }

    /// Starts member `i`'s process with its flags (does not wait).
    pub fn spawn(&mut self, i: usize) -> Result<()> {
        if self.members[i].child.is_some() {
            bail!("member {} is already running", self.members[i].name);
        }
        self.members[i].starts += 1;
        let n = self.members[i].starts;
        let out = File::create(self.log_path(i, n, "stdout")).context("stdout log")?;
        let err = File::create(self.log_path(i, n, "stderr")).context("stderr log")?;
        let mut cmd = self.command_for(i, &etcd_bin());
        crate::env::scrub(&mut cmd);
        cmd.args(&self.members[i].flags)
            .current_dir(&self.members[i].dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", etcd_bin().display()))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Polls until member `i` is ready: `etcdctl endpoint health` succeeds
    /// against it (or, for a learner, fails with "not supported for
    /// learner", which means it serves). Fails early if the process exits.
    pub fn wait_ready(&mut self, i: usize, timeout: Duration) -> Result<()> {
        self.wait_all_ready(&[i], timeout)
    }

    /// Polls `members` until every one is ready (see
    /// [`EtcdCluster::wait_ready`]); fails as soon as one of them exits.
    pub fn wait_all_ready(&mut self, members: &[usize], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<usize> = members.to_vec();
        let mut last = String::new();
        loop {
            let mut still = Vec::new();
            for &i in &pending {
                if let Some(status) = self.try_exit_status(i) {
                    bail!(
                        "member {} exited with {status} before becoming ready\n{}",
                        self.members[i].name,
                        self.log_tail(i, 40)
                    );
                }
                if self.members[i].child.is_none() {
                    bail!("member {} is not running", self.members[i].name);
                }
                let o = self.etcdctl(
                    i,
                    &[
                        "endpoint",
                        "health",
                        "--dial-timeout=1s",
                        "--command-timeout=2s",
                    ],
                );
                if !(o.success() || o.combined().contains("not supported for learner")) {
                    last = o.combined().trim().to_string();
                    still.push(i);
                }
            }
            pending = still;
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let names: Vec<&str> = pending
                    .iter()
                    .map(|&i| self.members[i].name.as_str())
                    .collect();
                let tails: String = pending.iter().map(|&i| self.log_tail(i, 40)).collect();
                bail!("members {names:?} not ready after {timeout:?} (last: {last})\n{tails}");
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// [`EtcdCluster::spawn`] then [`EtcdCluster::wait_ready`].
    pub fn start_member(&mut self, i: usize) -> Result<()> {
        self.spawn(i)?;
        let t = self.opts.ready_timeout;
        self.wait_ready(i, t)
    }

    /// If member `i`'s process has exited, reaps it and returns its status.
    fn try_exit_status(&mut self, i: usize) -> Option<ExitStatus> {
        let c = self.members[i].child.as_mut()?;
        match c.try_wait() {
            Ok(Some(status)) => {
                self.members[i].child = None;
                Some(status)
            }
            _ => None,
        }
    }

    /// True while member `i`'s process runs.
    pub fn is_running(&mut self, i: usize) -> bool {
        let _ = self.try_exit_status(i);
        self.members[i].child.is_some()
    }

    /// PID of member `i`'s process.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// SIGKILLs member `i` and reaps it; no-op if it is not running.
    pub fn kill9(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            c.wait().context("wait for etcd")?;
        }
        Ok(())
    }

    /// SIGTERMs member `i` and waits up to 20 s for it to exit (then
    /// SIGKILLs it and fails).
    pub fn sigterm(&mut self, i: usize) -> Result<ExitStatus> {
        let pid = self
            .pid(i)
            .ok_or_else(|| anyhow!("member {} is not running", self.members[i].name))?;
        signal::kill(
            Pid::from_raw(i32::try_from(pid).context("pid")?),
            Signal::SIGTERM,
        )
        .context("SIGTERM")?;
        match self.wait_exit(i, Duration::from_secs(20))? {
            Some(s) => Ok(s),
            None => {
                let tail = self.log_tail(i, 40);
                self.kill9(i)?;
                bail!(
                    "member {} did not exit within 20 s of SIGTERM\n{tail}",
                    self.members[i].name
                )
            }
        }
    }

    /// Waits up to `timeout` for member `i` to exit by itself; returns its
    /// exit status, or `None` if it still runs.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(c) = self.members[i].child.as_mut() else {
                bail!("member {} is not running", self.members[i].name);
            };
            if let Some(s) = c.try_wait().context("wait for etcd")? {
                self.members[i].child = None;
                return Ok(Some(s));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops member `i` if it runs (SIGTERM, SIGKILL after 20 s), starts it
    /// again on the same data dir with the same flags and waits until ready.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        if self.is_running(i) {
            if let Err(e) = self.sigterm(i) {
                eprintln!("[cluster] {e:#}");
            }
        }
        self.start_member(i)
    }

    /// Runs etcdctl against member `i` (with TLS flags, inside its
    /// namespace when namespaces are used).
    pub fn etcdctl(&self, i: usize, args: &[&str]) -> Output {
        self.etcdctl_endpoints(i, &self.client_url(i), args)
    }

    /// Runs etcdctl from member `i`'s network against `endpoints`.
    pub fn etcdctl_endpoints(&self, i: usize, endpoints: &str, args: &[&str]) -> Output {
        let mut o = self.ctl(i).run(endpoints, args);
        o.command = format!("[{}] {}", self.members[i].name, o.command);
        o
    }

    /// An etcdctl runner with this cluster's TLS flags, in member `i`'s
    /// network (its namespace, if any); cheap to clone and `Send`, for
    /// background threads.
    pub fn ctl(&self, i: usize) -> Ctl {
        Ctl {
            tls: self.tls_flags(),
            netns: match (&self.lab, self.members[i].node) {
                (Some(lab), Some(node)) => Some(lab.ns(node).to_string()),
                _ => None,
            },
        }
    }

    /// `etcdctl put key value` against member `i`.
    pub fn put(&self, i: usize, key: &str, value: &str) -> Output {
        self.etcdctl(i, &["put", key, value])
    }

    /// The value of `key` on member `i` (`consistency`: "l" or "s"), or an
    /// error with etcdctl's output.
    pub fn get_value(&self, i: usize, key: &str, consistency: &str) -> Result<Option<String>> {
        let c = format!("--consistency={consistency}");
        let o = self.etcdctl(i, &["get", key, &c, "--print-value-only"]);
        if !o.success() {
            bail!("{}: {}", o.command, o.combined().trim());
        }
        let v = o.stdout.strip_suffix('\n').unwrap_or(&o.stdout);
        Ok(if o.stdout.is_empty() {
            None
        } else {
            Some(v.to_string())
        })
    }

    /// All `(key, value)` pairs under `prefix` on member `i`, read
    /// serializably (from that member's own store). Returns the header
    /// revision too.
    pub fn get_prefix_serializable(
        &self,
        i: usize,
        prefix: &str,
    ) -> Result<(i64, BTreeMap<String, String>)> {
        let o = self.etcdctl(
            i,
            &[
                "get",
                prefix,
                "--prefix",
                "--consistency=s",
                "-w",
                "json",
                "--command-timeout=20s",
            ],
        );
        if !o.success() {
            bail!("{}: {}", o.command, o.combined().trim());
        }
        let v: serde_json::Value =
            serde_json::from_str(o.stdout.trim()).with_context(|| format!("parse {}", o.stdout))?;
        let rev = v["header"]["revision"].as_i64().unwrap_or(0);
        let mut out = BTreeMap::new();
        let b64 = base64::engine::general_purpose::STANDARD;
        if let Some(kvs) = v["kvs"].as_array() {
            for kv in kvs {
                let k = b64.decode(kv["key"].as_str().unwrap_or(""))?;
                let val = b64.decode(kv["value"].as_str().unwrap_or(""))?;
                out.insert(
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&val).into_owned(),
                );
            }
        }
        Ok((rev, out))
    }

    /// `etcdctl endpoint status -w json` against member `i`.
    pub fn status(&self, i: usize) -> Result<MemberStatus> {
        let o = self.etcdctl(
            i,
            &[
                "endpoint",
                "status",
                "-w",
                "json",
                "--dial-timeout=1s",
                "--command-timeout=2s",
            ],
        );
        if !o.success() {
            bail!("{}: {}", o.command, o.combined().trim());
        }
        let v: serde_json::Value = serde_json::from_str(o.stdout.trim())
            .with_context(|| format!("parse endpoint status: {}", o.stdout))?;
        let first = v
            .as_array()
            .and_then(|a| a.first())
            .ok_or_else(|| anyhow!("empty endpoint status: {}", o.stdout))?;
        MemberStatus::from_json(first)
    }

    /// The member ID of member `i` (asks it).
    pub fn member_id(&self, i: usize) -> Result<u64> {
        Ok(self.status(i)?.member_id)
    }

    /// The index of the leader: every running, reachable member that
    /// answers Status names the same leader, and that leader is one of them.
    pub fn leader(&self) -> Result<usize> {
        self.leader_among(&self.indexes())
    }

    /// Like [`EtcdCluster::leader`], asking only `members` (e.g. the
    /// majority side of a partition).
    pub fn leader_among(&self, members: &[usize]) -> Result<usize> {
        let mut statuses = Vec::new();
        for &i in members {
            if self.members[i].child.is_none() {
                continue;
            }
            match self.status(i) {
                Ok(s) => statuses.push((i, s)),
                Err(e) => bail!("no status from {}: {e:#}", self.members[i].name),
            }
        }
        let Some((_, first)) = statuses.first() else {
            bail!("no running member answered");
        };
        let lead = first.leader;
        if lead == 0 {
            bail!("no leader: {statuses:?}");
        }
        if statuses.iter().any(|(_, s)| s.leader != lead) {
            bail!("members disagree on the leader: {statuses:?}");
        }
        statuses
            .iter()
            .find(|(_, s)| s.member_id == lead)
            .map(|(i, _)| *i)
            .ok_or_else(|| anyhow!("leader {lead:x} is not among the answering members"))
    }

    /// Polls [`EtcdCluster::leader`] until it succeeds or `timeout` passes.
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<usize> {
        let all = self.indexes();
        self.wait_for_leader_among(&all, timeout)
    }

    /// Polls [`EtcdCluster::leader_among`] until it succeeds or `timeout` passes.
    pub fn wait_for_leader_among(&self, members: &[usize], timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.leader_among(members) {
                Ok(l) => return Ok(l),
                Err(e) if Instant::now() >= deadline => {
                    bail!("no agreed leader within {timeout:?}: {e:#}")
                }
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// `etcdctl member list -w json` via member `via`.
    pub fn member_list(&self, via: usize) -> Result<Vec<ListedMember>> {
        let o = self.etcdctl(via, &["member", "list", "-w", "json"]);
        if !o.success() {
            bail!("{}: {}", o.command, o.combined().trim());
        }
        let v: serde_json::Value = serde_json::from_str(o.stdout.trim())?;
        let strs = |x: &serde_json::Value| -> Vec<String> {
            x.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let members = v["members"]
            .as_array()
            .ok_or_else(|| anyhow!("member list without members: {}", o.stdout))?;
        Ok(members
            .iter()
            .map(|m| ListedMember {
                id: m["ID"].as_u64().unwrap_or(0),
                name: m["name"].as_str().unwrap_or("").to_string(),
                peer_urls: strs(&m["peerURLs"]),
                client_urls: strs(&m["clientURLs"]),
                is_learner: m["isLearner"].as_bool().unwrap_or(false),
            })
            .collect())
    }

    /// Registers a new member `name` through `etcdctl member add` (sent to
    /// member `via`; `--learner` when `learner`), and prepares its flags with
    /// the printed `ETCD_INITIAL_CLUSTER` and `--initial-cluster-state
    /// existing`. The member is not started: call
    /// [`EtcdCluster::start_member`] (or `spawn`).
    pub fn add_member(&mut self, via: usize, name: &str, learner: bool) -> Result<AddedMember> {
        self.add_member_on(via, name, learner, None)
    }

    /// [`EtcdCluster::add_member`] for a member that listens on loopback address
    /// `loopback` (such as 127.0.0.2; clusters without network namespaces). Its
    /// connections to the other members still come from 127.0.0.1, the address Linux
    /// sends from to 127.0.0.1.
    pub fn add_member_on(
        &mut self,
        via: usize,
        name: &str,
        learner: bool,
        loopback: Option<&str>,
    ) -> Result<AddedMember> {
        let m = self.new_member(name.to_string(), None, loopback)?;
        self.members.push(m);
        let index = self.members.len() - 1;
        let peer = format!("--peer-urls={}", self.peer_url(index));
        let mut args = vec!["member", "add", name, peer.as_str()];
        if learner {
            args.push("--learner");
        }
        // etcd refuses reconfiguration with "etcdserver: unhealthy cluster"
        // until the member has been connected to all voters for 5 s
        // (strict reconfig check); retry that for a while.
        let deadline = Instant::now() + Duration::from_secs(20);
        let o = loop {
            let o = self.etcdctl(via, &args);
            if o.success()
                || !o.combined().contains("unhealthy cluster")
                || Instant::now() >= deadline
            {
                break o;
            }
            thread::sleep(Duration::from_millis(500));
        };
        if !o.success() {
            self.members.pop();
            bail!("{}: {}", o.command, o.combined().trim());
        }
        let text = o.stdout.clone();
        let id_hex = text
            .split_whitespace()
            .skip_while(|w| *w != "Member")
            .nth(1)
            .ok_or_else(|| anyhow!("no `Member <id>` in member add output: {text}"))?;
        let id = u64::from_str_radix(id_hex, 16)
            .with_context(|| format!("member id {id_hex:?} in {text}"))?;
        let initial_cluster = text
            .lines()
            .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
            .map(|v| v.trim().trim_matches('"').to_string())
            .ok_or_else(|| anyhow!("no ETCD_INITIAL_CLUSTER in member add output: {text}"))?;
        let flags = self.member_flags(index, &initial_cluster, "existing");
        self.members[index].flags = flags.clone();
        Ok(AddedMember {
            index,
            id,
            initial_cluster,
            flags,
            output: text,
        })
    }

    /// `etcdctl member remove <id of member i>` via member `via`; on success
    /// member `i` no longer counts in [`EtcdCluster::endpoints`],
    /// [`EtcdCluster::indexes`] and leader checks.
    pub fn remove_member(&mut self, via: usize, i: usize, id: u64) -> Output {
        let hex = format!("{id:x}");
        let o = self.etcdctl(via, &["member", "remove", &hex]);
        if o.success() {
            self.members[i].removed = true;
        }
        o
    }

    /// The last `lines` lines of member `i`'s current stdout and stderr.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let n = self.members[i].starts;
        let mut s = String::new();
        for stream in ["stdout", "stderr"] {
            let path = self.log_path(i, n, stream);
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            if all.is_empty() {
                continue;
            }
            let from = all.len().saturating_sub(lines);
            s.push_str(&format!(
                "--- {} {} (last {lines} lines) ---\n",
                self.members[i].name,
                path.display()
            ));
            for l in &all[from..] {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }

    /// Full text (stdout then stderr) of member `i`'s current run.
    pub fn log(&self, i: usize) -> String {
        let n = self.members[i].starts;
        let mut s = String::new();
        for stream in ["stdout", "stderr"] {
            s.push_str(&std::fs::read_to_string(self.log_path(i, n, stream)).unwrap_or_default());
        }
        s
    }

    /// Log tails of every member, for failure messages.
    pub fn dump_logs(&self, lines: usize) -> String {
        (0..self.members.len())
            .map(|i| self.log_tail(i, lines))
            .collect::<Vec<_>>()
            .join("")
    }

    /// Connects an `etcd_client::Client` to `members` (plaintext loopback
    /// clusters only: the crate is built without TLS).
    pub async fn client(&self, members: &[usize]) -> Result<etcd_client::Client> {
        if self.tls.is_some() || self.lab.is_some() {
            bail!("etcd-client is only available for plaintext loopback clusters");
        }
        let urls: Vec<String> = members.iter().map(|&i| self.client_url(i)).collect();
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5));
        etcd_client::Client::connect(urls.clone(), Some(opts))
            .await
            .with_context(|| format!("connect etcd-client to {urls:?}"))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "[cluster] test failed; member logs:\n{}",
                self.dump_logs(25)
            );
        }
        // `lab` (namespaces) and `dir` are dropped after this.
    }
}

/// Polls `f` every `interval` until it returns `Ok` or `timeout` passes
/// (then returns the last error, with `what`).
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> Result<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("{what}: not within {timeout:?}")))
            }
            Err(_) => thread::sleep(interval),
        }
    }
}

/// Runs etcdctl with a cluster's TLS flags from one member's network; see
/// [`EtcdCluster::ctl`].
#[derive(Debug, Clone)]
pub struct Ctl {
    tls: Vec<String>,
    netns: Option<String>,
}

impl Ctl {
    /// `etcdctl --endpoints=<endpoints> --dial-timeout=2s
    /// --command-timeout=5s <tls flags> <args>` (later flags in `args` win).
    pub fn run(&self, endpoints: &str, args: &[&str]) -> Output {
        self.run_with(endpoints, args, None)
    }

    /// [`run`](Self::run) with `input` on etcdctl's standard input (`txn`, `user
    /// passwd --interactive=false`).
    pub fn run_stdin<S: AsRef<str>>(&self, endpoints: &str, args: &[S], input: &str) -> Output {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        self.run_with(endpoints, &args, Some(input))
    }

    fn run_with(&self, endpoints: &str, args: &[&str], input: Option<&str>) -> Output {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.as_str()]).arg(etcdctl_bin());
                c
            }
            None => Command::new(etcdctl_bin()),
        };
        crate::env::scrub(&mut cmd);
        cmd.env("ETCDCTL_API", "3");
        let mut full = vec![
            format!("--endpoints={endpoints}"),
            "--dial-timeout=2s".to_string(),
            "--command-timeout=5s".to_string(),
        ];
        full.extend(self.tls.iter().cloned());
        full.extend(args.iter().map(|s| s.to_string()));
        cmd.args(&full);
        let out = match input {
            None => cmd.stdin(Stdio::null()).output().expect("run etcdctl"),
            Some(text) => {
                use std::io::Write as _;
                cmd.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut child = cmd.spawn().expect("run etcdctl");
                if let Some(mut pipe) = child.stdin.take() {
                    pipe.write_all(text.as_bytes())
                        .expect("write etcdctl stdin");
                }
                child.wait_with_output().expect("wait for etcdctl")
            }
        };
        Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            command: format!("etcdctl {}", full.join(" ")),
        }
    }
}

/// What a [`Writer`] did: acknowledged puts and failed ones (whose outcome
/// is unknown: a failed put may or may not have been applied).
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    /// Acknowledged puts, key -> value.
    pub acked: BTreeMap<String, String>,
    /// Failed puts: (key, value, etcdctl's error line).
    pub failed: Vec<(String, String, String)>,
}

/// A background thread that puts `<prefix><n:06>` = `w<n>` with etcdctl,
/// one process per put, rotating over a list of endpoints, until stopped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    targets: Arc<Mutex<Vec<String>>>,
    acked: Arc<AtomicUsize>,
    handle: Option<thread::JoinHandle<Ledger>>,
}

impl Writer {
    /// Starts writing through `ctl` to `targets` (client URLs).
    pub fn start(ctl: Ctl, targets: Vec<String>, prefix: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(Mutex::new(targets));
        let acked = Arc::new(AtomicUsize::new(0));
        let (s, t, a, prefix) = (
            Arc::clone(&stop),
            Arc::clone(&targets),
            Arc::clone(&acked),
            prefix.to_string(),
        );
        let handle = thread::spawn(move || {
            let mut ledger = Ledger::default();
            let mut n = 0usize;
            while !s.load(Ordering::Relaxed) {
                let target = {
                    let t = t.lock().unwrap_or_else(|e| e.into_inner());
                    if t.is_empty() {
                        drop(t);
                        thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    t[n % t.len()].clone()
                };
                let (k, v) = (format!("{prefix}{n:06}"), format!("w{n}"));
                n += 1;
                let o = ctl.run(&target, &["put", &k, &v, "--command-timeout=3s"]);
                if o.success() {
                    ledger.acked.insert(k, v);
                    a.fetch_add(1, Ordering::Relaxed);
                } else {
                    let err = o.error_line().unwrap_or_else(|| o.combined());
                    ledger
                        .failed
                        .push((k, v, format!("{target}: {}", err.trim())));
                    thread::sleep(Duration::from_millis(100));
                }
                thread::sleep(Duration::from_millis(10));
            }
            ledger
        });
        Self {
            stop,
            targets,
            acked,
            handle: Some(handle),
        }
    }

    /// Replaces the endpoints written to.
    pub fn set_targets(&self, targets: Vec<String>) {
        *self.targets.lock().unwrap_or_else(|e| e.into_inner()) = targets;
    }

    /// Number of acknowledged puts so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `more` further puts are acknowledged (fails after `timeout`).
    pub fn wait_progress(&self, more: usize, timeout: Duration) -> Result<()> {
        let goal = self.acked() + more;
        let deadline = Instant::now() + timeout;
        while self.acked() < goal {
            if Instant::now() >= deadline {
                bail!(
                    "writer made no progress: {} acknowledged, wanted {goal} within {timeout:?}",
                    self.acked()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops the thread and returns what it did.
    pub fn stop(mut self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
