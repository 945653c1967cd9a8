//! Key generation and signing with rcgen.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::spec::KeyAlgorithm;

use super::profile::{Profile, Usage};

/// A key or signing failure (rcgen's message).
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct IssueError {
    /// What was being made.
    pub what: String,
    /// rcgen's error.
    #[source]
    pub source: rcgen::Error,
}

fn err(what: &str) -> impl FnOnce(rcgen::Error) -> IssueError + '_ {
    move |source| IssueError {
        what: what.to_string(),
        source,
    }
}

/// Generates a new private key of `alg`.
pub fn generate_key(alg: KeyAlgorithm) -> Result<KeyPair, IssueError> {
    let sig = match alg {
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
    };
    KeyPair::generate_for(sig).map_err(err("generate key"))
}

/// Parses a PKCS#8 PEM private key.
pub fn load_key(pem: &str) -> Result<KeyPair, IssueError> {
    KeyPair::from_pem(pem).map_err(err("parse private key"))
}

/// A serial number unique per issuance: a hash of the public key and the current time.
fn serial(key: &KeyPair, now: OffsetDateTime) -> SerialNumber {
    let mut h = Sha256::new();
    h.update(key.public_key_raw());
    h.update(now.unix_timestamp_nanos().to_be_bytes());
    let mut bytes = h.finalize()[..16].to_vec();
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

/// Parameters of the self-signed CA.
pub fn ca_params(now: OffsetDateTime, validity_days: u32, key: &KeyPair) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "etcd-ca");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(i64::from(validity_days));
    p.serial_number = Some(serial(key, now));
    p
}

/// Creates a self-signed CA certificate (PEM) for `key`.
pub fn self_signed_ca(
    key: &KeyPair,
    now: OffsetDateTime,
    validity_days: u32,
) -> Result<String, IssueError> {
    let cert = ca_params(now, validity_days, key)
        .self_signed(key)
        .map_err(err("self-sign CA"))?;
    Ok(cert.pem())
}

/// Signs a leaf certificate for `profile` and `key`, valid from an hour before `now` (clock
/// skew) for `validity_days`. Returns PEM.
pub fn sign_leaf(
    profile: &Profile,
    key: &KeyPair,
    issuer: &Issuer<'_, KeyPair>,
    now: OffsetDateTime,
    validity_days: u32,
) -> Result<String, IssueError> {
    let sans: Vec<String> = profile.sans.iter().cloned().collect();
    let mut p = CertificateParams::new(sans).map_err(err(&profile.label))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, profile.common_name.as_str());
    if let Some(o) = &profile.organization {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = profile
        .usages
        .iter()
        .map(|u| match u {
            Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
        })
        .collect();
    p.use_authority_key_identifier_extension = true;
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(i64::from(validity_days));
    p.serial_number = Some(serial(key, now));
    let cert = p.signed_by(key, issuer).map_err(err(&profile.label))?;
    Ok(cert.pem())
}

/// An issuer from an existing CA certificate (PEM) and its key.
pub fn issuer_from_pem(ca_pem: &str, key: KeyPair) -> Result<Issuer<'static, KeyPair>, IssueError> {
    Issuer::from_ca_cert_pem(ca_pem, key).map_err(err("load CA certificate"))
}
