//! The one list of etcd settings for a member, from which every config format is written.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use crate::spec::{ClusterSpec, Member, Paths};

/// A setting's value, typed so each format can write it natively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string (paths, names, tokens).
    Str(String),
    /// A boolean flag.
    Bool(bool),
    /// A comma-separated list in flags and env files; an array in TOML.
    List(Vec<String>),
}

impl Value {
    /// The value as etcd's flags and `ETCD_*` variables spell it.
    pub fn flag_text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::List(l) => l.join(","),
        }
    }
}

/// One etcd setting: the flag name without dashes (`data-dir`) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Flag name, e.g. `initial-cluster`.
    pub flag: &'static str,
    /// Its value.
    pub value: Value,
}

/// Whether the member bootstraps a new cluster or joins an existing one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Part of a new cluster: `--initial-cluster` lists every spec member.
    New,
    /// Joining a running cluster: the given `--initial-cluster` (current members + self).
    Existing(String),
}

/// Where a member's files live on its node, `{name}` resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPaths {
    /// Binaries.
    pub bin_dir: PathBuf,
    /// Config and env files.
    pub config_dir: PathBuf,
    /// Certificates.
    pub pki_dir: PathBuf,
    /// Data directory.
    pub data_dir: PathBuf,
    /// systemd units.
    pub unit_dir: PathBuf,
}

impl MemberPaths {
    /// Resolves the spec's paths for `member`.
    pub fn new(spec: &ClusterSpec, member: &Member) -> Self {
        let p = &spec.paths;
        let r = |path: &std::path::Path| Paths::for_member(path, &member.name);
        MemberPaths {
            bin_dir: r(&p.bin_dir),
            config_dir: r(&p.config_dir),
            pki_dir: r(&p.pki_dir),
            data_dir: member.data_dir.clone().unwrap_or_else(|| r(&p.data_dir)),
            unit_dir: r(&p.unit_dir),
        }
    }

    /// A file in the PKI directory, as a string.
    pub fn pki(&self, file: &str) -> String {
        self.pki_dir.join(file).display().to_string()
    }
}

/// `scheme://ip:port`, with IPv6 addresses bracketed.
pub fn url(scheme: &str, ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{scheme}://{v4}:{port}"),
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{port}"),
    }
}

/// The member's advertised peer URL.
pub fn peer_url(spec: &ClusterSpec, m: &Member) -> String {
    url(spec.scheme(), m.advertise_ip(), m.peer_port)
}

/// The member's advertised client URL.
pub fn client_url(spec: &ClusterSpec, m: &Member) -> String {
    url(spec.scheme(), m.advertise_ip(), m.client_port)
}

/// `--initial-cluster` for a new cluster: every member's name and peer URL, in spec order.
pub fn initial_cluster_new(spec: &ClusterSpec) -> String {
    spec.members
        .iter()
        .map(|m| format!("{}={}", m.name, peer_url(spec, m)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A member of a running cluster as reported by the member list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningMember {
    /// Member ID.
    pub id: u64,
    /// Name; empty for a member that was added but has not started yet.
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
}

/// `--initial-cluster` for a member joining a running cluster: every current member's peer
/// URLs plus the joining member's (etcd's `member add` output, minus unstarted members
/// other than the joining one, whose empty names etcd would refuse).
pub fn initial_cluster_join(current: &[RunningMember], new_id: u64, new_name: &str) -> String {
    let mut parts = Vec::new();
    for m in current {
        let name = if m.id == new_id {
            new_name
        } else {
            m.name.as_str()
        };
        if name.is_empty() {
            continue;
        }
        for u in &m.peer_urls {
            parts.push(format!("{name}={u}"));
        }
    }
    parts.join(",")
}

/// Addresses a member listens on: its IPs, plus 127.0.0.1 for local clients.
fn listen_ips(m: &Member) -> Vec<IpAddr> {
    let mut ips = m.ips.clone();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    if !ips.contains(&lo) {
        ips.push(lo);
    }
    ips
}

/// Every etcd setting of `member`, in a fixed order.
///
/// Guarantees: the same inputs give the same list; with TLS on, client and peer traffic
/// require certificates signed by the cluster CA (`client-cert-auth`,
/// `peer-client-cert-auth`); certificate paths point into the member's PKI directory with
/// the file names [`super::bundle`] installs.
pub fn member_settings(spec: &ClusterSpec, member: &Member, bootstrap: &Bootstrap) -> Vec<Setting> {
    let paths = MemberPaths::new(spec, member);
    let scheme = spec.scheme();
    let s = |flag, v: String| Setting {
        flag,
        value: Value::Str(v),
    };
    let list = |flag, v: Vec<String>| Setting {
        flag,
        value: Value::List(v),
    };
    let (initial_cluster, state) = match bootstrap {
        Bootstrap::New => (initial_cluster_new(spec), "new"),
        Bootstrap::Existing(ic) => (ic.clone(), "existing"),
    };
    let mut out = vec![
        s("name", member.name.clone()),
        s("data-dir", paths.data_dir.display().to_string()),
        list(
            "listen-peer-urls",
            member
                .ips
                .iter()
                .map(|ip| url(scheme, *ip, member.peer_port))
                .collect(),
        ),
        list(
            "listen-client-urls",
            listen_ips(member)
                .into_iter()
                .map(|ip| url(scheme, ip, member.client_port))
                .collect(),
        ),
        list("advertise-client-urls", vec![client_url(spec, member)]),
        list("initial-advertise-peer-urls", vec![peer_url(spec, member)]),
        s("initial-cluster", initial_cluster),
        s("initial-cluster-token", spec.token.clone()),
        s("initial-cluster-state", state.into()),
    ];
    if spec.tls.enabled {
        let b = |flag, v: bool| Setting {
            flag,
            value: Value::Bool(v),
        };
        out.extend([
            s("cert-file", paths.pki("server.crt")),
            s("key-file", paths.pki("server.key")),
            s("trusted-ca-file", paths.pki("ca.crt")),
            b("client-cert-auth", true),
            s("peer-cert-file", paths.pki("peer.crt")),
            s("peer-key-file", paths.pki("peer.key")),
            s("peer-trusted-ca-file", paths.pki("ca.crt")),
            b("peer-client-cert-auth", true),
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{parse_str, validate};

    fn spec() -> ClusterSpec {
        validate(
            &parse_str(
                "[cluster]\ntoken = \"tok\"\n[[member]]\nname = \"a\"\nips = [\"10.0.0.1\", \"192.168.0.1\"]\n[[member]]\nname = \"b\"\nips = [\"fd00::2\"]\npeer-port = 12380\n",
                "t",
            )
            .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn new_cluster_settings() {
        let s = spec();
        assert_eq!(
            initial_cluster_new(&s),
            "a=https://10.0.0.1:2380,b=https://[fd00::2]:12380"
        );
        let set = member_settings(&s, &s.members[0], &Bootstrap::New);
        let get = |f: &str| set.iter().find(|x| x.flag == f).unwrap().value.flag_text();
        assert_eq!(
            get("listen-client-urls"),
            "https://10.0.0.1:2379,https://192.168.0.1:2379,https://127.0.0.1:2379"
        );
        assert_eq!(
            get("listen-peer-urls"),
            "https://10.0.0.1:2380,https://192.168.0.1:2380"
        );
        assert_eq!(get("advertise-client-urls"), "https://10.0.0.1:2379");
        assert_eq!(get("initial-cluster-state"), "new");
        assert_eq!(get("cert-file"), "/etc/etcd/pki/server.crt");
        assert_eq!(get("client-cert-auth"), "true");
    }

    #[test]
    fn join_initial_cluster_names_the_new_member_and_skips_other_unstarted() {
        let current = vec![
            RunningMember {
                id: 1,
                name: "a".into(),
                peer_urls: vec!["https://10.0.0.1:2380".into()],
            },
            RunningMember {
                id: 7,
                name: String::new(),
                peer_urls: vec!["https://10.0.0.3:2380".into()],
            },
            RunningMember {
                id: 9,
                name: String::new(),
                peer_urls: vec!["https://10.0.0.4:2380".into()],
            },
        ];
        assert_eq!(
            initial_cluster_join(&current, 7, "c"),
            "a=https://10.0.0.1:2380,c=https://10.0.0.3:2380"
        );
    }

    #[test]
    fn plain_http_has_no_tls_settings() {
        let mut s = spec();
        s.tls.enabled = false;
        let set = member_settings(&s, &s.members[1], &Bootstrap::Existing("x=y".into()));
        assert!(set.iter().all(|x| !x.flag.contains("cert")));
        assert!(set
            .iter()
            .any(|x| x.value == Value::List(vec!["http://[fd00::2]:2379".into()])));
    }
}
