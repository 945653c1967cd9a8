//! Certificates from `etcd-provision certs`: openssl accepts them, they carry the right
//! SANs and EKUs, etcd and etcdctl use them, a second run changes nothing, and `renew`
//! reaches a running member without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a test failure

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const SPEC: &str = r#"
[cluster]
name = "certs-test"
[tls]
extra-sans = ["etcd.example.com"]
[[member]]
name = "m0"
ips = ["127.0.0.1"]
hostnames = ["m0.example.com"]
"#;

fn openssl(args: &[&str]) -> String {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "openssl {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn certificates_pass_openssl_verify_with_expected_sans_and_ekus() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), SPEC);
    let pki = dir.path().join("pki");
    let spec_s = spec.to_str().unwrap();
    let pki_s = pki.to_str().unwrap();
    let out = run_ok(&["certs", "generate", "--spec", spec_s, "--dir", pki_s]);
    assert!(out.contains("created  CA"), "{out}");
    let ca = pki.join("ca.crt");
    let ca_s = ca.to_str().unwrap();
    for (file, eku, sans) in [
        (
            "members/m0/server.crt",
            "TLS Web Server Authentication, TLS Web Client Authentication",
            Some("IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:etcd.example.com, DNS:localhost, DNS:m0, DNS:m0.example.com"),
        ),
        (
            "members/m0/peer.crt",
            "TLS Web Server Authentication, TLS Web Client Authentication",
            Some("IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:localhost, DNS:m0, DNS:m0.example.com"),
        ),
        ("clients/admin.crt", "TLS Web Client Authentication", None),
        ("clients/kube-apiserver-etcd-client.crt", "TLS Web Client Authentication", None),
        ("clients/healthcheck-client.crt", "TLS Web Client Authentication", None),
    ] {
        let path = pki.join(file);
        let p = path.to_str().unwrap();
        let purpose = if eku.contains("Server") { "sslserver" } else { "sslclient" };
        let v = openssl(&["verify", "-CAfile", ca_s, "-purpose", purpose, p]);
        assert_eq!(v.trim(), format!("{p}: OK"));
        let x = openssl(&["x509", "-in", p, "-noout", "-text"]);
        assert!(x.contains(eku), "{file}: {x}");
        match sans {
            Some(s) => assert!(x.contains(s), "{file} SANs: {x}"),
            None => assert!(!x.contains("Subject Alternative Name"), "{file}: {x}"),
        }
        assert!(x.contains("ASN1 OID: prime256v1"), "{file}: ECDSA P-256 expected");
        // Keys are 0600.
        let key = path.with_extension("key");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    }
    let subj = openssl(&[
        "x509",
        "-in",
        pki.join("clients/kube-apiserver-etcd-client.crt")
            .to_str()
            .unwrap(),
        "-noout",
        "-subject",
    ]);
    assert!(
        subj.contains("O = system:masters, CN = kube-apiserver-etcd-client")
            || subj.contains("CN = kube-apiserver-etcd-client, O = system:masters"),
        "{subj}"
    );

    // A second run changes nothing: same bytes, same mtimes.
    let before = snapshot(&pki);
    std::thread::sleep(Duration::from_millis(50));
    let out = run_ok(&["certs", "generate", "--spec", spec_s, "--dir", pki_s]);
    assert!(out.contains("no changes"), "{out}");
    let out = run_ok(&["certs", "renew", "--spec", spec_s, "--dir", pki_s]);
    assert!(out.contains("no changes"), "{out}");
    assert_eq!(before, snapshot(&pki));
}

/// Flags for a single TLS member `m0` on `port`/`peer` with certificates from `pki`.
fn member_cmd(pki: &Path, data: &Path, port: u16, peer: u16) -> Command {
    let p = |f: &str| pki.join(f).to_str().unwrap().to_string();
    let client = format!("https://127.0.0.1:{port}");
    let peer_url = format!("https://127.0.0.1:{peer}");
    let mut c = Command::new(etcd_bin());
    scrub(&mut c);
    c.args([
        "--name=m0",
        &format!("--data-dir={}", data.display()),
        &format!("--listen-client-urls={client}"),
        &format!("--advertise-client-urls={client}"),
        &format!("--listen-peer-urls={peer_url}"),
        &format!("--initial-advertise-peer-urls={peer_url}"),
        &format!("--initial-cluster=m0={peer_url}"),
        &format!("--cert-file={}", p("members/m0/server.crt")),
        &format!("--key-file={}", p("members/m0/server.key")),
        &format!("--trusted-ca-file={}", p("ca.crt")),
        "--client-cert-auth=true",
        &format!("--peer-cert-file={}", p("members/m0/peer.crt")),
        &format!("--peer-key-file={}", p("members/m0/peer.key")),
        &format!("--peer-trusted-ca-file={}", p("ca.crt")),
        "--peer-client-cert-auth=true",
    ]);
    c
}

fn tls_env(pki: &Path, port: u16, client: Option<&str>) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "ETCDCTL_ENDPOINTS".to_string(),
            format!("https://127.0.0.1:{port}"),
        ),
        (
            "ETCDCTL_CACERT".to_string(),
            pki.join("ca.crt").display().to_string(),
        ),
    ];
    if let Some(c) = client {
        env.push((
            "ETCDCTL_CERT".into(),
            pki.join(format!("clients/{c}.crt")).display().to_string(),
        ));
        env.push((
            "ETCDCTL_KEY".into(),
            pki.join(format!("clients/{c}.key")).display().to_string(),
        ));
    }
    env
}

fn start_member(dir: &Path, spec_text: &str) -> (Proc, std::path::PathBuf, u16) {
    let spec = write_spec(dir, spec_text);
    let pki = dir.join("pki");
    run_ok(&[
        "certs",
        "generate",
        "--spec",
        spec.to_str().unwrap(),
        "--dir",
        pki.to_str().unwrap(),
    ]);
    let (port, peer) = (free_port(), free_port());
    let proc = Proc::spawn(
        member_cmd(&pki, &dir.join("data"), port, peer),
        &dir.join("etcd.log"),
    );
    let env = tls_env(&pki, port, Some("admin"));
    let ok = wait_until(Duration::from_secs(20), || {
        etcdctl(&["endpoint", "health"], &env).status.success()
    });
    assert!(ok, "member never became healthy:\n{}", proc.log_text());
    (proc, pki, port)
}

#[test]
fn etcd_and_etcdctl_accept_the_certificates_and_refuse_a_client_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, pki, port) = start_member(dir.path(), SPEC);
    for client in ["admin", "kube-apiserver-etcd-client", "healthcheck-client"] {
        let o = etcdctl(&["put", "k", client], &tls_env(&pki, port, Some(client)));
        assert!(o.status.success(), "{client}: {}", text(&o));
    }
    let o = etcdctl(
        &["--dial-timeout=2s", "--command-timeout=3s", "get", "k"],
        &tls_env(&pki, port, None),
    );
    assert!(
        !o.status.success(),
        "a client without a certificate was served: {}",
        text(&o)
    );
    proc.assert_running();
}

#[test]
fn rsa_certificates_serve_etcd_and_etcdctl() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SPEC.replace("[tls]\n", "[tls]\nkey-algorithm = \"rsa\"\n");
    let (mut proc, pki, port) = start_member(dir.path(), &spec);
    let x = openssl(&[
        "x509",
        "-in",
        pki.join("members/m0/server.crt").to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(x.contains("Public Key Algorithm: rsaEncryption"), "{x}");
    let o = etcdctl(&["put", "k", "rsa"], &tls_env(&pki, port, Some("admin")));
    assert!(o.status.success(), "{}", text(&o));
    proc.assert_running();
}

/// Serial number of the certificate the member serves on `port` right now.
fn served_serial(pki: &Path, port: u16) -> String {
    let o = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-CAfile",
            pki.join("ca.crt").to_str().unwrap(),
            "-cert",
            pki.join("clients/admin.crt").to_str().unwrap(),
            "-key",
            pki.join("clients/admin.key").to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let begin = out
        .find("-----BEGIN CERTIFICATE-----")
        .expect("no certificate served");
    let end = out.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&out.as_bytes()[begin..end])
        .unwrap();
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout)
        .trim()
        .to_string()
}

#[test]
fn renew_reaches_a_running_member_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, pki, port) = start_member(dir.path(), SPEC);
    let pid = proc.child.id();
    let before = served_serial(&pki, port);
    let key_before = std::fs::read(pki.join("members/m0/server.key")).unwrap();
    let spec = dir.path().join("cluster.toml");
    let out = run_ok(&[
        "certs",
        "renew",
        "--spec",
        spec.to_str().unwrap(),
        "--dir",
        pki.to_str().unwrap(),
        "--renew-before-days",
        "400",
    ]);
    assert!(out.contains("reissued member m0 server"), "{out}");
    assert_eq!(
        std::fs::read(pki.join("members/m0/server.key")).unwrap(),
        key_before,
        "key kept"
    );
    let on_disk = openssl(&[
        "x509",
        "-in",
        pki.join("members/m0/server.crt").to_str().unwrap(),
        "-noout",
        "-serial",
    ]);
    assert_ne!(on_disk.trim(), before);
    let after = served_serial(&pki, port);
    assert_eq!(
        after,
        on_disk.trim(),
        "the next TLS connection must see the renewed certificate"
    );
    proc.assert_running();
    assert_eq!(proc.child.id(), pid);
    assert!(
        etcdctl(&["endpoint", "health"], &tls_env(&pki, port, Some("admin")))
            .status
            .success()
    );
}
