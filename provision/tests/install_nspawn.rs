//! `etcd-provision install` inside a Debian bookworm container booted with systemd-nspawn:
//! the member becomes active and healthy, and a second install changes nothing.
//!
//! Needs root, `debootstrap` and `systemd-nspawn` (packages debootstrap, systemd-container).
//! The debootstrapped root filesystem is cached under /var/tmp/etcd-provision-rootfs
//! (PROVISION_ROOTFS_CACHE) and copied per test run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a test failure

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn cache_dir() -> PathBuf {
    std::env::var_os("PROVISION_ROOTFS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/etcd-provision-rootfs"))
}

fn sh(cmd: &mut Command) {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?} failed:\n{}", text(&o));
}

/// The cached bookworm root filesystem, debootstrapped on first use (under a lock, into a
/// temporary directory renamed when complete).
fn rootfs() -> PathBuf {
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).unwrap();
    let lock = std::fs::File::create(cache.join(".lock")).unwrap();
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let root = cache.join("bookworm");
    if root.join("etc/debian_version").is_file() {
        return root;
    }
    let tmp = cache.join("bookworm.partial");
    let _ = std::fs::remove_dir_all(&tmp);
    let mut cmd = Command::new("timeout");
    cmd.args([
        "600",
        "debootstrap",
        "--variant=minbase",
        "--include=systemd,systemd-sysv,dbus,libstdc++6",
        "bookworm",
    ])
    .arg(&tmp);
    if let Some(m) = std::env::var_os("PROVISION_DEBIAN_MIRROR") {
        cmd.arg(m);
    }
    sh(&mut cmd);
    std::fs::rename(&tmp, &root).unwrap();
    root
}

fn copy(from: &Path, to: &Path) {
    sh(Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(from)
        .arg(to));
}

const RUN_SH: &str = r#"#!/bin/sh
exec > /e2e/out/run.log 2>&1
set -x
P=/e2e/etcd-provision
FILES="/usr/local/bin/etcd /usr/local/bin/etcdctl /etc/systemd/system/etcd.service /etc/etcd/etcd.toml /etc/etcd/etcd.env /etc/etcd/etcdctl.env /etc/etcd/pki/ca.crt /etc/etcd/pki/server.crt /etc/etcd/pki/server.key /etc/etcd/pki/peer.key /etc/etcd/pki/admin.key /etc/etcd/pki /var/lib/etcd"
$P install --bundle /e2e/bundle --binaries /e2e/bin --enable --start > /e2e/out/install1.log 2>&1; echo $? > /e2e/out/install1.rc
systemctl is-active etcd > /e2e/out/active 2>&1
systemctl is-enabled etcd > /e2e/out/enabled 2>&1
set -a; . /etc/etcd/etcdctl.env; set +a
/usr/local/bin/etcdctl endpoint health > /e2e/out/health 2>&1; echo $? > /e2e/out/health.rc
/usr/local/bin/etcdctl put installed yes >> /e2e/out/health 2>&1
stat -c '%n %a %U:%G %y' $FILES > /e2e/out/stat1
sleep 1
$P install --bundle /e2e/bundle --binaries /e2e/bin --enable --start > /e2e/out/install2.log 2>&1; echo $? > /e2e/out/install2.rc
stat -c '%n %a %U:%G %y' $FILES > /e2e/out/stat2
systemctl is-active etcd > /e2e/out/active2 2>&1
systemctl status etcd --no-pager > /e2e/out/status 2>&1
journalctl -u etcd --no-pager > /e2e/out/journal 2>&1
echo done > /e2e/out/done
systemctl poweroff --no-block
"#;

const E2E_UNIT: &str = "[Unit]
Description=provision end-to-end test
After=basic.target

[Service]
Type=oneshot
ExecStart=/e2e/run.sh
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
";

#[test]
fn install_in_nspawn_gives_an_active_healthy_member_and_is_idempotent() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (systemd-nspawn, debootstrap)");
        return;
    }
    for tool in ["/usr/sbin/debootstrap", "/usr/bin/systemd-nspawn"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} missing: apt-get install debootstrap systemd-container"
        );
    }
    let base = rootfs();
    let work = tempfile::Builder::new()
        .prefix("provision-nspawn.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let root = work.path().join("root");
    copy(&base, &root);

    // Certificates and the bundle, made on the host from a one-member spec.
    let host = work.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    let spec = write_spec(
        &host,
        "[cluster]\ntoken = \"nspawn\"\n[[member]]\nname = \"node0\"\nips = [\"127.0.0.1\"]\n",
    );
    let pki = host.join("pki");
    let out = host.join("out");
    run_ok(&[
        "certs",
        "generate",
        "--spec",
        spec.to_str().unwrap(),
        "--dir",
        pki.to_str().unwrap(),
    ]);
    run_ok(&[
        "render",
        "--spec",
        spec.to_str().unwrap(),
        "--pki-dir",
        pki.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);

    let e2e = root.join("e2e");
    std::fs::create_dir_all(e2e.join("out")).unwrap();
    std::fs::create_dir_all(e2e.join("bin")).unwrap();
    copy(&out.join("node0"), &e2e.join("bundle"));
    std::fs::copy(etcd_bin(), e2e.join("bin/etcd")).unwrap();
    std::fs::copy(etcdctl_bin(), e2e.join("bin/etcdctl")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_etcd-provision"),
        e2e.join("etcd-provision"),
    )
    .unwrap();
    std::fs::write(e2e.join("run.sh"), RUN_SH).unwrap();
    sh(Command::new("chmod").arg("755").arg(e2e.join("run.sh")));
    let units = root.join("etc/systemd/system");
    std::fs::write(units.join("e2e.service"), E2E_UNIT).unwrap();
    std::fs::create_dir_all(units.join("multi-user.target.wants")).unwrap();
    std::os::unix::fs::symlink(
        "/etc/systemd/system/e2e.service",
        units.join("multi-user.target.wants/e2e.service"),
    )
    .unwrap();

    let log = work.path().join("nspawn.log");
    let status = Command::new("timeout")
        .args([
            "-k",
            "10",
            "300",
            "systemd-nspawn",
            "-q",
            "--boot",
            "--register=no",
            "--keep-unit",
            "--private-network",
            "-D",
        ])
        .arg(&root)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(work.path().join("nspawn.err")).unwrap())
        .status()
        .unwrap();
    let read = |f: &str| std::fs::read_to_string(e2e.join("out").join(f)).unwrap_or_default();
    let diag = || {
        format!(
            "nspawn exit {status}\nrun.log:\n{}\ninstall1:\n{}\ninstall2:\n{}\nstatus:\n{}\njournal:\n{}\nnspawn stderr:\n{}",
            read("run.log"), read("install1.log"), read("install2.log"), read("status"), read("journal"),
            std::fs::read_to_string(work.path().join("nspawn.err")).unwrap_or_default()
        )
    };
    assert_eq!(
        read("done").trim(),
        "done",
        "the in-container script did not finish\n{}",
        diag()
    );
    assert_eq!(read("install1.rc").trim(), "0", "{}", diag());
    assert_eq!(read("active").trim(), "active", "{}", diag());
    assert_eq!(read("enabled").trim(), "enabled", "{}", diag());
    assert_eq!(
        read("health.rc").trim(),
        "0",
        "health: {}\n{}",
        read("health"),
        diag()
    );
    assert_eq!(read("install2.rc").trim(), "0", "{}", diag());
    assert!(
        read("install2.log").contains("no changes"),
        "second install changed something:\n{}",
        read("install2.log")
    );
    let stat1 = read("stat1");
    assert_eq!(
        stat1,
        read("stat2"),
        "a second install changed files (mode, owner or mtime)"
    );
    assert_eq!(read("active2").trim(), "active");
    for (path, want) in [
        ("/var/lib/etcd ", "700 etcd:etcd"),
        ("/etc/etcd/pki/server.key ", "600 etcd:etcd"),
        ("/etc/etcd/pki/peer.key ", "600 etcd:etcd"),
        ("/etc/etcd/pki/admin.key ", "600 root:root"),
        ("/etc/etcd/pki/ca.crt ", "644 root:root"),
        ("/etc/etcd/pki ", "750 root:etcd"),
        ("/usr/local/bin/etcd ", "755 root:root"),
        ("/etc/systemd/system/etcd.service ", "644 root:root"),
    ] {
        let line = stat1
            .lines()
            .find(|l| l.starts_with(path))
            .unwrap_or_else(|| panic!("{path} not in:\n{stat1}"));
        assert!(line.contains(want), "{line}: want {want}");
    }
}
