//! `scripts/dist.sh` (packaging the workspace's debug build with `--bin-dir`): `dist/v<version>/`
//! holds the deb, the rpm and `etcd-v<version>-linux-amd64.tar.gz` in upstream's layout;
//! `SHA256SUMS` verifies with `sha256sum -c`; and `etcd-provision download` installs the release
//! from a local HTTPS server (`openssl s_server -WWW` with a test CA) serving that `dist/`.
//!
//! Needs cargo-deb, cargo-generate-rpm and openssl (`scripts/deps.sh --test`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use etcd_tests::bins::etcd_bin;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?} failed:\n{}", text(&o));
    text(&o)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Kills the HTTPS server when the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves `root` over HTTPS on 127.0.0.1 with a fresh test CA; returns the port, the CA file
/// and the server process.
fn serve(root: &Path, dir: &Path) -> (u16, PathBuf, KillOnDrop) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test mirror CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server-key.pem"), key.serialize_pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("openssl")
        .current_dir(root)
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(dir.join("server.pem"))
        .arg("-key")
        .arg(dir.join("server-key.pem"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (port, ca_file, guard);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("openssl s_server did not listen on {port}");
}

#[test]
fn dist_builds_deb_rpm_tarball_with_sha256sums_and_provision_downloads_it() {
    let dir = tempfile::Builder::new()
        .prefix("package-dist.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let etcd = etcd_bin();
    let bin_dir = etcd.parent().unwrap();
    let out = dir.path().join("dist");
    run(Command::new("bash")
        .current_dir(workspace_root())
        .arg("scripts/dist.sh")
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--out")
        .arg(&out));
    let rel = out.join(format!("v{VERSION}"));
    let tarball = format!("etcd-v{VERSION}-linux-amd64.tar.gz");
    let deb = format!("etcd_{VERSION}-1_amd64.deb");
    let rpm = format!("etcd-{VERSION}-1.x86_64.rpm");

    let sums = std::fs::read_to_string(rel.join("SHA256SUMS")).unwrap();
    for f in [&tarball, &deb, &rpm] {
        assert!(
            sums.lines().any(|l| l.ends_with(&format!("  {f}"))),
            "SHA256SUMS lacks {f}:\n{sums}"
        );
    }
    let check = run(Command::new("sha256sum")
        .current_dir(&rel)
        .args(["-c", "SHA256SUMS"]));
    assert_eq!(
        check.lines().filter(|l| l.ends_with(": OK")).count(),
        3,
        "{check}"
    );

    // Upstream's layout: one top directory holding the binaries, README.md and LICENSE.
    let list = run(Command::new("tar").arg("tzf").arg(rel.join(&tarball)));
    let top = format!("etcd-v{VERSION}-linux-amd64/");
    let mut entries: Vec<&str> = list.lines().collect();
    entries.sort();
    let want: Vec<String> = [
        "",
        "LICENSE",
        "README.md",
        "etcd",
        "etcd-provision",
        "etcdutl",
    ]
    .iter()
    .map(|f| format!("{top}{f}"))
    .collect();
    assert_eq!(entries, want, "{list}");

    // `etcd-provision download` from an HTTPS mirror serving dist/.
    let (port, ca, _server) = serve(&out, dir.path());
    let provision = bin_dir.join("etcd-provision");
    let bin = dir.path().join("bin");
    let got = run(Command::new(&provision)
        .env("RUST_LOG", "warn")
        .args(["download", "--release-version", VERSION, "--url"])
        .arg(format!("https://127.0.0.1:{port}"))
        .arg("--ca-file")
        .arg(&ca)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .arg("--extract-to")
        .arg(&bin));
    let digest = sums
        .lines()
        .find(|l| l.ends_with(&tarball))
        .and_then(|l| l.split_whitespace().next())
        .unwrap();
    assert!(
        got.contains(digest),
        "download did not verify {digest}:\n{got}"
    );
    let version = run(Command::new(bin.join("etcd")).arg("--version"));
    assert!(version.contains("etcd Version"), "{version}");
}
