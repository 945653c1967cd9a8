//! Running `etcdctl` against a server and inspecting what it printed.

use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use crate::bins::etcdctl_bin;

/// What one `etcdctl` invocation produced.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit status of the process.
    pub status: ExitStatus,
    /// Standard output, lossily decoded as UTF-8.
    pub stdout: String,
    /// Standard error, lossily decoded as UTF-8.
    pub stderr: String,
    /// The command line, for failure messages.
    pub command: String,
}

impl Output {
    /// True when etcdctl exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Exit code (`-1` when killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Panics with the full output unless etcdctl exited 0; returns `self`.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.success(),
            "`{}` failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics with the full output if etcdctl exited 0; returns `self`.
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(
            !self.success(),
            "`{}` unexpectedly succeeded\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> String {
        self.assert_success();
        self.stdout.clone()
    }

    /// Asserts success and parses stdout as one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        self.assert_success();
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "`{}` printed invalid JSON ({e}):\n{}",
                self.command, self.stdout
            )
        })
    }

    /// Stdout followed by stderr (etcdctl versions differ in which stream
    /// some messages go to).
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The last line starting with `Error:` on stderr, trimmed, if any
    /// (etcdctl prints `Error: <message>` before exiting non-zero).
    pub fn error_line(&self) -> Option<String> {
        self.stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("Error:"))
            .map(|l| l.trim().to_string())
    }
}

/// Builds an `etcdctl` command with `--endpoints=<endpoints>` and a clean
/// environment (`ETCDCTL_API=3`, no inherited `ETCDCTL_*`).
pub fn command(endpoints: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(etcdctl_bin());
    crate::env::scrub(&mut cmd);
    cmd.env("ETCDCTL_API", "3");
    cmd.arg(format!("--endpoints={endpoints}"));
    cmd.args(args);
    cmd
}

fn describe(endpoints: &str, args: &[&str]) -> String {
    format!("etcdctl --endpoints={endpoints} {}", args.join(" "))
}

/// Runs etcdctl to completion, feeding `stdin` (if any) to it.
pub fn run(endpoints: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = command(endpoints, args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", etcdctl_bin().display()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(input.as_bytes()).expect("write etcdctl stdin");
        drop(pipe);
    }
    let out = child.wait_with_output().expect("wait for etcdctl");
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        command: describe(endpoints, args),
    }
}

/// Convenience: a path as `&str` for etcdctl arguments.
pub fn path_arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}
