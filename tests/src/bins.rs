//! Locating the `etcd` server binary and the `etcdctl` client binary, and
//! finding out which versions they are.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Environment variable naming the server binary under test.
pub const ETCD_BIN_ENV: &str = "ETCD_BIN";
/// Environment variable naming the `etcdctl` binary used to drive the server.
pub const ETCDCTL_BIN_ENV: &str = "ETCDCTL_BIN";
/// Environment variable that forces (`1`/`true`) or denies (`0`/`false`)
/// reference mode; without it reference mode is detected from `etcd --version`.
pub const REFERENCE_ENV: &str = "ETCD_E2E_REFERENCE";

/// Default `etcdctl` location (Debian's package).
pub const DEFAULT_ETCDCTL: &str = "/usr/bin/etcdctl";

/// A `major.minor.patch` version triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl Version {
    /// Builds a version triple.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses the first `X.Y.Z` (patch optional) found after `prefix` in `text`.
    pub fn parse_after(text: &str, prefix: &str) -> Option<Self> {
        let line = text.lines().find(|l| l.trim_start().starts_with(prefix))?;
        let rest = line.trim_start()[prefix.len()..].trim();
        let mut nums = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u32>());
        let major = nums.next()?.ok()?;
        let minor = nums.next()?.ok()?;
        let patch = nums.next().and_then(|r| r.ok()).unwrap_or(0);
        Some(Self::new(major, minor, patch))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Root of the cargo workspace (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Candidate locations of the server binary, in the order they are tried
/// when `ETCD_BIN` is not set.
pub fn etcd_bin_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        out.push(PathBuf::from(dir).join("debug").join("etcd"));
    }
    // The test executable lives in `<target>/<profile>/deps/`; the server
    // binary of the same build is `<target>/<profile>/etcd`.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            out.push(profile_dir.join("etcd"));
        }
    }
    out.push(workspace_root().join("target").join("debug").join("etcd"));
    out
}

/// Path of the server binary under test.
///
/// Uses `ETCD_BIN` when set (it must exist), otherwise the first existing
/// candidate of [`etcd_bin_candidates`]. Panics with an explanatory message
/// when nothing is found.
pub fn etcd_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os(ETCD_BIN_ENV) {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "{ETCD_BIN_ENV}={} does not exist or is not a file",
                p.display()
            );
            return p;
        }
        let candidates = etcd_bin_candidates();
        if let Some(p) = candidates.iter().find(|p| p.is_file()) {
            return p.clone();
        }
        let list: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        panic!(
            "etcd server binary not found; looked at: {}. Build it with \
             `cargo build -p etcd` (same CARGO_TARGET_DIR) or point {ETCD_BIN_ENV} at a binary \
             (e.g. {ETCD_BIN_ENV}=/usr/bin/etcd for the reference server)",
            list.join(", ")
        );
    })
    .clone()
}

/// Path of this project's `etcdutl` (snapshot restore): `ETCDUTL_BIN`, else the
/// `etcdutl` beside the server binary under test.
pub fn etcdutl_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ETCDUTL_BIN") {
        return PathBuf::from(p);
    }
    etcd_bin().with_file_name("etcdutl")
}

/// Path of the `etcdctl` binary: `ETCDCTL_BIN` or `/usr/bin/etcdctl`.
/// Panics with an explanatory message when it does not exist.
pub fn etcdctl_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let p = std::env::var_os(ETCDCTL_BIN_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ETCDCTL));
        assert!(
            p.is_file(),
            "etcdctl not found at {} (set {ETCDCTL_BIN_ENV}, or `apt-get install etcd-client`)",
            p.display()
        );
        p
    })
    .clone()
}

fn command_stdout(bin: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    crate::env::scrub(&mut cmd);
    match cmd.output() {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run {} {:?}: {e}", bin.display(), args),
    }
}

/// The version in `etcd --version` ("etcd Version: X.Y.Z"), if it parses.
fn try_server_version() -> Option<Version> {
    static V: OnceLock<Option<Version>> = OnceLock::new();
    *V.get_or_init(|| {
        let out = command_stdout(&etcd_bin(), &["--version"]);
        Version::parse_after(&out, "etcd Version:")
    })
}

/// Version the server binary reports in `etcd --version` ("etcd Version: X.Y.Z").
/// Panics if the output has no parsable version line.
pub fn server_version() -> Version {
    try_server_version().unwrap_or_else(|| {
        panic!(
            "cannot parse an `etcd Version: X.Y.Z` line from `{} --version`",
            etcd_bin().display()
        )
    })
}

/// Version of `etcdctl` ("etcdctl version: X.Y.Z").
pub fn etcdctl_version() -> Version {
    static V: OnceLock<Version> = OnceLock::new();
    *V.get_or_init(|| {
        let out = command_stdout(&etcdctl_bin(), &["version"]);
        Version::parse_after(&out, "etcdctl version:")
            .unwrap_or_else(|| panic!("cannot parse `etcdctl version` output: {out:?}"))
    })
}

/// True when the server under test is the reference Go etcd (3.4/3.5)
/// rather than the etcd 3.6 re-implementation.
///
/// `ETCD_E2E_REFERENCE=1|0` decides explicitly; otherwise a server that
/// reports a version below 3.6 in `etcd --version` is the reference. A
/// server whose version does not parse is not the reference (the 3.6
/// assertions apply to it).
/// Assertions that only hold for etcd 3.6 are skipped in reference mode.
pub fn is_reference() -> bool {
    static R: OnceLock<bool> = OnceLock::new();
    *R.get_or_init(|| match std::env::var(REFERENCE_ENV).ok().as_deref() {
        Some("1") | Some("true") | Some("yes") => true,
        Some("0") | Some("false") | Some("no") => false,
        _ => try_server_version().is_some_and(|v| v < Version::new(3, 6, 0)),
    })
}

#[cfg(test)]
mod tests {
    use super::Version;

    #[test]
    fn parses_versions() {
        let v = Version::parse_after(
            "etcd Version: 3.4.23\nGit SHA: x\nGo Version: go1.19.8\n",
            "etcd Version:",
        );
        assert_eq!(v, Some(Version::new(3, 4, 23)));
        let v = Version::parse_after(
            "etcdctl version: 3.6.0-rc.1\nAPI version: 3.6",
            "etcdctl version:",
        );
        assert_eq!(v, Some(Version::new(3, 6, 0)));
        assert_eq!(Version::parse_after("nothing", "etcd Version:"), None);
        assert!(Version::new(3, 4, 23) < Version::new(3, 6, 0));
    }
}
