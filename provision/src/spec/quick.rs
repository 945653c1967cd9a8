//! The spec from quick-start flags: `--member controller-0=10.240.0.10 ...`.

use super::file::{RawMember, RawSpec};
use super::{Problem, SpecError};

/// Quick-start settings as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct QuickStart {
    /// `NAME=ADDR[,ADDR...]`; each ADDR is an IP or a host name, optionally `IP:CLIENT:PEER`
    /// is not supported (use a spec file for ports).
    pub members: Vec<String>,
    /// Initial cluster token.
    pub token: Option<String>,
    /// Turn TLS off.
    pub no_tls: bool,
    /// Release version.
    pub version: Option<String>,
}

impl QuickStart {
    /// Builds the raw spec these flags describe (validate it with [`super::validate`]).
    ///
    /// Guarantees: a malformed `--member` value is an error naming the value; addresses
    /// that parse as IPs become `ips`, the rest `hostnames`.
    pub fn to_raw(&self) -> Result<RawSpec, SpecError> {
        let mut raw = RawSpec::default();
        let mut problems = Vec::new();
        for m in &self.members {
            let Some((name, addrs)) = m.split_once('=') else {
                problems.push(Problem {
                    at: format!("--member {m}"),
                    what: "expected NAME=ADDR[,ADDR...] (e.g. controller-0=10.240.0.10)".into(),
                });
                continue;
            };
            let mut member = RawMember {
                name: name.trim().to_string(),
                ..RawMember::default()
            };
            for a in addrs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                if a.parse::<std::net::IpAddr>().is_ok()
                    || a.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                    || a.contains(':')
                {
                    // Looks like an IP (valid or not): validation reports bad ones.
                    member.ips.push(a.to_string());
                } else {
                    member.hostnames.push(a.to_string());
                }
            }
            raw.members.push(member);
        }
        if !problems.is_empty() {
            return Err(SpecError::Invalid(problems));
        }
        raw.cluster.token = self.token.clone();
        raw.tls.enabled = Some(!self.no_tls);
        raw.release.version = self.version.clone();
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::validate;

    #[test]
    fn members_from_flags() {
        let q = QuickStart {
            members: vec![
                "controller-0=10.240.0.10,controller-0.lan".into(),
                "controller-1=10.240.0.11".into(),
            ],
            token: Some("t-1".into()),
            ..QuickStart::default()
        };
        let spec = validate(&q.to_raw().unwrap()).unwrap();
        assert_eq!(spec.members.len(), 2);
        assert_eq!(
            spec.members[0].hostnames,
            vec!["controller-0.lan".to_string()]
        );
        assert_eq!(spec.members[1].ips[0].to_string(), "10.240.0.11");
        assert_eq!(spec.token, "t-1");
    }

    #[test]
    fn malformed_flag_and_bad_ip_are_named() {
        let q = QuickStart {
            members: vec!["controller-0".into()],
            ..QuickStart::default()
        };
        let err = q.to_raw().unwrap_err().to_string();
        assert!(
            err.contains("--member controller-0: expected NAME=ADDR"),
            "{err}"
        );
        let q = QuickStart {
            members: vec!["a=10.0.0.256".into()],
            ..QuickStart::default()
        };
        let err = validate(&q.to_raw().unwrap()).unwrap_err().to_string();
        assert!(
            err.contains("member a: \"10.0.0.256\" is not an IP address"),
            "{err}"
        );
    }
}
