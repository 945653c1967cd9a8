//! The check etcd makes of a peer's client certificate after the TLS handshake, unless
//! `--peer-skip-client-san-verification`: the certificate must be valid for the address
//! the connection comes from. A certificate without IP or DNS subject alternative names
//! passes. Otherwise the remote IP must be one of its IP SANs, or one of its DNS SANs must
//! name that IP: the IP's reverse lookup gives the name (or one under a `*.` wildcard), or
//! the name's forward lookup gives the IP.
//!
//! A member whose certificate names only its advertised address, while the host sends
//! from another one, is refused by every member checking; operators turn the check off or
//! add the source address to the certificate, as with etcd.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// How long the lookups of one check may take before the connection is refused.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a peer's client certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SanMismatch {
    /// The certificate could not be parsed (the handshake accepted it, so this is rare).
    #[error("cannot read the certificate's names: {0}")]
    Unparsable(String),
    /// The address is none of the IP SANs, and the certificate has no DNS SANs.
    #[error("certificate is valid for {ips:?}, not {remote}")]
    NotAnIpSan {
        /// The remote address.
        remote: IpAddr,
        /// The certificate's IP SANs.
        ips: Vec<IpAddr>,
    },
    /// Neither the IP SANs nor the DNS SANs (looked up both ways) match the address.
    #[error("{remote:?} does not match any of DNSNames {dns:?}{lookup}")]
    NotADnsSan {
        /// The remote address.
        remote: IpAddr,
        /// The certificate's DNS SANs.
        dns: Vec<String>,
        /// The last lookup error, as ` (error)`, or empty.
        lookup: String,
    },
    /// The name lookups did not finish in time (or their thread failed).
    #[error("the name lookups for {remote} failed: {why}")]
    Lookup {
        /// The remote address.
        remote: IpAddr,
        /// What happened.
        why: String,
    },
}

/// The subject alternative names of a certificate that the check compares.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sans {
    /// IP address SANs.
    pub ips: Vec<IpAddr>,
    /// DNS name SANs, as written (wildcards keep their `*.`).
    pub dns: Vec<String>,
}

impl Sans {
    /// The IP and DNS SANs of a DER certificate.
    pub fn of(cert: &CertificateDer<'_>) -> Result<Self, SanMismatch> {
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref())
            .map_err(|e| SanMismatch::Unparsable(e.to_string()))?;
        let mut sans = Sans::default();
        let ext = parsed
            .subject_alternative_name()
            .map_err(|e| SanMismatch::Unparsable(e.to_string()))?;
        for name in ext.iter().flat_map(|e| e.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(d) => sans.dns.push(d.to_string()),
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        sans.ips.push(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        sans.ips.push(IpAddr::from(a).to_canonical());
                    }
                }
                _ => {}
            }
        }
        Ok(sans)
    }
}

impl Sans {
    /// The check's outcome when no name lookup is needed (no SANs, a matching IP SAN, or
    /// IP SANs only); `None` when the DNS SANs must be looked up.
    fn decide_without_lookups(&self, remote: IpAddr) -> Option<Result<(), SanMismatch>> {
        let remote = remote.to_canonical();
        if (self.ips.is_empty() && self.dns.is_empty()) || self.ips.contains(&remote) {
            return Some(Ok(()));
        }
        if self.dns.is_empty() {
            return Some(Err(SanMismatch::NotAnIpSan {
                remote,
                ips: self.ips.clone(),
            }));
        }
        None
    }
}

/// Name lookups the check needs; the system resolver in the server, a table in tests.
pub trait Resolve {
    /// Host names of `ip` (reverse lookup); an error when it has none.
    fn reverse(&self, ip: IpAddr) -> Result<Vec<String>, String>;
    /// Addresses of `name` (forward lookup).
    fn forward(&self, name: &str) -> Result<Vec<IpAddr>, String>;
}

/// The system resolver (`/etc/hosts`, DNS), through the C library.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn reverse(&self, ip: IpAddr) -> Result<Vec<String>, String> {
        // NI_NAMEREQD: an address without a name is an error, not its numeric form.
        dns_lookup::getnameinfo(&SocketAddr::new(ip, 0), nix::libc::NI_NAMEREQD)
            .map(|(host, _)| vec![host])
            .map_err(|e| format!("lookup {ip}: {:?}", e.kind()))
    }
    fn forward(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        dns_lookup::lookup_host(name).map_err(|e| format!("lookup {name}: {e}"))
    }
}

/// Checks `sans` against `remote` with `resolver`, as etcd's peer listener does.
pub fn check_with(sans: &Sans, remote: IpAddr, resolver: &impl Resolve) -> Result<(), SanMismatch> {
    let remote = remote.to_canonical();
    if let Some(decided) = sans.decide_without_lookups(remote) {
        return decided;
    }
    let (wildcards, names): (Vec<&str>, Vec<&str>) = sans
        .dns
        .iter()
        .map(String::as_str)
        .partition(|d| d.starts_with("*."));
    let mut last_error = None;
    match resolver.reverse(remote) {
        Ok(found) => {
            for n in &found {
                let n = n.strip_suffix('.').unwrap_or(n);
                if wildcards.iter().any(|w| n.ends_with(&w[1..])) || names.contains(&n) {
                    return Ok(());
                }
            }
        }
        Err(e) => last_error = Some(e),
    }
    for name in &names {
        match resolver.forward(name) {
            Ok(addrs) => {
                if addrs.iter().any(|a| a.to_canonical() == remote) {
                    return Ok(());
                }
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(SanMismatch::NotADnsSan {
        remote,
        dns: sans.dns.clone(),
        lookup: last_error.map(|e| format!(" ({e})")).unwrap_or_default(),
    })
}

/// Checks the client certificate `cert` of a connection from `remote` with the system
/// resolver (on a blocking thread; at most [`LOOKUP_TIMEOUT`], then refused).
pub async fn check(cert: &CertificateDer<'_>, remote: IpAddr) -> Result<(), SanMismatch> {
    let sans = Sans::of(cert)?;
    if let Some(decided) = sans.decide_without_lookups(remote) {
        return decided;
    }
    let lookup = tokio::task::spawn_blocking(move || check_with(&sans, remote, &SystemResolver));
    match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(SanMismatch::Lookup {
            remote,
            why: e.to_string(),
        }),
        Err(_) => Err(SanMismatch::Lookup {
            remote,
            why: format!("not done after {LOOKUP_TIMEOUT:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A resolver from tables; an unknown address or name is a lookup error.
    struct Table {
        reverse: HashMap<IpAddr, Vec<String>>,
        forward: HashMap<String, Vec<IpAddr>>,
    }

    impl Resolve for Table {
        fn reverse(&self, ip: IpAddr) -> Result<Vec<String>, String> {
            self.reverse
                .get(&ip)
                .cloned()
                .ok_or(format!("no name for {ip}"))
        }
        fn forward(&self, name: &str) -> Result<Vec<IpAddr>, String> {
            self.forward
                .get(name)
                .cloned()
                .ok_or(format!("no such host {name}"))
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn table() -> Table {
        Table {
            reverse: HashMap::from([(ip("10.0.0.9"), vec!["node9.dc1.example.".to_string()])]),
            forward: HashMap::from([("etcd-b".to_string(), vec![ip("10.0.0.2")])]),
        }
    }

    fn sans(ips: &[&str], dns: &[&str]) -> Sans {
        Sans {
            ips: ips.iter().map(|s| ip(s)).collect(),
            dns: dns.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_certificate_without_sans_passes() {
        assert_eq!(
            check_with(&sans(&[], &[]), ip("10.0.0.1"), &table()),
            Ok(())
        );
    }

    #[test]
    fn the_remote_ip_must_be_an_ip_san_when_there_are_no_dns_sans() {
        let s = sans(&["10.0.0.1", "127.0.0.1"], &[]);
        assert_eq!(check_with(&s, ip("10.0.0.1"), &table()), Ok(()));
        // An IPv4 connection on a dual-stack socket is seen as a mapped IPv6 address.
        assert_eq!(check_with(&s, ip("::ffff:10.0.0.1"), &table()), Ok(()));
        let err = check_with(&s, ip("10.0.0.7"), &table()).unwrap_err();
        assert!(matches!(err, SanMismatch::NotAnIpSan { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "certificate is valid for [10.0.0.1, 127.0.0.1], not 10.0.0.7"
        );
    }

    #[test]
    fn a_dns_san_matches_by_forward_lookup() {
        let s = sans(&["10.0.0.1"], &["etcd-b"]);
        assert_eq!(check_with(&s, ip("10.0.0.2"), &table()), Ok(()));
        let err = check_with(&s, ip("10.0.0.3"), &table()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "10.0.0.3 does not match any of DNSNames [\"etcd-b\"] (no name for 10.0.0.3)"
        );
    }

    #[test]
    fn a_dns_or_wildcard_san_matches_by_reverse_lookup() {
        let t = table();
        for dns in ["node9.dc1.example", "*.dc1.example"] {
            assert_eq!(
                check_with(&sans(&[], &[dns]), ip("10.0.0.9"), &t),
                Ok(()),
                "{dns}"
            );
        }
        // A wildcard is never looked up forward, and covers only names under it.
        for dns in ["*.dc2.example", "dc1.example"] {
            let r = check_with(&sans(&[], &[dns]), ip("10.0.0.9"), &t);
            assert!(r.is_err(), "{dns}");
        }
    }

    #[test]
    fn reads_the_sans_of_a_certificate() {
        let mut p = rcgen::CertificateParams::new(vec![
            "etcd-0.example".to_string(),
            "10.1.2.3".to_string(),
            "::1".to_string(),
        ])
        .unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        let s = Sans::of(cert.der()).unwrap();
        assert_eq!(s.dns, ["etcd-0.example"]);
        assert_eq!(s.ips, [ip("10.1.2.3"), ip("::1")]);
    }

    #[tokio::test]
    async fn localhost_resolves_with_the_system_resolver() {
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        let cert = p.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
        assert_eq!(check(cert.der(), ip("127.0.0.1")).await, Ok(()));
        assert!(check(cert.der(), ip("192.0.2.1")).await.is_err());
    }
}
