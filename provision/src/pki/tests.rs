use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use crate::spec::{parse_str, validate};

fn spec(extra: &str) -> ClusterSpec {
    validate(
        &parse_str(
            &format!(
                "{extra}\n[[member]]\nname = \"c0\"\nips = [\"10.0.0.1\"]\n[[member]]\nname = \"c1\"\nips = [\"10.0.0.2\"]\n"
            ),
            "t",
        )
        .unwrap(),
    )
    .unwrap()
}

/// path -> (content, mtime ns, inode) of every file under `dir`.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, i64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let m = std::fs::metadata(&p).unwrap();
                out.insert(
                    p.clone(),
                    (
                        std::fs::read(&p).unwrap(),
                        m.mtime_nsec() + m.mtime() * 1_000_000_000,
                        m.ino(),
                    ),
                );
            }
        }
    }
    out
}

#[test]
fn generate_creates_everything_then_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec("");
    let now = OffsetDateTime::now_utc();
    let r = ensure(&s, dir.path(), Mode::Generate, now).unwrap();
    assert_eq!(r.entries.len(), 1 + 2 * 2 + 3);
    assert!(r.entries.iter().all(|e| e.action == Action::Create), "{r}");
    let layout = Layout::new(dir.path());
    let key_mode = std::fs::metadata(layout.server("c0").key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(layout.ca().key)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(layout.peer("c1").cert)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    let before = snapshot(dir.path());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let r2 = ensure(&s, dir.path(), Mode::Generate, OffsetDateTime::now_utc()).unwrap();
    assert!(r2.unchanged(), "{r2}");
    let r3 = ensure(&s, dir.path(), Mode::Renew, OffsetDateTime::now_utc()).unwrap();
    assert!(r3.unchanged(), "{r3}");
    assert_eq!(before, snapshot(dir.path()));

    // What was issued says what it should.
    let der = pem_to_der(&std::fs::read(layout.server("c0").cert).unwrap()).unwrap();
    let f = facts(&der).unwrap();
    assert!(f.sans.contains("10.0.0.1") && f.sans.contains("::1") && f.sans.contains("c0"));
    assert_eq!(f.usages, [Usage::ServerAuth, Usage::ClientAuth].into());
    let ca_der = pem_to_der(&std::fs::read(layout.ca().cert).unwrap()).unwrap();
    assert!(signed_by(&der, &ca_der));
    let days = (f.not_after - now.unix_timestamp()) / 86_400;
    assert_eq!(days, 365);
}

#[test]
fn san_change_reissues_only_that_member_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    ensure(
        &spec(""),
        dir.path(),
        Mode::Generate,
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let layout = Layout::new(dir.path());
    let key_before = std::fs::read(layout.server("c0").key).unwrap();
    let peer_before = std::fs::read(layout.peer("c0").cert).unwrap();
    let r = ensure(
        &spec("[tls]\nextra-sans = [\"vip.example.com\"]"),
        dir.path(),
        Mode::Generate,
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let changed: Vec<&str> = r
        .entries
        .iter()
        .filter(|e| e.action != Action::Keep)
        .map(|e| e.label.as_str())
        .collect();
    assert_eq!(changed, vec!["member c0 server", "member c1 server"], "{r}");
    assert!(
        r.to_string()
            .contains("SANs changed (added [\"vip.example.com\"]"),
        "{r}"
    );
    assert_eq!(
        std::fs::read(layout.server("c0").key).unwrap(),
        key_before,
        "key kept"
    );
    assert_eq!(std::fs::read(layout.peer("c0").cert).unwrap(), peer_before);
}

#[test]
fn renew_reissues_only_inside_the_window_and_force_replaces_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec("[tls]\nvalidity-days = 10\nrenew-before-days = 5");
    let issued = OffsetDateTime::now_utc() - time::Duration::days(7);
    ensure(&s, dir.path(), Mode::Generate, issued).unwrap();
    let now = OffsetDateTime::now_utc();
    assert!(ensure(&s, dir.path(), Mode::Generate, now)
        .unwrap()
        .unchanged());
    let layout = Layout::new(dir.path());
    let key = std::fs::read(layout.client("admin").key).unwrap();
    let r = ensure(&s, dir.path(), Mode::Renew, now).unwrap();
    assert!(
        r.entries[1..]
            .iter()
            .all(|e| matches!(e.action, Action::Reissue { new_key: false, .. })),
        "{r}"
    );
    assert_eq!(r.entries[0].action, Action::Keep, "CA kept");
    assert!(r.to_string().contains("expires in "), "{r}");
    assert_eq!(std::fs::read(layout.client("admin").key).unwrap(), key);
    assert!(ensure(&s, dir.path(), Mode::Renew, now)
        .unwrap()
        .unchanged());
    let r = ensure(&s, dir.path(), Mode::Force, now).unwrap();
    assert!(r.entries[1..]
        .iter()
        .all(|e| matches!(e.action, Action::Reissue { new_key: true, .. })));
    assert_ne!(std::fs::read(layout.client("admin").key).unwrap(), key);
}

#[test]
fn expired_certificate_is_reissued_by_generate() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec("[tls]\nvalidity-days = 2\nrenew-before-days = 1");
    ensure(
        &s,
        dir.path(),
        Mode::Generate,
        OffsetDateTime::now_utc() - time::Duration::days(3),
    )
    .unwrap();
    let r = ensure(&s, dir.path(), Mode::Generate, OffsetDateTime::now_utc()).unwrap();
    assert!(r.to_string().contains("expired"), "{r}");
}

#[test]
fn foreign_ca_or_broken_files_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec("");
    ensure(&s, dir.path(), Mode::Generate, OffsetDateTime::now_utc()).unwrap();
    let layout = Layout::new(dir.path());
    // A garbage key: reissued with a new key.
    std::fs::write(layout.peer("c1").key, "garbage").unwrap();
    let r = ensure(&s, dir.path(), Mode::Generate, OffsetDateTime::now_utc()).unwrap();
    let e = r
        .entries
        .iter()
        .find(|e| e.label == "member c1 peer")
        .unwrap();
    assert!(
        matches!(e.action, Action::Reissue { new_key: true, .. }),
        "{r}"
    );
    // A new CA: every leaf is reissued (same keys).
    std::fs::remove_file(layout.ca().cert).unwrap();
    std::fs::remove_file(layout.ca().key).unwrap();
    let r = ensure(&s, dir.path(), Mode::Generate, OffsetDateTime::now_utc()).unwrap();
    assert_eq!(r.entries[0].action, Action::Create);
    assert!(r.entries[1..].iter().all(|e| matches!(&e.action, Action::Reissue { reason, new_key: false } if reason.contains("CA"))), "{r}");
}

#[test]
fn half_a_ca_is_refused_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), "x").unwrap();
    let err = ensure(
        &spec(""),
        dir.path(),
        Mode::Generate,
        OffsetDateTime::now_utc(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("ca.key") && err.to_string().contains("its key does not"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn ed25519_keys_work() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec("[tls]\nkey-algorithm = \"ed25519\"");
    ensure(&s, dir.path(), Mode::Generate, OffsetDateTime::now_utc()).unwrap();
    assert!(
        ensure(&s, dir.path(), Mode::Generate, OffsetDateTime::now_utc())
            .unwrap()
            .unchanged()
    );
}

fn openssl(args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rsa_ca_and_leaves_verify_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec("[tls]\nkey-algorithm = \"rsa\"");
    assert_eq!(
        s.tls.key_algorithm,
        crate::spec::KeyAlgorithm::Rsa { bits: 2048 }
    );
    let r = ensure(&s, dir.path(), Mode::Generate, OffsetDateTime::now_utc()).unwrap();
    assert!(r.entries.iter().all(|e| e.action == Action::Create), "{r}");
    let layout = Layout::new(dir.path());
    let ca = layout.ca();
    let ca_crt = ca.cert.to_str().unwrap();
    let x = openssl(&["x509", "-in", ca_crt, "-noout", "-text"]);
    assert!(x.contains("Public Key Algorithm: rsaEncryption"), "{x}");
    assert!(x.contains("Public-Key: (2048 bit)"), "{x}");
    assert!(
        x.contains("Signature Algorithm: sha256WithRSAEncryption"),
        "{x}"
    );
    assert!(x.contains("CA:TRUE"), "{x}");
    for (pair, purpose) in [
        (layout.ca(), None),
        (layout.server("c0"), Some("sslserver")),
        (layout.peer("c1"), Some("sslclient")),
        (layout.client("admin"), Some("sslclient")),
    ] {
        let crt = pair.cert.to_str().unwrap();
        let key = pair.key.to_str().unwrap();
        if let Some(purpose) = purpose {
            let v = openssl(&["verify", "-CAfile", ca_crt, "-purpose", purpose, crt]);
            assert_eq!(v.trim(), format!("{crt}: OK"));
            let x = openssl(&["x509", "-in", crt, "-noout", "-text"]);
            assert!(x.contains("Public Key Algorithm: rsaEncryption"), "{x}");
            assert!(
                x.contains("Signature Algorithm: sha256WithRSAEncryption"),
                "{x}"
            );
        }
        // PKCS#8 PEM, an RSA key, the one in the certificate, 0600.
        let pem = std::fs::read_to_string(&pair.key).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let k = openssl(&["pkey", "-in", key, "-noout", "-text"]);
        assert!(k.contains("Private-Key: (2048 bit"), "{key}: {k}");
        assert!(k.contains("publicExponent: 65537"), "{key}: {k}");
        assert_eq!(
            openssl(&["pkey", "-in", key, "-pubout"]),
            openssl(&["x509", "-in", crt, "-noout", "-pubkey"]),
            "{key} belongs to {crt}"
        );
        let mode = std::fs::metadata(&pair.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
}

#[test]
fn rsa_keys_are_kept_by_rerun_and_renew() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec("[tls]\nkey-algorithm = \"rsa-2048\"\nvalidity-days = 10\nrenew-before-days = 5");
    let issued = OffsetDateTime::now_utc() - time::Duration::days(7);
    ensure(&s, dir.path(), Mode::Generate, issued).unwrap();
    let before = snapshot(dir.path());
    let now = OffsetDateTime::now_utc();
    let r = ensure(&s, dir.path(), Mode::Generate, now).unwrap();
    assert!(r.unchanged(), "{r}");
    assert_eq!(before, snapshot(dir.path()), "re-running touches nothing");
    let layout = Layout::new(dir.path());
    let keys = |l: &Layout| {
        [l.ca(), l.server("c0"), l.peer("c1"), l.client("admin")]
            .map(|p| std::fs::read(p.key).unwrap())
    };
    let keys_before = keys(&layout);
    let r = ensure(&s, dir.path(), Mode::Renew, now).unwrap();
    assert_eq!(r.entries[0].action, Action::Keep, "CA kept");
    assert!(
        r.entries[1..]
            .iter()
            .all(|e| matches!(e.action, Action::Reissue { new_key: false, .. })),
        "{r}"
    );
    assert_eq!(keys(&layout), keys_before, "renew keeps the RSA keys");
    let crt = layout.server("c0").cert;
    let v = openssl(&[
        "verify",
        "-CAfile",
        layout.ca().cert.to_str().unwrap(),
        crt.to_str().unwrap(),
    ]);
    assert!(v.trim().ends_with(": OK"), "{v}");
    assert!(ensure(&s, dir.path(), Mode::Renew, now)
        .unwrap()
        .unchanged());
}

#[test]
fn an_imported_ca_signs_the_leaves_and_is_never_replaced() {
    let ext = tempfile::tempdir().unwrap();
    let s = spec("");
    ensure(&s, ext.path(), Mode::Generate, OffsetDateTime::now_utc()).unwrap();
    let (ca_crt, ca_key) = (ext.path().join("ca.crt"), ext.path().join("ca.key"));
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    assert!(import_ca(dir.path(), &ca_crt, &ca_key, now).unwrap());
    assert!(
        !import_ca(dir.path(), &ca_crt, &ca_key, now).unwrap(),
        "identical: no-op"
    );
    let r = ensure(&s, dir.path(), Mode::Generate, now).unwrap();
    assert_eq!(r.entries[0].action, Action::Keep, "{r}");
    let layout = Layout::new(dir.path());
    let leaf = pem_to_der(&std::fs::read(layout.server("c0").cert).unwrap()).unwrap();
    assert!(signed_by(
        &leaf,
        &pem_to_der(&std::fs::read(&ca_crt).unwrap()).unwrap()
    ));
    // A leaf is not a CA; a different CA is refused.
    let err = import_ca(
        dir.path(),
        &layout.server("c0").cert,
        &layout.server("c0").key,
        now,
    )
    .unwrap_err();
    assert!(err.to_string().contains("is not a CA"), "{err}");
    let other = tempfile::tempdir().unwrap();
    ensure(&s, other.path(), Mode::Generate, now).unwrap();
    let err = import_ca(
        dir.path(),
        &other.path().join("ca.crt"),
        &other.path().join("ca.key"),
        now,
    )
    .unwrap_err();
    assert!(err.to_string().contains("refusing to replace"), "{err}");
    let err = import_ca(dir.path(), &ca_crt, &other.path().join("ca.key"), now).unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
}
