//! Connecting to a cluster with etcd-client, with the cluster CA and a client certificate.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use super::ClusterError;

/// How to reach the cluster: endpoints and (for TLS) the CA and a client certificate.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// CA certificate (PEM) that signed the members' server certificates.
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    pub key: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Duration,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, ClusterError> {
    std::fs::read(path).map_err(|e| ClusterError::Access(format!("{}: {e}", path.display())))
}

impl Access {
    /// The same access aimed at other endpoints.
    pub fn with_endpoints(&self, endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            ..self.clone()
        }
    }

    fn options(&self) -> Result<ConnectOptions, ClusterError> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(self.timeout)
            .with_timeout(self.timeout);
        if let Some(ca) = &self.cacert {
            let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca)?));
            match (&self.cert, &self.key) {
                (Some(c), Some(k)) => tls = tls.identity(Identity::from_pem(read(c)?, read(k)?)),
                (None, None) => {}
                _ => {
                    return Err(ClusterError::Access(
                        "give both --cert and --key, or neither".into(),
                    ))
                }
            }
            opts = opts.with_tls(tls);
        }
        Ok(opts)
    }

    /// Connects (lazily balanced over the endpoints).
    pub async fn connect(&self) -> Result<Client, ClusterError> {
        if self.endpoints.is_empty() {
            return Err(ClusterError::Access("no endpoints given".into()));
        }
        let opts = self.options()?;
        tokio::time::timeout(self.timeout, Client::connect(&self.endpoints, Some(opts)))
            .await
            .map_err(|_| ClusterError::Unreachable {
                endpoints: self.endpoints.join(","),
                reason: format!("no answer within {:?}", self.timeout),
            })?
            .map_err(|e| ClusterError::Unreachable {
                endpoints: self.endpoints.join(","),
                reason: crate::errtext::chain(&e),
            })
    }
}
