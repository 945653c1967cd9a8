//! Where each certificate and key lives inside a PKI directory.

use std::path::{Path, PathBuf};

/// A certificate file and its private key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The PEM certificate (mode 0644).
    pub cert: PathBuf,
    /// The PKCS#8 PEM private key (mode 0600).
    pub key: PathBuf,
}

/// The file layout of a PKI directory:
///
/// ```text
/// ca.crt ca.key
/// members/<name>/server.{crt,key}   members/<name>/peer.{crt,key}
/// clients/<client>.{crt,key}        (admin, kube-apiserver-etcd-client, healthcheck-client)
/// ```
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout rooted at `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// The PKI directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn pair(dir: PathBuf, stem: &str) -> Pair {
        Pair {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        }
    }

    /// The CA certificate and key.
    pub fn ca(&self) -> Pair {
        Self::pair(self.root.clone(), "ca")
    }

    /// A member's directory.
    pub fn member_dir(&self, member: &str) -> PathBuf {
        self.root.join("members").join(member)
    }

    /// A member's server (client-facing) certificate.
    pub fn server(&self, member: &str) -> Pair {
        Self::pair(self.member_dir(member), "server")
    }

    /// A member's peer certificate.
    pub fn peer(&self, member: &str) -> Pair {
        Self::pair(self.member_dir(member), "peer")
    }

    /// The clients directory.
    pub fn clients_dir(&self) -> PathBuf {
        self.root.join("clients")
    }

    /// A client certificate (`admin`, `kube-apiserver-etcd-client`, `healthcheck-client`).
    pub fn client(&self, stem: &str) -> Pair {
        Self::pair(self.clients_dir(), stem)
    }
}
