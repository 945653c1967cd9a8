//! What each certificate must say: subject, SANs, extended key usages.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::spec::{ClusterSpec, Member};

use super::layout::{Layout, Pair};

/// Extended key usage of a leaf certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Usage {
    /// TLS server authentication.
    ServerAuth,
    /// TLS client authentication.
    ClientAuth,
}

/// The desired content of one leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Short description for reports (`member controller-0 server`).
    pub label: String,
    /// Subject common name.
    pub common_name: String,
    /// Subject organization, if any.
    pub organization: Option<String>,
    /// SANs, canonical strings: DNS names lowercase, IPs as `IpAddr` prints them.
    pub sans: BTreeSet<String>,
    /// Extended key usages.
    pub usages: BTreeSet<Usage>,
    /// Where it is written.
    pub files: Pair,
}

/// Common name of the admin client certificate. It is `root` so that, once etcd auth is
/// enabled, the certificate authenticates as etcd's root user.
pub const ADMIN_CN: &str = "root";

/// The SANs of a member's server and peer certificates: its name, host names and IPs,
/// `localhost`, `127.0.0.1` and `::1` (plus `extra` for the server certificate).
pub fn member_sans(member: &Member, extra: &[String]) -> BTreeSet<String> {
    let mut sans: BTreeSet<String> = BTreeSet::new();
    sans.insert(member.name.clone());
    sans.insert("localhost".into());
    sans.extend(member.hostnames.iter().map(|h| h.to_ascii_lowercase()));
    sans.extend(member.ips.iter().map(IpAddr::to_string));
    sans.insert(IpAddr::V4(Ipv4Addr::LOCALHOST).to_string());
    sans.insert(IpAddr::V6(Ipv6Addr::LOCALHOST).to_string());
    for e in extra {
        sans.insert(match e.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => e.to_ascii_lowercase(),
        });
    }
    sans
}

/// Every leaf certificate the spec calls for, in a stable order: per member a server and a
/// peer certificate (serverAuth + clientAuth, since members also dial each other), then the
/// admin, kube-apiserver and health-check client certificates (clientAuth only).
pub fn all_profiles(spec: &ClusterSpec, layout: &Layout) -> Vec<Profile> {
    let both: BTreeSet<Usage> = [Usage::ServerAuth, Usage::ClientAuth].into();
    let mut out = Vec::new();
    for m in &spec.members {
        out.push(Profile {
            label: format!("member {} server", m.name),
            common_name: m.name.clone(),
            organization: None,
            sans: member_sans(m, &spec.tls.extra_sans),
            usages: both.clone(),
            files: layout.server(&m.name),
        });
        out.push(Profile {
            label: format!("member {} peer", m.name),
            common_name: m.name.clone(),
            organization: None,
            sans: member_sans(m, &[]),
            usages: both.clone(),
            files: layout.peer(&m.name),
        });
    }
    let clients = [
        ("admin", ADMIN_CN, None),
        (
            "kube-apiserver-etcd-client",
            "kube-apiserver-etcd-client",
            Some("system:masters"),
        ),
        (
            "healthcheck-client",
            "kube-etcd-healthcheck-client",
            Some("system:masters"),
        ),
    ];
    for (stem, cn, org) in clients {
        out.push(Profile {
            label: format!("client {stem}"),
            common_name: cn.into(),
            organization: org.map(String::from),
            sans: BTreeSet::new(),
            usages: [Usage::ClientAuth].into(),
            files: layout.client(stem),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{parse_str, validate};

    #[test]
    fn member_profiles_carry_expected_sans_and_usages() {
        let spec = validate(
            &parse_str(
                "[tls]\nextra-sans = [\"etcd.example.com\", \"10.0.0.100\"]\n[[member]]\nname = \"c0\"\nips = [\"10.0.0.1\"]\nhostnames = [\"c0.lan\"]\n",
                "t",
            )
            .unwrap(),
        )
        .unwrap();
        let layout = Layout::new(std::path::Path::new("/pki"));
        let p = all_profiles(&spec, &layout);
        assert_eq!(p.len(), 5);
        let server = &p[0];
        let want: BTreeSet<String> = [
            "c0",
            "c0.lan",
            "localhost",
            "10.0.0.1",
            "127.0.0.1",
            "::1",
            "etcd.example.com",
            "10.0.0.100",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(server.sans, want);
        assert!(
            !p[1].sans.contains("etcd.example.com"),
            "extra SANs only on server"
        );
        assert_eq!(
            p[1].files.key,
            std::path::PathBuf::from("/pki/members/c0/peer.key")
        );
        assert_eq!(p[2].usages, [Usage::ClientAuth].into());
        assert_eq!(p[2].common_name, "root");
    }
}
