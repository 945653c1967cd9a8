//! Certificates: a CA, per-member server and peer certificates, and client certificates.
//!
//! [`ensure`] is idempotent: a certificate that is present, readable, matches its key, is
//! signed by the current CA and says what the spec wants (subject, SANs, usages) is kept
//! byte for byte. It is reissued only when something differs, when it has expired, when it
//! is inside the renewal window ([`Mode::Renew`]) or with [`Mode::Force`]. Reissuing keeps
//! the existing private key (except with `Force` or when the key is unusable), so a running
//! member that reloads its files never sees a certificate that does not match its key.
//! Everything is computed in memory first; files are written only once every certificate
//! has been made, each atomically (temp + rename).

mod inspect;
mod issue;
pub mod layout;
pub mod profile;

pub use inspect::{facts, pem_to_der, signed_by, Facts};
pub use layout::{Layout, Pair};
pub use profile::{all_profiles, member_sans, Profile, Usage, ADMIN_CN};

use std::path::{Path, PathBuf};

use rcgen::KeyPair;
use time::OffsetDateTime;

use crate::fsx::{self, FsError};
use crate::spec::ClusterSpec;

/// How eagerly to reissue certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Create what is missing; reissue only what is wrong or expired.
    Generate,
    /// As `Generate`, and also reissue certificates inside the renewal window.
    Renew,
    /// Reissue every leaf certificate with a new key (the CA is kept).
    Force,
}

/// What happened (or will happen) to one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Left as it was.
    Keep,
    /// Did not exist; created with a new key.
    Create,
    /// Reissued; `new_key` tells whether the key was replaced too.
    Reissue {
        /// Why.
        reason: String,
        /// A new private key was generated.
        new_key: bool,
    },
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Which certificate (`CA`, `member c0 server`, `client admin`).
    pub label: String,
    /// Its files.
    pub files: Pair,
    /// What was done.
    pub action: Action,
}

/// What [`ensure`] did, in a stable order (CA first).
#[derive(Debug, Clone)]
pub struct Report {
    /// One entry per certificate.
    pub entries: Vec<Entry>,
}

impl Report {
    /// True when no file was touched.
    pub fn unchanged(&self) -> bool {
        self.entries.iter().all(|e| e.action == Action::Keep)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for e in &self.entries {
            match &e.action {
                Action::Keep => writeln!(f, "kept     {} ({})", e.label, e.files.cert.display())?,
                Action::Create => writeln!(f, "created  {} ({})", e.label, e.files.cert.display())?,
                Action::Reissue { reason, new_key } => writeln!(
                    f,
                    "reissued {} ({}): {reason}{}",
                    e.label,
                    e.files.cert.display(),
                    if *new_key { ", new key" } else { ", same key" }
                )?,
            }
        }
        Ok(())
    }
}

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The existing CA cannot be used; nothing was written.
    #[error("CA {path}: {reason}")]
    BadCa {
        /// The CA certificate or key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Key generation or signing failed.
    #[error(transparent)]
    Issue(#[from] issue::IssueError),
}

fn bad_ca(path: &Path, reason: impl Into<String>) -> PkiError {
    PkiError::BadCa {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The loaded or newly made CA.
struct Ca {
    cert_pem: String,
    cert_der: Vec<u8>,
    key: KeyPair,
    action: Action,
}

fn read_string(path: &Path) -> Result<Option<String>, PkiError> {
    Ok(fsx::read_optional(path)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

fn load_or_create_ca(
    spec: &ClusterSpec,
    layout: &Layout,
    now: OffsetDateTime,
) -> Result<Ca, PkiError> {
    let files = layout.ca();
    let cert = read_string(&files.cert)?;
    let key = read_string(&files.key)?;
    match (cert, key) {
        (None, None) => {
            let key = issue::generate_key(spec.tls.key_algorithm)?;
            let cert_pem = issue::self_signed_ca(&key, now, spec.tls.ca_validity_days)?;
            let cert_der =
                pem_to_der(cert_pem.as_bytes()).map_err(|e| bad_ca(&files.cert, e.to_string()))?;
            Ok(Ca {
                cert_pem,
                cert_der,
                key,
                action: Action::Create,
            })
        }
        (Some(_), None) => Err(bad_ca(
            &files.key,
            "the CA certificate exists but its key does not; restore the key or remove both",
        )),
        (None, Some(_)) => Err(bad_ca(
            &files.cert,
            "the CA key exists but its certificate does not; restore it or remove both",
        )),
        (Some(cert_pem), Some(key_pem)) => {
            let key = issue::load_key(&key_pem).map_err(|e| bad_ca(&files.key, e.to_string()))?;
            let cert_der =
                pem_to_der(cert_pem.as_bytes()).map_err(|e| bad_ca(&files.cert, e.to_string()))?;
            let f = facts(&cert_der).map_err(|e| bad_ca(&files.cert, e.to_string()))?;
            if !f.is_ca {
                return Err(bad_ca(
                    &files.cert,
                    "is not a CA certificate (basicConstraints CA:FALSE)",
                ));
            }
            if f.public_key != key.public_key_raw() {
                return Err(bad_ca(&files.key, "does not belong to the CA certificate"));
            }
            if f.not_after <= now.unix_timestamp() {
                return Err(bad_ca(
                    &files.cert,
                    "has expired; CA rotation is not automatic",
                ));
            }
            Ok(Ca {
                cert_pem,
                cert_der,
                key,
                action: Action::Keep,
            })
        }
    }
}

/// Copies an existing CA (certificate + key, PEM) into the PKI directory `dir`, so that
/// [`ensure`] signs with it instead of creating one.
///
/// Guarantees: the pair is checked first (a CA certificate, the key belongs to it, not
/// expired); an identical CA already in `dir` is a no-op (returns false); a different CA
/// already in `dir` is refused, never overwritten.
pub fn import_ca(
    dir: &Path,
    cert: &Path,
    key: &Path,
    now: OffsetDateTime,
) -> Result<bool, PkiError> {
    let read = |p: &Path| -> Result<String, PkiError> {
        read_string(p)?.ok_or_else(|| bad_ca(p, "does not exist"))
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let k = issue::load_key(&key_pem).map_err(|e| bad_ca(key, e.to_string()))?;
    let der = pem_to_der(cert_pem.as_bytes()).map_err(|e| bad_ca(cert, e.to_string()))?;
    let f = facts(&der).map_err(|e| bad_ca(cert, e.to_string()))?;
    if !f.is_ca {
        return Err(bad_ca(
            cert,
            "is not a CA certificate (basicConstraints CA:FALSE)",
        ));
    }
    if f.public_key != k.public_key_raw() {
        return Err(bad_ca(key, "does not belong to the CA certificate"));
    }
    if f.not_after <= now.unix_timestamp() {
        return Err(bad_ca(cert, "has expired"));
    }
    let layout = Layout::new(dir);
    let files = layout.ca();
    let existing = (read_string(&files.cert)?, read_string(&files.key)?);
    match existing {
        (None, None) => {
            fsx::check_writable(dir, 0o700)?;
            fsx::write_file(&files.key, key_pem.as_bytes(), 0o600)?;
            fsx::write_file(&files.cert, cert_pem.as_bytes(), 0o644)?;
            Ok(true)
        }
        (Some(c), Some(k)) if c == cert_pem && k == key_pem => Ok(false),
        _ => Err(bad_ca(
            &files.cert,
            "a different CA is already in the PKI directory; refusing to replace it",
        )),
    }
}

/// Decides what to do with one existing certificate. Pure: exposed for tests.
pub fn decide(
    profile: &Profile,
    existing: Option<(&[u8], &Facts)>,
    key_matches: bool,
    ca_der: &[u8],
    now: i64,
    renew_before_days: u32,
    mode: Mode,
) -> Action {
    let Some((der, f)) = existing else {
        return Action::Create;
    };
    let reissue = |reason: String, new_key: bool| Action::Reissue { reason, new_key };
    if mode == Mode::Force {
        return reissue("forced".into(), true);
    }
    if !key_matches {
        return reissue("the key does not match the certificate".into(), true);
    }
    if !signed_by(der, ca_der) {
        return reissue("not signed by the current CA".into(), false);
    }
    if f.sans != profile.sans {
        let added: Vec<&String> = profile.sans.difference(&f.sans).collect();
        let removed: Vec<&String> = f.sans.difference(&profile.sans).collect();
        return reissue(
            format!("SANs changed (added {added:?}, removed {removed:?})"),
            false,
        );
    }
    if f.common_name != profile.common_name || f.organization != profile.organization {
        return reissue("subject changed".into(), false);
    }
    if f.usages != profile.usages {
        return reissue("extended key usages changed".into(), false);
    }
    if f.not_after <= now {
        return reissue("expired".into(), false);
    }
    let left_days = (f.not_after - now) / 86_400;
    if mode == Mode::Renew && left_days < i64::from(renew_before_days) {
        return reissue(format!("expires in {left_days} day(s)"), false);
    }
    Action::Keep
}

/// A planned write: key (if new) and certificate.
struct Write {
    files: Pair,
    key_pem: Option<String>,
    cert_pem: String,
}

/// Makes every certificate the spec needs under `dir`, idempotently (see the module doc).
///
/// Guarantees: on error nothing has been written (all certificates are made in memory
/// first; the directory is probed for writability before that); keys are written 0600 and
/// certificates 0644, each by temp + rename; kept files are not touched (mtime preserved).
pub fn ensure(
    spec: &ClusterSpec,
    dir: &Path,
    mode: Mode,
    now: OffsetDateTime,
) -> Result<Report, PkiError> {
    let layout = Layout::new(dir);
    fsx::check_writable(dir, 0o700)?;
    let ca = load_or_create_ca(spec, &layout, now)?;
    let mut entries = vec![Entry {
        label: "CA".into(),
        files: layout.ca(),
        action: ca.action.clone(),
    }];
    let mut writes = Vec::new();
    if ca.action == Action::Create {
        writes.push(Write {
            files: layout.ca(),
            key_pem: Some(ca.key.serialize_pem()),
            cert_pem: ca.cert_pem.clone(),
        });
    }
    let ca_key = issue::load_key(&ca.key.serialize_pem())?;
    let issuer = issue::issuer_from_pem(&ca.cert_pem, ca_key)?;
    for profile in all_profiles(spec, &layout) {
        let cert = fsx::read_optional(&profile.files.cert)?;
        let key_pem = read_string(&profile.files.key)?;
        let key = key_pem.as_deref().and_then(|k| issue::load_key(k).ok());
        let der = cert.as_deref().and_then(|c| pem_to_der(c).ok());
        let parsed = der.as_deref().and_then(|d| facts(d).ok());
        let existing = match (&der, &parsed, &key) {
            (Some(d), Some(f), Some(_)) => Some((d.as_slice(), f)),
            _ => None,
        };
        let key_matches = match (&parsed, &key) {
            (Some(f), Some(k)) => f.public_key == k.public_key_raw(),
            _ => false,
        };
        let mut action = decide(
            &profile,
            existing,
            key_matches,
            &ca.cert_der,
            now.unix_timestamp(),
            spec.tls.renew_before_days,
            mode,
        );
        if action == Action::Create && (cert.is_some() || key_pem.is_some()) {
            action = Action::Reissue {
                reason: "existing certificate or key is missing or unreadable".into(),
                new_key: true,
            };
        }
        let new_key = match &action {
            Action::Keep => None,
            Action::Create => Some(true),
            Action::Reissue { new_key, .. } => Some(*new_key),
        };
        if let Some(new_key) = new_key {
            let (signing_key, key_out) = match (new_key, key) {
                (false, Some(k)) => (k, None),
                _ => {
                    let k = issue::generate_key(spec.tls.key_algorithm)?;
                    let pem = k.serialize_pem();
                    (k, Some(pem))
                }
            };
            let cert_pem =
                issue::sign_leaf(&profile, &signing_key, &issuer, now, spec.tls.validity_days)?;
            writes.push(Write {
                files: profile.files.clone(),
                key_pem: key_out,
                cert_pem,
            });
        }
        entries.push(Entry {
            label: profile.label.clone(),
            files: profile.files.clone(),
            action,
        });
    }
    for w in &writes {
        if let Some(parent) = w.files.cert.parent() {
            if !parent.is_dir() {
                fsx::ensure_dir(parent, 0o700)?;
            }
        }
        if let Some(k) = &w.key_pem {
            fsx::write_file(&w.files.key, k.as_bytes(), 0o600)?;
        }
        fsx::write_file(&w.files.cert, w.cert_pem.as_bytes(), 0o644)?;
    }
    for e in &entries {
        if e.action != Action::Keep {
            tracing::debug!(certificate = %e.label, path = %e.files.cert.display(), action = ?e.action, "certificate written");
        }
    }
    Ok(Report { entries })
}

#[cfg(test)]
mod tests;
