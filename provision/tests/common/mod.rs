//! Shared helpers of the provision integration tests: binaries, ports, processes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test-only helpers: panics are failures

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `etcd-provision` binary of this build.
pub fn provision() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_etcd-provision"));
    c.env("RUST_LOG", "warn");
    c
}

/// Runs `etcd-provision args`, returning its output.
pub fn run(args: &[&str]) -> Output {
    provision().args(args).output().expect("run etcd-provision")
}

/// Runs `etcd-provision args` and asserts success; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "etcd-provision {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The server under test: `ETCD_BIN`, else this target dir's `debug/etcd`.
pub fn etcd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ETCD_BIN") {
        return PathBuf::from(p);
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("debug").join("etcd"));
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_etcd-provision"));
    if let Some(dir) = exe.parent() {
        candidates.push(dir.join("etcd"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("no etcd binary: build it (`cargo build -p etcd`) or set ETCD_BIN")
        })
}

/// `etcdctl`: `ETCDCTL_BIN` or `/usr/bin/etcdctl`.
pub fn etcdctl_bin() -> PathBuf {
    std::env::var_os("ETCDCTL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcdctl"))
}

/// Removes inherited `ETCD_*`/`ETCDCTL_*` variables (etcd and etcdctl treat them as flags).
pub fn scrub(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if let Some(k) = k.to_str() {
            if k.starts_with("ETCD_") || k.starts_with("ETCDCTL_") {
                cmd.env_remove(k);
            }
        }
    }
}

/// A port that was free a moment ago (bound to 127.0.0.1:0 and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed on drop; its output goes to `log`.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> Proc {
        let f = std::fs::File::create(log).unwrap();
        cmd.stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Proc {
            child,
            log: log.to_path_buf(),
        }
    }

    /// The process's output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with the log) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("process exited ({status}):\n{}", self.log_text());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs etcdctl (API v3) with `args`, scrubbed environment plus `env`.
pub fn etcdctl(args: &[&str], env: &[(String, String)]) -> Output {
    let mut c = Command::new(etcdctl_bin());
    scrub(&mut c);
    c.env("ETCDCTL_API", "3").args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run etcdctl")
}

/// Retries `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Combined stdout + stderr of an output.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// path -> (content, mtime in ns) of every file under `dir`.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, i128)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let m = std::fs::metadata(&p).unwrap();
                let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
                out.insert(p.clone(), (std::fs::read(&p).unwrap(), mtime));
            }
        }
    }
    out
}

/// Writes a spec file into `dir` and returns its path.
pub fn write_spec(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("cluster.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// True when the server under test is the reference Go etcd (its version is below 3.6),
/// which takes no TOML config file.
pub fn is_reference() -> bool {
    let o = Command::new(etcd_bin()).arg("--version").output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let v = out
        .lines()
        .find_map(|l| l.strip_prefix("etcd Version: "))
        .unwrap_or("3.6.0")
        .trim()
        .to_string();
    let mut it = v.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
    let (major, minor) = (it.next().unwrap_or(3), it.next().unwrap_or(6));
    (major, minor) < (3, 6)
}

/// Parses a rendered env file (`KEY=value`, optionally double-quoted).
pub fn parse_env_file(path: &Path) -> Vec<(String, String)> {
    provision::render::formats::parse_env(&std::fs::read_to_string(path).unwrap())
}

/// The arguments of a rendered unit's `ExecStart=` (continuation lines joined; the
/// renderer only quotes words with spaces, which these tests do not use).
pub fn unit_exec_args(unit: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(unit).unwrap();
    let start = text.find("ExecStart=").expect("ExecStart") + "ExecStart=".len();
    let mut line = String::new();
    for l in text[start..].lines() {
        let l = l.trim();
        match l.strip_suffix('\\') {
            Some(part) => line.push_str(part),
            None => {
                line.push_str(l);
                break;
            }
        }
    }
    line.split_whitespace()
        .map(|w| w.replace("%%", "%"))
        .collect()
}

/// A spec of `n` members on 127.0.0.1 with free ports, whose rendered files point into
/// `root` (pki-dir = the bundle's own pki/, data-dir under root/data).
pub fn local_spec(root: &Path, names: &[&str], tls: bool) -> PathBuf {
    let mut text = format!(
        "[cluster]\ntoken = \"local-test\"\n[tls]\nenabled = {tls}\n[paths]\nbin-dir = \"{bin}\"\nconfig-dir = \"{root}/out/{{name}}\"\npki-dir = \"{root}/out/{{name}}/pki\"\ndata-dir = \"{root}/data/{{name}}\"\n",
        bin = etcd_bin().parent().unwrap().display(),
        root = root.display()
    );
    // Every port is held until all are picked, so no two members get the same one (a
    // port released at once can be handed out again by the next bind).
    let held: Vec<std::net::TcpListener> = (0..names.len() * 2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    drop(held);
    for (i, n) in names.iter().enumerate() {
        text.push_str(&format!(
            "[[member]]\nname = \"{n}\"\nips = [\"127.0.0.1\"]\nclient-port = {}\npeer-port = {}\n",
            ports[2 * i],
            ports[2 * i + 1]
        ));
    }
    write_spec(root, &text)
}

/// The member's ETCDCTL_* variables from its rendered etcdctl.env.
pub fn etcdctl_env(bundle: &Path) -> Vec<(String, String)> {
    parse_env_file(&bundle.join("etcdctl.env"))
        .into_iter()
        .filter(|(k, _)| k != "ETCDCTL_API")
        .collect()
}
