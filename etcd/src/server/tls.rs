//! TLS for listeners: certificates and keys are read from disk for every new
//! connection, so replacing the files rotates them without a restart. ALPN offers `h2`
//! and `http/1.1` (gRPC clients require `h2`). With client-cert-auth, clients must
//! present a certificate signed by the trusted CA.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};

/// Errors loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file held no usable certificate or key.
    #[error("{0}")]
    Invalid(String),
    /// rustls refused the configuration.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where a listener's TLS material lives and how clients are checked.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Server certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Server private key (PEM).
    pub key_file: PathBuf,
    /// CA bundle for client certificates (PEM), if any.
    pub trusted_ca_file: Option<PathBuf>,
    /// Require and verify client certificates.
    pub client_cert_auth: bool,
    /// Lowest TLS version (`TLS1.2` or `TLS1.3`).
    pub min_version_13: bool,
    /// Highest TLS version is 1.2 (`--tls-max-version TLS1.2`).
    pub max_version_12: bool,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.clone(),
        source,
    })
}

fn certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid(format!(
            "{}: no certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

fn key(path: &PathBuf) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TlsError::Invalid(format!("{}: {e}", path.display())))?
        .ok_or_else(|| TlsError::Invalid(format!("{}: no private key found", path.display())))
}

impl TlsFiles {
    /// Builds a rustls server configuration from the files as they are now.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: Vec<&'static SupportedProtocolVersion> = if self.min_version_13 {
            vec![&rustls::version::TLS13]
        } else if self.max_version_12 {
            vec![&rustls::version::TLS12]
        } else {
            vec![&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)?;
        let builder = match (&self.trusted_ca_file, self.client_cert_auth) {
            (Some(ca), true) => {
                let mut roots = RootCertStore::empty();
                for c in certs(ca)? {
                    roots
                        .add(c)
                        .map_err(|e| TlsError::Invalid(format!("{}: {e}", ca.display())))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::Invalid(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            (None, true) => {
                return Err(TlsError::Invalid(
                    "--client-cert-auth needs --trusted-ca-file".into(),
                ))
            }
            _ => builder.with_no_client_auth(),
        };
        let mut cfg = builder.with_single_cert(certs(&self.cert_file)?, key(&self.key_file)?)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// Generates a self-signed certificate and key for `hosts` into `dir` (etcd's
/// `--auto-tls`), returning their paths.
pub fn self_signed(
    dir: &std::path::Path,
    hosts: &[String],
) -> Result<(PathBuf, PathBuf), TlsError> {
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let ck = rcgen::generate_simple_self_signed(hosts.to_vec())
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    std::fs::write(&cert_path, ck.cert.pem()).map_err(io(&cert_path))?;
    std::fs::write(&key_path, ck.signing_key.serialize_pem()).map_err(io(&key_path))?;
    Ok((cert_path, key_path))
}
