//! Reading back what an existing certificate says.

use std::collections::BTreeSet;
use std::net::IpAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::profile::Usage;

/// The facts of a certificate that decide whether it can be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Subject common name.
    pub common_name: String,
    /// Subject organization.
    pub organization: Option<String>,
    /// SANs as canonical strings (DNS lowercase, IPs as `IpAddr` prints them).
    pub sans: BTreeSet<String>,
    /// Extended key usages (only the two that matter here).
    pub usages: BTreeSet<Usage>,
    /// Expiry as a Unix timestamp.
    pub not_after: i64,
    /// The raw subject public key (compared with the key file's public key).
    pub public_key: Vec<u8>,
    /// The certificate is a CA.
    pub is_ca: bool,
}

/// Why a certificate could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InspectError(String);

/// Decodes the first `CERTIFICATE` block of a PEM text to DER.
pub fn pem_to_der(pem_text: &[u8]) -> Result<Vec<u8>, InspectError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text)
        .map_err(|e| InspectError(format!("not a PEM certificate: {e}")))?;
    if pem.label != "CERTIFICATE" {
        return Err(InspectError(format!(
            "expected a CERTIFICATE block, found {}",
            pem.label
        )));
    }
    Ok(pem.contents)
}

/// Reads the facts of a DER certificate.
pub fn facts(der: &[u8]) -> Result<Facts, InspectError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| InspectError(format!("not an X.509 certificate: {e}")))?;
    let subject = cert.subject();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let organization = subject
        .iter_organization()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(String::from);
    let mut sans = BTreeSet::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    sans.insert(d.to_ascii_lowercase());
                }
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.insert(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let mut usages = BTreeSet::new();
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        if eku.value.server_auth {
            usages.insert(Usage::ServerAuth);
        }
        if eku.value.client_auth {
            usages.insert(Usage::ClientAuth);
        }
    }
    Ok(Facts {
        common_name,
        organization,
        sans,
        usages,
        not_after: cert.validity().not_after.timestamp(),
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        is_ca: cert.is_ca(),
    })
}

/// True when the DER certificate `der` carries a valid signature by the CA `ca_der`.
pub fn signed_by(der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (
        X509Certificate::from_der(der),
        X509Certificate::from_der(ca_der),
    ) else {
        return false;
    };
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}
