//! TLS for listeners: certificates and keys are read from disk for every new
//! connection, so replacing the files rotates them without a restart. ALPN offers `h2`
//! and `http/1.1` (gRPC clients require `h2`). With client-cert-auth, clients must
//! present a certificate signed by the trusted CA (and, with an allowed-CN list, whose
//! subject common name is on it, or with an allowed host-name list, which it is valid for;
//! with a CRL file, that the CA has not revoked — the file
//! too is read for every new connection).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};

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
#[derive(Debug, Clone, Default)]
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
    /// `--cipher-suites` in Go's names; limits the TLS 1.2 suites (TLS 1.3 suites are
    /// not configurable, as in Go). Empty = the library's defaults.
    pub cipher_suites: Vec<String>,
    /// With `client_cert_auth`: the client certificate's subject common name must be
    /// one of these (`--peer-cert-allowed-cn`, the config file's `allowed-cn`).
    /// Empty = any CN.
    pub allowed_cn: Vec<String>,
    /// With `client_cert_auth`: the client certificate must be valid for one of these
    /// host names (its SANs, as a server certificate would be checked;
    /// `--client-cert-allowed-hostname`, `--peer-cert-allowed-hostname`). With
    /// `allowed_cn` too, matching either list is enough. Empty = any.
    pub allowed_hostname: Vec<String>,
    /// With `client_cert_auth`: certificate revocation lists (PEM or DER) of the
    /// trusted CA (`--client-crl-file`, `--peer-crl-file`); a revoked client certificate
    /// is refused.
    pub crl_file: Option<PathBuf>,
    /// Once the handshake is done, refuse a client certificate that is not valid for the
    /// address the connection comes from ([`super::client_san`]; etcd's peer listener
    /// unless `--peer-skip-client-san-verification`). Only TCP connections are checked.
    pub check_client_san: bool,
}

/// Maps Go's cipher suite names to the TLS 1.2 suites rustls offers. Suites Go knows but
/// rustls does not implement (CBC, static RSA key exchange) are refused by name.
fn tls12_suite(name: &str) -> Option<rustls::CipherSuite> {
    use rustls::CipherSuite as C;
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

fn provider(cipher_suites: &[String]) -> Result<rustls::crypto::CryptoProvider, TlsError> {
    let mut p = rustls::crypto::ring::default_provider();
    if cipher_suites.is_empty() {
        return Ok(p);
    }
    let mut wanted = Vec::new();
    for name in cipher_suites {
        match tls12_suite(name) {
            Some(s) => wanted.push(s),
            None => {
                return Err(TlsError::Invalid(format!(
                    "unsupported cipher suite {name:?} in --cipher-suites"
                )))
            }
        }
    }
    p.cipher_suites.retain(|s| match s {
        rustls::SupportedCipherSuite::Tls13(_) => true,
        rustls::SupportedCipherSuite::Tls12(_) => wanted.contains(&s.suite()),
    });
    Ok(p)
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

/// The CRLs in `path`: PEM blocks, or else the whole file as one DER CRL (Go's
/// `x509.ParseCRL` takes either).
fn crls(path: &PathBuf) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let pem: Vec<_> = rustls_pemfile::crls(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid(format!("{}: {e}", path.display())))?;
    if !pem.is_empty() {
        return Ok(pem);
    }
    if bytes.first() == Some(&0x30) {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    Err(TlsError::Invalid(format!(
        "{}: no certificate revocation list found",
        path.display()
    )))
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
        let provider = Arc::new(provider(&self.cipher_suites)?);
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
                let mut verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                if let Some(crl) = &self.crl_file {
                    // Like etcd, a certificate is refused when a list names it; one whose
                    // issuer has no list here is not.
                    verifier = verifier
                        .with_crls(crls(crl)?)
                        .allow_unknown_revocation_status();
                }
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::Invalid(e.to_string()))?;
                if self.allowed_cn.is_empty() && self.allowed_hostname.is_empty() {
                    builder.with_client_cert_verifier(verifier)
                } else {
                    builder.with_client_cert_verifier(Arc::new(AllowedIdentity {
                        inner: verifier,
                        cns: self.allowed_cn.clone(),
                        hostnames: self.allowed_hostname.clone(),
                    }))
                }
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

/// A client verifier that also requires the certificate's subject CN to be allowed, or the
/// certificate to be valid for an allowed host name.
#[derive(Debug)]
struct AllowedIdentity {
    inner: Arc<dyn ClientCertVerifier>,
    cns: Vec<String>,
    hostnames: Vec<String>,
}

impl AllowedIdentity {
    /// Whether `cert` is valid for one of the allowed host names (DNS or IP SANs).
    fn hostname_allowed(&self, cert: &CertificateDer<'_>) -> bool {
        let Ok(parsed) = rustls::server::ParsedCertificate::try_from(cert) else {
            return false;
        };
        self.hostnames.iter().any(|h| {
            rustls::pki_types::ServerName::try_from(h.as_str())
                .is_ok_and(|name| rustls::client::verify_server_name(&parsed, &name).is_ok())
        })
    }
}

impl ClientCertVerifier for AllowedIdentity {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cn = subject_common_name(end_entity);
        if cn
            .as_ref()
            .is_some_and(|cn| self.cns.iter().any(|a| a == cn))
            || self.hostname_allowed(end_entity)
        {
            return Ok(verified);
        }
        tracing::warn!(
            common_name = ?cn,
            allowed_cn = ?self.cns,
            allowed_hostname = ?self.hostnames,
            "rejected client certificate: neither its CN nor its host names are allowed"
        );
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Splits one DER TLV off the front of `buf`: (tag, contents, rest).
fn der_tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |l, &b| (l << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The subject common name of a DER certificate (the last CN attribute, as Go's
/// `Subject.CommonName`), if it has one.
pub fn subject_common_name(cert: &[u8]) -> Option<String> {
    const CN_OID: &[u8] = &[0x55, 0x04, 0x03];
    let (_, cert, _) = der_tlv(cert)?;
    let (_, mut tbs, _) = der_tlv(cert)?;
    if tbs.first() == Some(&0xa0) {
        tbs = der_tlv(tbs)?.2; // [0] version
    }
    for _ in 0..4 {
        tbs = der_tlv(tbs)?.2; // serial, signature, issuer, validity
    }
    let (_, mut rdns, _) = der_tlv(tbs)?;
    let mut cn = None;
    while !rdns.is_empty() {
        let (_, mut set, rest) = der_tlv(rdns)?;
        rdns = rest;
        while !set.is_empty() {
            let (_, atv, rest) = der_tlv(set)?;
            set = rest;
            let (_, oid, value) = der_tlv(atv)?;
            if oid == CN_OID {
                let (_, value, _) = der_tlv(value)?;
                cn = Some(String::from_utf8_lossy(value).into_owned());
            }
        }
    }
    cn
}

/// Generates a self-signed certificate and key for `hosts` into `dir` (etcd's
/// `--auto-tls`), valid from now for `validity_years` of 365 days
/// (`--self-signed-cert-validity`, at least 1), returning their paths. Files already
/// there are kept, as etcd keeps them.
pub fn self_signed(
    dir: &std::path::Path,
    hosts: &[String],
    validity_years: u32,
) -> Result<(PathBuf, PathBuf), TlsError> {
    if validity_years == 0 {
        return Err(TlsError::Invalid(
            "--self-signed-cert-validity must be greater than 0".into(),
        ));
    }
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
    let invalid = |e: rcgen::Error| TlsError::Invalid(e.to_string());
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(invalid)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "etcd");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::days(365 * i64::from(validity_years));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    // Peers present the same certificate as clients of each other.
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate().map_err(invalid)?;
    let cert = params.self_signed(&key).map_err(invalid)?;
    std::fs::write(&cert_path, cert.pem()).map_err(io(&cert_path))?;
    std::fs::write(&key_path, key.serialize_pem()).map_err(io(&key_path))?;
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_subject_common_name() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["m1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "etcd");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "member-1");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject_common_name(cert.der()).as_deref(), Some("member-1"));
        let params = rcgen::CertificateParams::new(vec!["m1".to_string()]).unwrap();
        let mut params = params;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject_common_name(cert.der()), None);
        assert_eq!(subject_common_name(b"\x30\x82"), None);
    }

    #[test]
    fn cipher_suites_by_go_name() {
        let p = provider(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()]).unwrap();
        let tls12: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|s| matches!(s, rustls::SupportedCipherSuite::Tls12(_)))
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            tls12,
            vec![rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
        );
        let err = provider(&["TLS_RSA_WITH_AES_128_CBC_SHA".into()]).unwrap_err();
        assert!(
            err.to_string().contains("TLS_RSA_WITH_AES_128_CBC_SHA"),
            "{err}"
        );
    }

    #[test]
    fn rereads_files_and_enforces_client_auth_config() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), &["localhost".into()], 1).unwrap();
        let files = TlsFiles {
            cert_file: cert.clone(),
            key_file: key,
            trusted_ca_file: None,
            client_cert_auth: true,
            min_version_13: false,
            max_version_12: false,
            cipher_suites: vec![],
            allowed_cn: vec![],
            crl_file: None,
            allowed_hostname: vec![],
            check_client_san: false,
        };
        assert!(
            files.server_config().is_err(),
            "client-cert-auth needs a CA"
        );
        let ok = TlsFiles {
            client_cert_auth: false,
            ..files
        };
        let cfg = ok.server_config().unwrap();
        assert_eq!(cfg.alpn_protocols[0], b"h2".to_vec());
        std::fs::write(&cert, "garbage").unwrap();
        assert!(
            ok.server_config().is_err(),
            "files are re-read on every call"
        );
    }
}
