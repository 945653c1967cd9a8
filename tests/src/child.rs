//! Long-running `etcdctl` processes (e.g. `etcdctl watch`) whose stdout is
//! read line by line while the test does other things.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A running etcdctl child whose stdout lines arrive on a channel.
/// Dropping it kills the process.
pub struct EtcdctlChild {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    command: String,
}

impl EtcdctlChild {
    /// Spawns `etcdctl --endpoints=<endpoints> <args>` with piped stdout/stderr.
    pub fn spawn(endpoints: &str, args: &[&str]) -> Self {
        let mut cmd = crate::etcdctl::command(endpoints, args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn etcdctl");
        let stdout = child.stdout.take().expect("stdout pipe");
        let mut stderr_pipe = child.stderr.take().expect("stderr pipe");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            child,
            lines: rx,
            stderr,
            command: format!("etcdctl --endpoints={endpoints} {}", args.join(" ")),
        }
    }

    /// The next stdout line, or `None` if none arrives within `timeout`
    /// (or the process closed stdout).
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Some(l),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Reads exactly `n` lines, panicking (with what was read so far and
    /// stderr) if they do not all arrive within `timeout` in total.
    #[track_caller]
    pub fn expect_lines(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Some(l) => got.push(l),
                None => panic!(
                    "`{}`: expected {n} lines within {timeout:?}, got {}: {got:?}\nstderr:\n{}",
                    self.command,
                    got.len(),
                    self.stderr_text()
                ),
            }
        }
        got
    }

    /// Collects lines until none arrives for `quiet`.
    pub fn drain(&self, quiet: Duration) -> Vec<String> {
        let mut got = Vec::new();
        while let Some(l) = self.next_line(quiet) {
            got.push(l);
        }
        got
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for EtcdctlChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
