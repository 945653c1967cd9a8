//! Test certificates (rcgen): a CA that signs server, peer and client
//! certificates with the SANs a test chooses.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};

static SERIAL: AtomicU64 = AtomicU64::new(0x1000);

/// What a leaf certificate may be used for (its extended key usages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// `serverAuth` only.
    Server,
    /// `clientAuth` only.
    Client,
    /// `serverAuth` and `clientAuth` (what etcd peer certificates need: a
    /// member both accepts and dials peer connections with it).
    Both,
}

/// A certificate and its private key written to files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PEM, PKCS#8).
    pub key: PathBuf,
    /// The certificate's serial number (what a CRL names).
    pub serial: u64,
}

impl CertFiles {
    /// The certificate path as a `String` (for flags).
    pub fn cert_str(&self) -> String {
        self.cert.display().to_string()
    }

    /// The key path as a `String` (for flags).
    pub fn key_str(&self) -> String {
        self.key.display().to_string()
    }
}

/// A self-signed certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    /// Generates a new CA named `cn`.
    pub fn new(cn: &str) -> Result<Self> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key)?;
        Ok(Self {
            issuer: Issuer::new(p, key),
            pem: cert.pem(),
        })
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) -> Result<PathBuf> {
        std::fs::write(path, &self.pem).with_context(|| format!("write {}", path.display()))?;
        Ok(path.to_path_buf())
    }

    /// Signs a leaf for `cn` with subject alternative names `sans` (IP
    /// addresses become IP SANs, anything else DNS SANs). Returns
    /// (certificate PEM, key PEM).
    pub fn leaf(&self, cn: &str, sans: &[String], usage: Usage) -> Result<(String, String)> {
        let (cert, key, _) = self.leaf_with_serial(cn, sans, usage)?;
        Ok((cert, key))
    }

    /// [`Ca::leaf`], with the certificate's serial number.
    fn leaf_with_serial(
        &self,
        cn: &str,
        sans: &[String],
        usage: Usage,
    ) -> Result<(String, String, u64)> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(sans.to_vec())?;
        p.distinguished_name.push(DnType::CommonName, cn);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        p.serial_number = Some(SerialNumber::from(serial));
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = match usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Both => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem(), serial))
    }

    /// A certificate revocation list (PEM) of this CA revoking the certificates with
    /// these serial numbers, valid from an hour ago for a day.
    pub fn crl(&self, revoked: &[u64]) -> Result<String> {
        let now = time::OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from(SERIAL.fetch_add(1, Ordering::Relaxed)),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&s| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from(s),
                    revocation_time: now - time::Duration::minutes(30),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    /// [`Ca::leaf`] written to `<dir>/<stem>.pem` and `<dir>/<stem>-key.pem`.
    pub fn leaf_files(
        &self,
        dir: &Path,
        stem: &str,
        cn: &str,
        sans: &[String],
        usage: Usage,
    ) -> Result<CertFiles> {
        let (cert, key, serial) = self.leaf_with_serial(cn, sans, usage)?;
        let files = CertFiles {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}-key.pem")),
            serial,
        };
        std::fs::write(&files.cert, cert)
            .with_context(|| format!("write {}", files.cert.display()))?;
        std::fs::write(&files.key, key)
            .with_context(|| format!("write {}", files.key.display()))?;
        Ok(files)
    }
}
