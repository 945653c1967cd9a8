//! Turning a [`RawSpec`] into a [`ClusterSpec`], reporting every problem at once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use super::file::{RawMember, RawSpec};
use super::{
    ClusterSpec, KeyAlgorithm, Member, Paths, ReleaseSpec, TlsSpec, DEFAULT_CLIENT_PORT,
    DEFAULT_PEER_PORT, DEFAULT_RELEASE_URL, DEFAULT_VERSION,
};

/// One thing wrong with a spec: where (`member controller-1`, `tls`, ...) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The part of the spec at fault.
    pub at: String,
    /// What is wrong, in words a user can act on.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.what)
    }
}

/// Why a spec could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read spec {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The TOML did not parse or had unknown keys.
    #[error("invalid spec {origin}: {reason}")]
    Parse {
        /// File name or `flags`.
        origin: String,
        /// The parser's message.
        reason: String,
    },
    /// The spec parsed but is not usable; every problem found is listed.
    #[error("invalid cluster spec:\n{}", list(.0))]
    Invalid(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// True when `s` is a DNS name of lowercase labels (`a-z`, `0-9`, inner `-`), each 1..=63
/// long, 253 at most in all: usable as a member name, certificate SAN and file name.
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// True for a plain version `X.Y.Z` (optionally with a `-suffix` like `-rc.1`).
fn is_version(v: &str) -> bool {
    let core = v.split_once('-').map_or(v, |(c, _)| c);
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn fail(&mut self, at: impl Into<String>, what: impl Into<String>) {
        self.problems.push(Problem {
            at: at.into(),
            what: what.into(),
        });
    }

    fn port(&mut self, at: &str, key: &str, value: Option<u32>, default: u16) -> u16 {
        match value {
            None => default,
            Some(p) if (1..=65535).contains(&p) => p as u16,
            Some(p) => {
                self.fail(at, format!("{key} {p} is not a port (1-65535)"));
                default
            }
        }
    }

    fn path(&mut self, at: &str, key: &str, value: Option<&str>, default: &str) -> PathBuf {
        let v = value.unwrap_or(default);
        if !v.starts_with('/') {
            self.fail(at, format!("{key} {v:?} must be an absolute path"));
        }
        PathBuf::from(v)
    }

    fn account(&mut self, key: &str, value: Option<&str>) -> String {
        let v = value.unwrap_or("etcd").to_string();
        let ok = !v.is_empty()
            && v.len() <= 32
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && v.as_bytes()[0].is_ascii_lowercase();
        if !ok {
            self.fail(
                "paths",
                format!("{key} {v:?} is not a valid user/group name"),
            );
        }
        v
    }

    fn member(&mut self, index: usize, raw: &RawMember) -> Member {
        let at = if raw.name.is_empty() {
            format!("member #{}", index + 1)
        } else {
            format!("member {}", raw.name)
        };
        if raw.name.is_empty() {
            self.fail(&at, "has no name");
        } else if !is_dns_name(&raw.name) {
            self.fail(
                &at,
                format!(
                    "name {:?} must be a lowercase DNS name (a-z, 0-9, '-', '.'), since it is \
                     also a certificate SAN",
                    raw.name
                ),
            );
        }
        let mut ips = Vec::new();
        for ip in &raw.ips {
            match ip.trim().parse::<IpAddr>() {
                Ok(a) if a.is_unspecified() => self.fail(
                    &at,
                    format!("{ip:?} is unspecified; give the member's own address"),
                ),
                Ok(a) if ips.contains(&a) => self.fail(&at, format!("IP {ip} listed twice")),
                Ok(a) => ips.push(a),
                Err(_) => self.fail(&at, format!("{ip:?} is not an IP address")),
            }
        }
        if raw.ips.is_empty() {
            self.fail(
                &at,
                "needs at least one IP address (etcd listens on IPs, not names)",
            );
        }
        for h in &raw.hostnames {
            if !is_dns_name(h) {
                self.fail(&at, format!("hostname {h:?} is not a lowercase DNS name"));
            }
        }
        let client_port = self.port(&at, "client-port", raw.client_port, DEFAULT_CLIENT_PORT);
        let peer_port = self.port(&at, "peer-port", raw.peer_port, DEFAULT_PEER_PORT);
        if client_port == peer_port {
            self.fail(
                &at,
                format!("client-port and peer-port are both {client_port}"),
            );
        }
        let data_dir = raw
            .data_dir
            .as_deref()
            .map(|d| self.path(&at, "data-dir", Some(d), d));
        Member {
            name: raw.name.clone(),
            ips,
            hostnames: raw.hostnames.clone(),
            client_port,
            peer_port,
            data_dir,
        }
    }
}

/// Checks a raw spec and fills in defaults.
///
/// Guarantees: on `Ok` every invariant of [`ClusterSpec`] holds; on `Err` the error lists
/// every problem found (not just the first), each naming the member or section at fault.
pub fn validate(raw: &RawSpec) -> Result<ClusterSpec, SpecError> {
    let mut c = Checker {
        problems: Vec::new(),
    };

    // [cluster]
    let name = raw.cluster.name.clone().unwrap_or_else(|| "etcd".into());
    let token = raw
        .cluster
        .token
        .clone()
        .unwrap_or_else(|| format!("{name}-cluster"));
    if token.is_empty()
        || token
            .chars()
            .any(|ch| ch.is_whitespace() || ch.is_control())
    {
        c.fail(
            "cluster",
            format!("token {token:?} must be non-empty without spaces"),
        );
    }

    // [tls]
    let key_algorithm = match raw.tls.key_algorithm.as_deref() {
        None => KeyAlgorithm::EcdsaP256,
        Some(s) => KeyAlgorithm::parse(s).unwrap_or_else(|| {
            c.fail(
                "tls",
                format!("key-algorithm {s:?} is not one of {}", KeyAlgorithm::NAMES),
            );
            KeyAlgorithm::EcdsaP256
        }),
    };
    let validity_days = raw.tls.validity_days.unwrap_or(365);
    let ca_validity_days = raw.tls.ca_validity_days.unwrap_or(3650);
    let renew_before_days = raw.tls.renew_before_days.unwrap_or(30);
    if validity_days == 0 || ca_validity_days == 0 {
        c.fail("tls", "validity-days and ca-validity-days must be positive");
    }
    if renew_before_days >= validity_days {
        c.fail(
            "tls",
            format!(
                "renew-before-days ({renew_before_days}) must be less than validity-days \
                 ({validity_days}), or every run would reissue every certificate"
            ),
        );
    }
    for san in &raw.tls.extra_sans {
        if san.parse::<IpAddr>().is_err() && !is_dns_name(san.trim_start_matches("*.")) {
            c.fail(
                "tls",
                format!("extra SAN {san:?} is neither an IP nor a DNS name"),
            );
        }
    }

    // [release]
    let version = raw
        .release
        .version
        .as_deref()
        .unwrap_or(DEFAULT_VERSION)
        .trim_start_matches('v')
        .to_string();
    if !is_version(&version) {
        c.fail("release", format!("version {version:?} is not X.Y.Z"));
    }
    let base_url = raw
        .release
        .url
        .clone()
        .unwrap_or_else(|| DEFAULT_RELEASE_URL.into())
        .trim_end_matches('/')
        .to_string();
    if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
        c.fail(
            "release",
            format!("url {base_url:?} must be an http(s) URL"),
        );
    }
    let sha256 = raw.release.sha256.as_ref().map(|s| s.to_ascii_lowercase());
    if let Some(d) = &sha256 {
        if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
            c.fail("release", format!("sha256 {d:?} is not 64 hex digits"));
        }
    }

    // [paths]
    let p = &raw.paths;
    let paths = Paths {
        bin_dir: c.path("paths", "bin-dir", p.bin_dir.as_deref(), "/usr/local/bin"),
        config_dir: c.path("paths", "config-dir", p.config_dir.as_deref(), "/etc/etcd"),
        pki_dir: c.path("paths", "pki-dir", p.pki_dir.as_deref(), "/etc/etcd/pki"),
        data_dir: c.path("paths", "data-dir", p.data_dir.as_deref(), "/var/lib/etcd"),
        unit_dir: c.path(
            "paths",
            "unit-dir",
            p.unit_dir.as_deref(),
            "/etc/systemd/system",
        ),
        unit_name: p.unit_name.clone().unwrap_or_else(|| "etcd".into()),
        user: c.account("user", p.user.as_deref()),
        group: c.account("group", p.group.as_deref()),
    };
    if !is_dns_name(&paths.unit_name) {
        c.fail(
            "paths",
            format!("unit-name {:?} is not a plain name", paths.unit_name),
        );
    }

    // [[member]]
    if raw.members.is_empty() {
        c.fail(
            "spec",
            "no members: add [[member]] tables or --member NAME=IP flags",
        );
    }
    let members: Vec<Member> = raw
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| c.member(i, m))
        .collect();
    let mut names = BTreeSet::new();
    let mut sockets: BTreeMap<(IpAddr, u16), (usize, &str)> = BTreeMap::new();
    for (idx, m) in members.iter().enumerate() {
        if !m.name.is_empty() && !names.insert(m.name.as_str()) {
            c.fail(format!("member {}", m.name), "duplicate member name");
        }
        for ip in &m.ips {
            for port in [m.client_port, m.peer_port] {
                if let Some((other_idx, other)) = sockets.insert((*ip, port), (idx, &m.name)) {
                    if other_idx != idx {
                        c.fail(
                            format!("member {}", m.name),
                            format!("{ip} port {port} is also used by member {other}"),
                        );
                    }
                }
            }
        }
    }
    // Members sharing a host (an IP) must not share files.
    for (i, a) in members.iter().enumerate() {
        for b in &members[i + 1..] {
            if a.name.is_empty() || a.name == b.name || !a.ips.iter().any(|ip| b.ips.contains(ip)) {
                continue;
            }
            let data = |m: &Member| {
                m.data_dir
                    .clone()
                    .unwrap_or_else(|| Paths::for_member(&paths.data_dir, &m.name))
            };
            if data(a) == data(b) {
                c.fail(
                    format!("member {}", b.name),
                    format!(
                        "shares a host with member {} and the data-dir {}; use {{name}} in \
                         paths.data-dir or set data-dir per member",
                        a.name,
                        data(a).display()
                    ),
                );
            }
            for (key, dir) in [
                ("config-dir", &paths.config_dir),
                ("pki-dir", &paths.pki_dir),
            ] {
                if Paths::for_member(dir, &a.name) == Paths::for_member(dir, &b.name) {
                    c.fail(
                        format!("member {}", b.name),
                        format!(
                            "shares a host with member {} and the {key} {}; use {{name}} in \
                             paths.{key}",
                            a.name,
                            dir.display()
                        ),
                    );
                }
            }
        }
    }

    if !c.problems.is_empty() {
        return Err(SpecError::Invalid(c.problems));
    }
    Ok(ClusterSpec {
        token,
        tls: TlsSpec {
            enabled: raw.tls.enabled.unwrap_or(true),
            key_algorithm,
            validity_days,
            ca_validity_days,
            renew_before_days,
            extra_sans: raw.tls.extra_sans.clone(),
        },
        release: ReleaseSpec {
            version,
            base_url,
            sha256,
        },
        paths,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_str;

    fn problems(toml: &str) -> Vec<String> {
        match validate(&parse_str(toml, "t").unwrap()) {
            Ok(_) => vec![],
            Err(SpecError::Invalid(p)) => p.iter().map(|p| p.to_string()).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn minimal_spec_gets_defaults() {
        let spec = validate(
            &parse_str(
                "[[member]]\nname = \"controller-0\"\nips = [\"10.0.0.1\"]\n",
                "t",
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(spec.token, "etcd-cluster");
        assert!(spec.tls.enabled);
        assert_eq!(spec.members[0].client_port, 2379);
        assert_eq!(spec.paths.data_dir, PathBuf::from("/var/lib/etcd"));
        assert_eq!(spec.scheme(), "https");
    }

    #[test]
    fn every_problem_is_reported_with_its_member() {
        let p = problems(
            r#"
            [[member]]
            name = "Controller_0"
            ips = ["10.0.0.300"]
            [[member]]
            name = "b"
            ips = ["10.0.0.2"]
            client-port = 70000
            [[member]]
            name = "b"
            ips = ["10.0.0.2"]
            "#,
        );
        let all = p.join("\n");
        assert!(
            all.contains("member Controller_0: name \"Controller_0\" must be"),
            "{all}"
        );
        assert!(all.contains("\"10.0.0.300\" is not an IP address"), "{all}");
        assert!(
            all.contains("member b: client-port 70000 is not a port"),
            "{all}"
        );
        assert!(all.contains("member b: duplicate member name"), "{all}");
        assert!(all.contains("port 2380 is also used by member b"), "{all}");
    }

    #[test]
    fn key_algorithm_spellings() {
        let alg = |s: &str| {
            validate(
                &parse_str(
                    &format!("[tls]\nkey-algorithm = \"{s}\"\n[[member]]\nname = \"a\"\nips = [\"10.0.0.1\"]\n"),
                    "t",
                )
                .unwrap(),
            )
            .unwrap()
            .tls
            .key_algorithm
        };
        assert_eq!(alg("ecdsa-p256"), KeyAlgorithm::EcdsaP256);
        assert_eq!(alg("ed25519"), KeyAlgorithm::Ed25519);
        assert_eq!(alg("rsa"), KeyAlgorithm::Rsa { bits: 2048 });
        assert_eq!(alg("rsa-2048"), KeyAlgorithm::Rsa { bits: 2048 });
        assert_eq!(alg("rsa-3072"), KeyAlgorithm::Rsa { bits: 3072 });
        assert_eq!(alg("rsa-4096"), KeyAlgorithm::Rsa { bits: 4096 });
        let all = problems(
            "[tls]\nkey-algorithm = \"rsa-8192\"\n[[member]]\nname = \"a\"\nips = [\"10.0.0.1\"]\n",
        )
        .join("\n");
        assert!(
            all.contains("key-algorithm \"rsa-8192\" is not one of ecdsa-p256, ed25519, rsa"),
            "{all}"
        );
    }

    #[test]
    fn no_members_and_bad_release_and_tls() {
        let all = problems(
            "[release]\nversion = \"latest\"\nsha256 = \"xyz\"\n[tls]\nvalidity-days = 10\nrenew-before-days = 30\nkey-algorithm = \"rsa-1024\"\n",
        )
        .join("\n");
        assert!(all.contains("spec: no members"), "{all}");
        assert!(all.contains("version \"latest\" is not X.Y.Z"), "{all}");
        assert!(all.contains("sha256 \"xyz\" is not 64 hex digits"), "{all}");
        assert!(all.contains("renew-before-days (30) must be less"), "{all}");
        assert!(all.contains("key-algorithm \"rsa-1024\""), "{all}");
    }

    #[test]
    fn loopback_members_need_distinct_ports_and_data_dirs() {
        let all = problems(
            r#"
            [[member]]
            name = "a"
            ips = ["127.0.0.1"]
            [[member]]
            name = "b"
            ips = ["127.0.0.1"]
            client-port = 3379
            peer-port = 3380
            "#,
        )
        .join("\n");
        assert!(
            all.contains("member b: shares a host with member a and the data-dir"),
            "{all}"
        );
        assert!(all.contains("paths.config-dir"), "{all}");
        assert!(!all.contains("also used"), "{all}");
    }

    #[test]
    fn relative_paths_and_bad_accounts_are_refused() {
        let all = problems(
            "[paths]\ndata-dir = \"data\"\nuser = \"Root User\"\n[[member]]\nname = \"a\"\nips = [\"::1\"]\n",
        )
        .join("\n");
        assert!(
            all.contains("data-dir \"data\" must be an absolute path"),
            "{all}"
        );
        assert!(all.contains("user \"Root User\" is not a valid"), "{all}");
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("controller-0"));
        assert!(is_dns_name("etcd-0.example.com"));
        assert!(!is_dns_name("-a"));
        assert!(!is_dns_name("a..b"));
        assert!(!is_dns_name("A"));
        assert!(!is_dns_name(""));
        assert!(is_version("3.5.17") && is_version("3.6.0-rc.1") && !is_version("3.5"));
    }
}
