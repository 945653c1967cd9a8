//! The install manifest: which bundle file goes where on the node, with which mode and owner.

use serde::{Deserialize, Serialize};

/// Who owns an installed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    /// root:root.
    Root,
    /// The service user and group (private keys etcd must read).
    Service,
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ManifestFile {
    /// Path inside the bundle directory.
    pub source: String,
    /// Absolute destination on the node.
    pub dest: String,
    /// Permission bits, octal text (`0600`).
    pub mode: String,
    /// Owner.
    pub owner: Owner,
}

impl ManifestFile {
    /// The mode as a number (0644 when the text is not octal).
    pub fn mode_bits(&self) -> u32 {
        u32::from_str_radix(self.mode.trim_start_matches("0o"), 8).unwrap_or(0o644)
    }
}

/// `manifest.toml` of a member bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Manifest {
    /// Member name.
    pub member: String,
    /// Unit name without `.service`.
    pub unit_name: String,
    /// Service user.
    pub user: String,
    /// Service group.
    pub group: String,
    /// Data directory (created 0700, owned by the service user).
    pub data_dir: String,
    /// Where binaries go.
    pub bin_dir: String,
    /// The member's client URL (for a health check after start).
    pub client_url: String,
    /// Files to install.
    #[serde(rename = "file")]
    pub files: Vec<ManifestFile>,
}

/// Name of the manifest inside a bundle.
pub const MANIFEST_NAME: &str = "manifest.toml";
