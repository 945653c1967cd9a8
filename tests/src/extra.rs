//! Harness pieces for tests that need full control over the server's command
//! line and environment (no `--name`/`--data-dir`/URL flags added for them),
//! TLS or unix-socket listeners, or readiness detection from the log instead
//! of `GET /health` over plain HTTP.
//!
//! * [`RawEtcd`] owns a scratch directory (the server's working directory,
//!   also the place for certificates, config files and data dirs) and runs
//!   the server binary with exactly the arguments and environment a test
//!   gives. Readiness is the log line [`READY_LINE`]; the process is killed
//!   when the value is dropped.
//! * [`run_etcd`] runs the server to completion (for `--version`, bad flags,
//!   bad config files) and returns what it printed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::bins::etcd_bin;
use crate::etcdctl::Output;
use crate::process::KEEP_DIRS_ENV;

/// The log line etcd writes once it serves client requests.
pub const READY_LINE: &str = "ready to serve client requests";

/// A server process started with a caller-chosen command line, in its own
/// scratch directory. Each [`RawEtcd::spawn`] writes its output to
/// `<dir>/logs/etcd.<n>.{stdout,stderr}`.
pub struct RawEtcd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
    command: String,
}

impl RawEtcd {
    /// Creates the scratch directory; nothing runs yet.
    pub fn new() -> Result<Self> {
        let mut dir = tempfile::Builder::new()
            .prefix("etcd-e2e-raw-")
            .tempdir()
            .context("create temp dir")?;
        if std::env::var(KEEP_DIRS_ENV).is_ok_and(|v| v == "1") {
            dir.disable_cleanup(true);
        }
        std::fs::create_dir_all(dir.path().join("logs")).context("create log dir")?;
        Ok(Self {
            dir,
            child: None,
            starts: 0,
            command: String::new(),
        })
    }

    /// The scratch directory (the server's working directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `dir()/<name>` as a `String` (for flags).
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Starts the server with exactly `args` and `env` (inherited `ETCD_*`
    /// variables are removed), working directory [`RawEtcd::dir`].
    pub fn spawn<S: AsRef<str>>(&mut self, args: &[S], env: &[(&str, &str)]) -> Result<()> {
        if self.child.is_some() {
            bail!("etcd is already running");
        }
        self.starts += 1;
        let out = File::create(self.log_path(self.starts, "stdout")).context("stdout log")?;
        let err = File::create(self.log_path(self.starts, "stderr")).context("stderr log")?;
        let mut cmd = Command::new(etcd_bin());
        crate::env::scrub(&mut cmd);
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        // The default peer listener (localhost:2380) would collide between tests
        // running in parallel: listen on a free port unless the test chose one. The
        // advertised peer URL keeps its default, so `--initial-cluster` still matches.
        let peer_chosen = args.iter().any(|a| a.contains("listen-peer-urls"))
            || env.iter().any(|(k, _)| *k == "ETCD_LISTEN_PEER_URLS");
        if !peer_chosen {
            cmd.env(
                "ETCD_LISTEN_PEER_URLS",
                format!("http://127.0.0.1:{}", crate::ports::free_port()),
            );
        }
        cmd.args(&args)
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        self.command = format!(
            "{} {} {}",
            env.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            etcd_bin().display(),
            args.join(" ")
        );
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", etcd_bin().display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// [`RawEtcd::spawn`] followed by [`RawEtcd::wait_ready`] (20 s).
    pub fn start<S: AsRef<str>>(&mut self, args: &[S], env: &[(&str, &str)]) -> Result<()> {
        self.spawn(args, env)?;
        self.wait_ready(Duration::from_secs(20))
    }

    fn log_path(&self, n: u32, stream: &str) -> PathBuf {
        self.dir
            .path()
            .join("logs")
            .join(format!("etcd.{n}.{stream}"))
    }

    /// Full stdout followed by stderr of the current (latest) run.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for stream in ["stdout", "stderr"] {
            s.push_str(
                &std::fs::read_to_string(self.log_path(self.starts, stream)).unwrap_or_default(),
            );
        }
        s
    }

    /// The last `lines` lines of the current run's output, with the command line.
    pub fn log_tail(&self, lines: usize) -> String {
        let all = self.logs();
        let v: Vec<&str> = all.lines().collect();
        let from = v.len().saturating_sub(lines);
        format!(
            "command: {}\n--- log (last {lines} lines) ---\n{}",
            self.command,
            v[from..].join("\n")
        )
    }

    /// The process ID of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the server process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits until the current run's output contains `needle`. Fails if the
    /// process exits first or after `timeout`, with the log tail.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logs().contains(needle) {
                return Ok(());
            }
            match self.child.as_mut() {
                None => bail!("etcd is not running"),
                Some(c) => {
                    if let Ok(Some(status)) = c.try_wait() {
                        self.child = None;
                        bail!(
                            "etcd exited with {status} before logging {needle:?}\n{}",
                            self.log_tail(40)
                        );
                    }
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "etcd did not log {needle:?} within {timeout:?}\n{}",
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for [`READY_LINE`].
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        self.wait_log(READY_LINE, timeout)
    }

    /// Sends SIGTERM (does not wait).
    pub fn send_sigterm(&self) -> Result<()> {
        let Some(c) = self.child.as_ref() else {
            bail!("etcd is not running");
        };
        let pid = Pid::from_raw(i32::try_from(c.id()).context("pid out of range")?);
        signal::kill(pid, Signal::SIGTERM).context("SIGTERM etcd")
    }

    /// Waits up to `timeout` for the process to exit and returns its status;
    /// on timeout kills it and fails.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("etcd is not running");
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait().context("wait for etcd")? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!(
                    "etcd did not exit within {timeout:?}\n{}",
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait (20 s) for the exit status.
    pub fn sigterm(&mut self) -> Result<ExitStatus> {
        self.send_sigterm()?;
        self.wait_exit(Duration::from_secs(20))
    }

    /// SIGKILL and reap; no-op if not running.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().context("SIGKILL etcd")?;
            c.wait().context("wait for etcd")?;
        }
        Ok(())
    }
}

impl Drop for RawEtcd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the server binary with `args` and `env` in `cwd` until it exits (killed
/// after `timeout`, which is reported as a failure status) and returns its output.
pub fn run_etcd(args: &[&str], env: &[(&str, &str)], cwd: &Path, timeout: Duration) -> Output {
    let mut cmd = Command::new(etcd_bin());
    crate::env::scrub(&mut cmd);
    cmd.args(args)
        .envs(env.iter().copied())
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", etcd_bin().display()));
    let deadline = Instant::now() + timeout;
    // Output is small (an error message or a version); pipes will not fill up.
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                break;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("wait for etcd: {e}"),
        }
    }
    let out = child.wait_with_output().expect("collect etcd output");
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        command: format!("etcd {}", args.join(" ")),
    }
}

/// Runs etcdctl with exactly `args` (no `--endpoints` added; give it yourself)
/// and a clean environment plus `ETCDCTL_API=3`.
pub fn etcdctl_raw(args: &[&str]) -> Output {
    let mut cmd = Command::new(crate::bins::etcdctl_bin());
    crate::env::scrub(&mut cmd);
    cmd.env("ETCDCTL_API", "3").args(args).stdin(Stdio::null());
    let out = cmd.output().expect("run etcdctl");
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        command: format!("etcdctl {}", args.join(" ")),
    }
}
