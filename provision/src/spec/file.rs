//! The TOML form of the spec, as written by a person.

use std::path::Path;

use serde::Deserialize;

use super::SpecError;

/// The spec file as parsed, before validation. Unknown keys are refused (a misspelled key
/// must not be silently ignored).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSpec {
    /// `[cluster]`.
    #[serde(default)]
    pub cluster: RawCluster,
    /// `[tls]`.
    #[serde(default)]
    pub tls: RawTls,
    /// `[release]`.
    #[serde(default)]
    pub release: RawRelease,
    /// `[paths]`.
    #[serde(default)]
    pub paths: RawPaths,
    /// `[[member]]` tables.
    #[serde(default, rename = "member")]
    pub members: Vec<RawMember>,
}

/// `[cluster]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCluster {
    /// Cluster name; the default token is derived from it.
    pub name: Option<String>,
    /// Initial cluster token.
    pub token: Option<String>,
}

/// `[tls]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTls {
    /// TLS on (default) or off.
    pub enabled: Option<bool>,
    /// `ecdsa-p256` (default), `ed25519`, `rsa` (2048 bits), `rsa-3072` or `rsa-4096`.
    pub key_algorithm: Option<String>,
    /// Leaf validity in days (default 365).
    pub validity_days: Option<u32>,
    /// CA validity in days (default 3650).
    pub ca_validity_days: Option<u32>,
    /// Renewal window in days (default 30).
    pub renew_before_days: Option<u32>,
    /// Extra server SANs.
    #[serde(default)]
    pub extra_sans: Vec<String>,
}

/// `[release]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRelease {
    /// Version, with or without `v`.
    pub version: Option<String>,
    /// Base download URL.
    pub url: Option<String>,
    /// Pinned tarball digest.
    pub sha256: Option<String>,
}

/// `[paths]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPaths {
    /// Default `/usr/local/bin`.
    pub bin_dir: Option<String>,
    /// Default `/etc/etcd`.
    pub config_dir: Option<String>,
    /// Default `/etc/etcd/pki`.
    pub pki_dir: Option<String>,
    /// Default `/var/lib/etcd`.
    pub data_dir: Option<String>,
    /// Default `/etc/systemd/system`.
    pub unit_dir: Option<String>,
    /// Default `etcd`.
    pub unit_name: Option<String>,
    /// Default `etcd`.
    pub user: Option<String>,
    /// Default `etcd`.
    pub group: Option<String>,
}

/// `[[member]]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawMember {
    /// Member name.
    #[serde(default)]
    pub name: String,
    /// IP addresses as written.
    #[serde(default)]
    pub ips: Vec<String>,
    /// Host names.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Client port (default 2379).
    pub client_port: Option<u32>,
    /// Peer port (default 2380).
    pub peer_port: Option<u32>,
    /// Data directory override.
    pub data_dir: Option<String>,
}

/// Parses spec TOML text (`origin` names it in errors). Does not validate.
pub fn parse_str(text: &str, origin: &str) -> Result<RawSpec, SpecError> {
    toml::from_str(text).map_err(|e| SpecError::Parse {
        origin: origin.to_string(),
        reason: e.to_string(),
    })
}

/// Reads and parses a spec file. Does not validate.
pub fn load_file(path: &Path) -> Result<RawSpec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|e| SpecError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    parse_str(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_spec() {
        let raw = parse_str(
            r#"
            [cluster]
            name = "main"
            [tls]
            validity-days = 90
            [release]
            version = "v3.5.17"
            [[member]]
            name = "controller-0"
            ips = ["10.240.0.10"]
            hostnames = ["controller-0.example.com"]
            [[member]]
            name = "controller-1"
            ips = ["10.240.0.11"]
            peer-port = 12380
            "#,
            "t",
        )
        .unwrap();
        assert_eq!(raw.members.len(), 2);
        assert_eq!(raw.members[1].peer_port, Some(12380));
        assert_eq!(raw.tls.validity_days, Some(90));
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = parse_str(
            "[[member]]\nname = \"a\"\nip = [\"1.2.3.4\"]\n",
            "spec.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("spec.toml") && err.contains("unknown field `ip`"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod example_tests {
    #[test]
    fn shipped_example_spec_is_valid() {
        let raw = super::parse_str(include_str!("../../example-spec.toml"), "example").unwrap();
        let spec = crate::spec::validate(&raw).unwrap();
        assert_eq!(spec.members.len(), 3);
    }
}
