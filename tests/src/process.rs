//! Starting, stopping and restarting one etcd server process.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::bins::etcd_bin;
use crate::child::EtcdctlChild;
use crate::etcdctl::{self, Output};
use crate::ports::free_port;

/// Environment variable: when `1`, temp dirs (data dir and logs) of servers
/// are kept after the test for inspection.
pub const KEEP_DIRS_ENV: &str = "ETCD_E2E_KEEP_DIRS";

/// How to start an etcd process.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// `--name` of the member (also used in `--initial-cluster`).
    pub name: String,
    /// Extra command-line flags appended after the standard ones.
    pub args: Vec<String>,
    /// Extra environment variables for the server process.
    pub env: Vec<(String, String)>,
    /// How long to wait for the server to become healthy.
    pub ready_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            name: "e2e".to_string(),
            args: Vec::new(),
            env: Vec::new(),
            ready_timeout: Duration::from_secs(20),
        }
    }
}

impl EtcdOptions {
    /// Sets the member name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Appends one extra flag (e.g. `--max-txn-ops=3`).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds one environment variable for the server process.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the readiness timeout.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }
}

/// One etcd server process on loopback ports with its own temporary data dir.
///
/// The process is killed (SIGKILL) when the value is dropped. Its stdout and
/// stderr go to `<dir>/logs/etcd.<n>.{stdout,stderr}` where `n` counts starts.
pub struct EtcdProcess {
    opts: EtcdOptions,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    starts: u32,
}

impl EtcdProcess {
    /// Starts a server with `opts` and waits until it is healthy.
    pub fn start(opts: EtcdOptions) -> Result<Self> {
        let mut dir = tempfile::Builder::new()
            .prefix("etcd-e2e-")
            .tempdir()
            .context("create temp dir")?;
        if std::env::var(KEEP_DIRS_ENV).is_ok_and(|v| v == "1") {
            dir.disable_cleanup(true);
        }
        std::fs::create_dir_all(dir.path().join("logs")).context("create log dir")?;
        let mut p = Self {
            opts,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
            starts: 0,
        };
        p.spawn()?;
        p.wait_ready()?;
        Ok(p)
    }

    /// Starts a server with default options.
    pub fn start_default() -> Result<Self> {
        Self::start(EtcdOptions::default())
    }

    /// Client port on 127.0.0.1.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// Peer port on 127.0.0.1.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// `127.0.0.1:<client port>`, the form etcdctl's `--endpoints` takes.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:<client port>`.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:<peer port>`.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// `http://127.0.0.1:<client port><path>` for HTTP requests.
    pub fn http_url(&self, path: &str) -> String {
        format!("{}{}", self.client_url(), path)
    }

    /// The member name.
    pub fn name(&self) -> &str {
        &self.opts.name
    }

    /// The temporary directory holding the data dir and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `--data-dir` of the server.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The process ID of the running server, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The full command line flags passed to the server.
    pub fn flags(&self) -> Vec<String> {
        let mut a = vec![
            format!("--name={}", self.opts.name),
            format!("--data-dir={}", self.data_dir().display()),
            format!("--listen-client-urls={}", self.client_url()),
            format!("--advertise-client-urls={}", self.client_url()),
            format!("--listen-peer-urls={}", self.peer_url()),
            format!("--initial-advertise-peer-urls={}", self.peer_url()),
            format!("--initial-cluster={}={}", self.opts.name, self.peer_url()),
        ];
        a.extend(self.opts.args.iter().cloned());
        a
    }

    fn log_path(&self, n: u32, stream: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("etcd.{n}.{stream}"))
    }

    fn spawn(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("etcd is already running");
        }
        self.starts += 1;
        let n = self.starts;
        let out = File::create(self.log_path(n, "stdout")).context("create stdout log")?;
        let err = File::create(self.log_path(n, "stderr")).context("create stderr log")?;
        let mut cmd = Command::new(etcd_bin());
        crate::env::scrub(&mut cmd);
        cmd.args(self.flags())
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", etcd_bin().display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// The last `lines` lines of the current (latest) stdout and stderr logs.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut s = String::new();
        for stream in ["stdout", "stderr"] {
            let path = self.log_path(self.starts, stream);
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            s.push_str(&format!("--- {} (last {lines} lines) ---\n", path.display()));
            for l in &all[from..] {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }

    /// Full text of the current stderr log.
    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.starts, "stderr")).unwrap_or_default()
    }

    /// True while the server process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Polls until the server answers `GET /health` with `"health":"true"`
    /// (or, if the server has no `/health` yet, until `etcdctl endpoint
    /// health` succeeds). Fails early if the process exits, and with the log
    /// tail after `ready_timeout`.
    pub fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.opts.ready_timeout;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    bail!(
                        "etcd exited with {status} before becoming ready ({} {})\n{}",
                        etcd_bin().display(),
                        self.flags().join(" "),
                        self.log_tail(40)
                    );
                }
            } else {
                bail!("etcd is not running");
            }
            let last = match crate::http::get(self.client_port, "/health", Duration::from_secs(2)) {
                Ok(r) if r.status == 200 && r.body.contains("\"health\":\"true\"") => return Ok(()),
                Ok(r) if r.status == 404 => {
                    let o = self.etcdctl(&["endpoint", "health", "--command-timeout=2s"]);
                    if o.success() {
                        return Ok(());
                    }
                    format!("/health is 404; etcdctl endpoint health: {}", o.combined())
                }
                Ok(r) => format!("/health -> {} {}", r.status, r.body.trim()),
                Err(e) => format!("/health: {e}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "etcd not ready after {:?} (last probe: {last})\n{}",
                    self.opts.ready_timeout,
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server with SIGKILL and reaps it. No-op if it is not running.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().context("SIGKILL etcd")?;
            c.wait().context("wait for etcd")?;
        }
        Ok(())
    }

    /// Sends SIGTERM and waits up to 20 s for the server to exit (then
    /// SIGKILLs it and fails). Returns the exit status.
    pub fn sigterm(&mut self) -> Result<ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("etcd is not running");
        };
        let pid = Pid::from_raw(i32::try_from(c.id()).context("pid out of range")?);
        signal::kill(pid, Signal::SIGTERM).context("SIGTERM etcd")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = c.try_wait().context("wait for etcd")? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("etcd did not exit within 20 s of SIGTERM\n{}", self.log_tail(40));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server if it is running (SIGTERM), then starts it again on
    /// the same data dir and ports and waits until it is ready.
    pub fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            self.sigterm()?;
        } else {
            // Reap a process that exited by itself.
            self.kill9()?;
        }
        self.spawn()?;
        self.wait_ready()
    }

    /// Runs `etcdctl --endpoints=<this server> <args>`.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        etcdctl::run(&self.endpoint(), args, None)
    }

    /// Runs etcdctl with `input` on its standard input (e.g. for `txn`).
    pub fn etcdctl_stdin(&self, args: &[&str], input: &str) -> Output {
        etcdctl::run(&self.endpoint(), args, Some(input))
    }

    /// Runs etcdctl, asserts it exited 0 and returns its stdout.
    #[track_caller]
    pub fn etcdctl_ok(&self, args: &[&str]) -> String {
        self.etcdctl(args).ok()
    }

    /// Runs etcdctl (add `-w json` yourself), asserts success, parses stdout.
    #[track_caller]
    pub fn etcdctl_json(&self, args: &[&str]) -> serde_json::Value {
        self.etcdctl(args).json()
    }

    /// Spawns a long-running etcdctl (e.g. `watch`) against this server.
    pub fn spawn_etcdctl(&self, args: &[&str]) -> EtcdctlChild {
        EtcdctlChild::spawn(&self.endpoint(), args)
    }

    /// Connects an `etcd_client::Client` to this server.
    pub async fn client(&self) -> Result<etcd_client::Client> {
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(15));
        etcd_client::Client::connect([self.client_url()], Some(opts))
            .await
            .with_context(|| format!("connect etcd-client to {}", self.client_url()))
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
