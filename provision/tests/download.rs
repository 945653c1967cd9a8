//! `etcd-provision download` against a local HTTPS server (test CA via `--ca-file`): a good
//! checksum installs; a wrong or missing checksum fails with nothing installed or cached;
//! a pinned digest works; the cache serves offline runs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a test failure

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use common::*;
use provision::download::sums::sha256_hex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VERSION: &str = "3.9.9";

/// A release tarball with shell-script "binaries".
fn tarball() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for name in ["etcd", "etcdctl", "etcdutl", "README.md"] {
        let body = format!("#!/bin/sh\necho {name} {VERSION}\n");
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(
            &mut h,
            format!("etcd-v{VERSION}-linux-amd64/{name}"),
            body.as_bytes(),
        )
        .unwrap();
    }
    let mut gz = tar.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

struct Server {
    port: u16,
    ca_pem: String,
    _rt: tokio::runtime::Runtime,
}

/// Serves `files` (path -> body) over HTTPS on 127.0.0.1 with a fresh test CA.
fn serve(files: HashMap<String, Vec<u8>>) -> Server {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test mirror CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let files = Arc::new(files);
    rt.spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let files = files.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = match files.get(&path) {
                    Some(b) => ("200 OK", b.clone()),
                    None => ("404 Not Found", b"not found".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(&body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server {
        port,
        ca_pem: ca_cert.pem(),
        _rt: rt,
    }
}

fn mirror() -> (Server, String) {
    let tgz = tarball();
    let digest = sha256_hex(&tgz);
    let file = format!("etcd-v{VERSION}-linux-amd64.tar.gz");
    let mut files = HashMap::new();
    for base in ["good", "wrong", "missing"] {
        files.insert(format!("/{base}/v{VERSION}/{file}"), tgz.clone());
    }
    files.insert(
        format!("/good/v{VERSION}/SHA256SUMS"),
        format!(
            "{}  etcd-v{VERSION}-darwin-amd64.zip\n{digest}  {file}\n",
            "0".repeat(64)
        )
        .into_bytes(),
    );
    files.insert(
        format!("/wrong/v{VERSION}/SHA256SUMS"),
        format!("{}  {file}\n", "1".repeat(64)).into_bytes(),
    );
    files.insert(
        format!("/missing/v{VERSION}/SHA256SUMS"),
        format!("{digest}  etcd-v{VERSION}-linux-arm64.tar.gz\n").into_bytes(),
    );
    (serve(files), digest)
}

fn download(dir: &Path, server: &Server, base: &str, extra: &[&str]) -> std::process::Output {
    let ca = dir.join("mirror-ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let url = format!("https://127.0.0.1:{}/{base}", server.port);
    let cache = dir.join("cache");
    let bin = dir.join("bin");
    let mut args = vec![
        "download",
        "--release-version",
        VERSION,
        "--url",
        &url,
        "--ca-file",
        ca.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--extract-to",
        bin.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn cached_tarball(dir: &Path) -> std::path::PathBuf {
    dir.join(format!(
        "cache/v{VERSION}/etcd-v{VERSION}-linux-amd64.tar.gz"
    ))
}

#[test]
fn good_checksum_installs_and_the_cache_serves_offline() {
    let (server, digest) = mirror();
    let dir = tempfile::tempdir().unwrap();
    let o = download(dir.path(), &server, "good", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&digest), "{}", text(&o));
    let etcd = dir.path().join("bin/etcd");
    let out = std::process::Command::new(&etcd).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("etcd {VERSION}\n")
    );
    assert!(dir.path().join("bin/etcdctl").is_file() && !dir.path().join("bin/README.md").exists());
    assert!(cached_tarball(dir.path()).is_file());

    // Second run: nothing changes.
    let before = snapshot(&dir.path().join("bin"));
    let o = download(dir.path(), &server, "good", &[]);
    assert!(text(&o).contains("unchanged"), "{}", text(&o));
    assert_eq!(before, snapshot(&dir.path().join("bin")));

    // Offline from the cache, with the URL pointing nowhere.
    let cache = dir.path().join("cache");
    let o = run(&[
        "download",
        "--release-version",
        VERSION,
        "--url",
        "https://127.0.0.1:9/none",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--offline",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // Pinned digest: served from the cache too.
    let o = run(&[
        "download",
        "--release-version",
        VERSION,
        "--url",
        "https://127.0.0.1:9/none",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--sha256",
        &digest,
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn wrong_or_missing_checksum_installs_nothing() {
    let (server, digest) = mirror();
    for (base, extra, want) in [
        ("wrong", vec![], "checksum mismatch"),
        (
            "missing",
            vec![],
            "has no entry for etcd-v3.9.9-linux-amd64.tar.gz",
        ),
        (
            "good",
            vec![
                "--sha256",
                "2222222222222222222222222222222222222222222222222222222222222222",
            ],
            "checksum mismatch",
        ),
        ("nothing-here", vec![], "HTTP 404"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let o = download(dir.path(), &server, base, &extra);
        assert!(!o.status.success(), "{base}: {}", text(&o));
        assert!(text(&o).contains(want), "{base}: {}", text(&o));
        assert!(!dir.path().join("bin").exists(), "{base}: binaries written");
        assert!(
            !cached_tarball(dir.path()).exists(),
            "{base}: tarball cached"
        );
        if want == "checksum mismatch" && base == "wrong" {
            assert!(
                text(&o).contains(&digest),
                "actual digest named: {}",
                text(&o)
            );
        }
    }
}

#[test]
fn untrusted_or_unreachable_server_is_a_clear_error() {
    let (server, _) = mirror();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{}/good", server.port);
    let cache = dir.path().join("cache");
    let o = run(&[
        "download",
        "--release-version",
        VERSION,
        "--url",
        &url,
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).to_lowercase().contains("certificate"),
        "{}",
        text(&o)
    );
    let port = free_port();
    let o = run(&[
        "download",
        "--release-version",
        VERSION,
        "--url",
        &format!("https://127.0.0.1:{port}"),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains(&format!(
            "cannot fetch https://127.0.0.1:{port}/v{VERSION}/SHA256SUMS"
        )),
        "{}",
        text(&o)
    );
}
