//! The deb built by cargo-deb from `etcd/Cargo.toml` (`[package.metadata.deb]`), installed with
//! `apt-get install ./etcd_*.deb` inside a Debian bookworm container booted with systemd-nspawn:
//! not started on install, `systemctl start` returns once etcd is ready (Type=notify), etcdctl
//! put/get, restart keeps the data, a changed /etc/etcd/etcd.toml is used, the service runs as
//! `etcd`, `apt-get remove` keeps data and config, a reinstall finds the data; and an upgrade to a
//! newer version restarts the running service and keeps the data.
//!
//! Needs root, `cargo-deb` (`scripts/deps.sh --test`), `debootstrap` and `systemd-nspawn`. The
//! packages hold the workspace's debug binaries, stripped (a release build compiles RocksDB
//! optimised for many minutes; `scripts/dist.sh` builds the release packages from the same
//! metadata). The bookworm root filesystem is the one cached by the provision tests under
//! /var/tmp/etcd-provision-rootfs (PROVISION_ROOTFS_CACHE), copied per test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use etcd_tests::bins::{etcd_bin, etcdctl_bin};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn sh(cmd: &mut Command) {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?} failed:\n{}", text(&o));
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Whether this host can run the test (root, debootstrap, systemd-nspawn, cargo-deb).
fn prerequisites() -> bool {
    let uid = Command::new("id").arg("-u").output().map(|o| text(&o));
    if uid.map(|u| u.trim() != "0").unwrap_or(true) {
        eprintln!("skipped: needs root (systemd-nspawn, debootstrap)");
        return false;
    }
    for tool in ["/usr/sbin/debootstrap", "/usr/bin/systemd-nspawn"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} missing: bash scripts/deps.sh --test"
        );
    }
    let o = Command::new("cargo").args(["deb", "--version"]).output();
    assert!(
        o.map(|o| o.status.success()).unwrap_or(false),
        "cargo-deb missing: bash scripts/deps.sh --test"
    );
    true
}

fn cache_dir() -> PathBuf {
    std::env::var_os("PROVISION_ROOTFS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/etcd-provision-rootfs"))
}

/// The cached bookworm root filesystem (shared with provision/tests/install_nspawn.rs: same
/// path, lock and debootstrap command), debootstrapped on first use.
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

/// The two debs (0.1.0-1 and a newer 0.1.1-1 of the same binaries), built once per test run.
struct Debs {
    old: PathBuf,
    new: PathBuf,
}

/// A per-process directory for the debs (a static is never dropped): `<prefix><pid>`; those of
/// processes that no longer run are removed first.
fn debs_dir() -> PathBuf {
    let prefix = "etcd-package-deb.";
    if let Ok(entries) = std::fs::read_dir("/var/tmp") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(pid) = name.strip_prefix(prefix) {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let dir = Path::new("/var/tmp").join(format!("{prefix}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn debs() -> &'static Debs {
    static DEBS: OnceLock<Debs> = OnceLock::new();
    DEBS.get_or_init(|| {
        let dir = debs_dir();
        // cargo-deb takes `target/release/<bin>` from CARGO_TARGET_DIR: a staging target dir
        // holding stripped copies of this build's binaries.
        let release = dir.join("target/release");
        std::fs::create_dir_all(&release).unwrap();
        let etcd = etcd_bin();
        let provision = etcd.parent().unwrap().join("etcd-provision");
        assert!(
            provision.is_file(),
            "{} missing: cargo build --workspace",
            provision.display()
        );
        let etcdutl = etcd.with_file_name("etcdutl");
        for (src, name) in [
            (&etcd, "etcd"),
            (&etcdutl, "etcdutl"),
            (&provision, "etcd-provision"),
        ] {
            sh(Command::new("strip")
                .arg("-o")
                .arg(release.join(name))
                .arg(src));
        }
        let out = dir.join("out");
        let build = |version: &str| -> PathBuf {
            let o = Command::new("cargo")
                .current_dir(workspace_root())
                .env("CARGO_TARGET_DIR", dir.join("target"))
                .args(["deb", "-p", "etcd", "--no-build", "--fast", "--deb-version"])
                .arg(version)
                .arg("-o")
                .arg(&out)
                .output()
                .unwrap();
            assert!(o.status.success(), "cargo deb failed:\n{}", text(&o));
            let deb = out.join(format!("etcd_{version}_amd64.deb"));
            assert!(deb.is_file(), "{} not built:\n{}", deb.display(), text(&o));
            deb
        };
        let old = build("0.1.0-1");
        let new = build("0.1.1-1");
        // Only the debs are needed from here on.
        let _ = std::fs::remove_dir_all(dir.join("target"));
        Debs { old, new }
    })
}

const E2E_UNIT: &str = "[Unit]
Description=package end-to-end test
After=basic.target

[Service]
Type=oneshot
ExecStart=/e2e/run.sh
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
";

/// Boots a copy of the bookworm rootfs with the debs, etcdctl and `script` (run as a oneshot
/// unit that writes its results to /e2e/out and powers off); returns a reader of /e2e/out
/// files and the diagnostics to print on failure.
fn boot(script: &str) -> (Option<tempfile::TempDir>, PathBuf, String) {
    let keep = std::env::var_os("PACKAGE_TEST_KEEP").is_some();
    let base = rootfs();
    let debs = debs();
    let work = tempfile::Builder::new()
        .prefix("package-nspawn.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let root = work.path().join("root");
    sh(Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(&base)
        .arg(&root));
    let e2e = root.join("e2e");
    std::fs::create_dir_all(e2e.join("out")).unwrap();
    std::fs::copy(&debs.old, e2e.join("etcd_old.deb")).unwrap();
    std::fs::copy(&debs.new, e2e.join("etcd_new.deb")).unwrap();
    std::fs::copy(etcdctl_bin(), e2e.join("etcdctl")).unwrap();
    std::fs::write(e2e.join("run.sh"), script).unwrap();
    sh(Command::new("chmod").arg("755").arg(e2e.join("run.sh")));
    let units = root.join("etc/systemd/system");
    std::fs::write(units.join("e2e.service"), E2E_UNIT).unwrap();
    std::fs::create_dir_all(units.join("multi-user.target.wants")).unwrap();
    std::os::unix::fs::symlink(
        "/etc/systemd/system/e2e.service",
        units.join("multi-user.target.wants/e2e.service"),
    )
    .unwrap();
    let err = work.path().join("nspawn.err");
    let status = Command::new("timeout")
        .args([
            "-k",
            "10",
            "600",
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
        .stdout(std::fs::File::create(work.path().join("nspawn.log")).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    let out = e2e.join("out");
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
    let diag = format!(
        "nspawn exit {status}\nrun.log:\n{}\njournal:\n{}\nnspawn stderr:\n{}",
        read("run.log"),
        read("journal"),
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    let diag = format!("{diag}\n(work dir {})", work.path().display());
    // PACKAGE_TEST_KEEP=1 leaves the container tree for inspection.
    let work = if keep {
        let _ = work.keep();
        None
    } else {
        Some(work)
    };
    (work, out, diag)
}

fn read(out: &Path, f: &str) -> String {
    std::fs::read_to_string(out.join(f))
        .unwrap_or_default()
        .trim()
        .to_string()
}

const INSTALL_SH: &str = r#"#!/bin/sh
exec > /e2e/out/run.log 2>&1
set -x
export ETCDCTL_API=3
C="/e2e/etcdctl --endpoints=http://127.0.0.1:2379 --command-timeout=5s"
apt-get install -y /e2e/etcd_old.deb; echo $? > /e2e/out/install.rc
systemctl is-active etcd > /e2e/out/active_after_install
systemctl is-enabled etcd > /e2e/out/enabled_after_install
stat -c '%a %U:%G' /var/lib/etcd > /e2e/out/datadir
getent passwd etcd > /e2e/out/passwd
dpkg-query -W -f='${Conffiles}\n' etcd > /e2e/out/conffiles
ls -l /usr/bin/etcd /usr/bin/etcdutl /usr/bin/etcd-provision /usr/lib/systemd/system/etcd.service > /e2e/out/files
systemctl show -p Type --value etcd > /e2e/out/type
# `start --no-block`, then the first time the unit is active etcd must already serve.
systemctl start --no-block etcd
i=0
while s=$(systemctl is-active etcd); [ "$s" != active ] && [ $i -lt 1200 ]; do
  echo "$s" >> /e2e/out/states; sleep 0.05; i=$((i+1))
done
$C endpoint health > /e2e/out/health_at_active 2>&1; echo $? > /e2e/out/health_at_active.rc
$C put k1 v1 > /e2e/out/put 2>&1
$C get k1 --print-value-only > /e2e/out/get1 2>&1
PID=$(systemctl show -p MainPID --value etcd)
stat -c %U /proc/$PID > /e2e/out/user
systemctl restart etcd; echo $? > /e2e/out/restart.rc
$C get k1 --print-value-only > /e2e/out/get2 2>&1
sed -i 's#http://127.0.0.1:2379#http://127.0.0.1:2381#g' /etc/etcd/etcd.toml
systemctl restart etcd; echo $? > /e2e/out/restart2.rc
C2="/e2e/etcdctl --endpoints=http://127.0.0.1:2381 --command-timeout=5s"
$C2 get k1 --print-value-only > /e2e/out/get3 2>&1
$C endpoint health > /e2e/out/old_port 2>&1; echo $? > /e2e/out/old_port.rc
apt-get remove -y etcd; echo $? > /e2e/out/remove.rc
dpkg-query -W -f='${Status}\n' etcd > /e2e/out/status_after_remove 2>&1
ls -A /var/lib/etcd > /e2e/out/data_after_remove
grep -c 2381 /etc/etcd/etcd.toml > /e2e/out/config_after_remove
apt-get install -y /e2e/etcd_old.deb; echo $? > /e2e/out/reinstall.rc
systemctl start etcd; echo $? > /e2e/out/start3.rc
$C2 get k1 --print-value-only > /e2e/out/get4 2>&1
journalctl -u etcd --no-pager > /e2e/out/journal 2>&1
echo done > /e2e/out/done
systemctl poweroff --no-block
"#;

#[test]
fn deb_installs_starts_when_asked_keeps_data_across_restart_remove_and_reinstall() {
    if !prerequisites() {
        return;
    }
    let (_work, out, diag) = boot(INSTALL_SH);
    let r = |f: &str| read(&out, f);
    assert_eq!(r("done"), "done", "{diag}");
    assert_eq!(r("install.rc"), "0", "{diag}");
    // Installed, not started, not enabled: the first start uses the operator's config.
    assert_eq!(r("active_after_install"), "inactive", "{diag}");
    assert_eq!(r("enabled_after_install"), "disabled", "{diag}");
    assert_eq!(r("datadir"), "700 etcd:etcd", "{diag}");
    assert!(r("passwd").starts_with("etcd:"), "{diag}");
    assert!(r("conffiles").contains("/etc/etcd/etcd.toml"), "{diag}");
    assert!(r("conffiles").contains("/etc/default/etcd"), "{diag}");
    assert!(r("files").contains("/usr/bin/etcd-provision"), "{diag}");
    assert!(r("files").contains("/usr/bin/etcdutl"), "{diag}");
    assert_eq!(r("type"), "notify", "{diag}");
    assert!(
        // `inactive` until the queued start job runs, then `activating` until READY=1.
        r("states")
            .lines()
            .all(|s| s == "activating" || s == "inactive"),
        "states before active: {}\n{diag}",
        r("states")
    );
    assert_eq!(
        r("health_at_active.rc"),
        "0",
        "not serving when active\n{diag}"
    );
    assert_eq!(r("get1"), "v1", "{diag}");
    assert_eq!(r("user"), "etcd", "{diag}");
    assert_eq!(r("restart.rc"), "0", "{diag}");
    assert_eq!(r("get2"), "v1", "data lost on restart\n{diag}");
    assert_eq!(r("restart2.rc"), "0", "{diag}");
    assert_eq!(r("get3"), "v1", "changed config not used\n{diag}");
    assert_ne!(r("old_port.rc"), "0", "still on the old port\n{diag}");
    assert_eq!(r("remove.rc"), "0", "{diag}");
    assert!(r("status_after_remove").contains("config-files"), "{diag}");
    assert!(!r("data_after_remove").is_empty(), "data removed\n{diag}");
    assert_eq!(r("config_after_remove"), "2", "config not kept\n{diag}");
    assert_eq!(r("reinstall.rc"), "0", "{diag}");
    assert_eq!(r("start3.rc"), "0", "{diag}");
    assert_eq!(r("get4"), "v1", "reinstall lost the data\n{diag}");
}

const UPGRADE_SH: &str = r#"#!/bin/sh
exec > /e2e/out/run.log 2>&1
set -x
export ETCDCTL_API=3
C="/e2e/etcdctl --endpoints=http://127.0.0.1:2379 --command-timeout=5s"
apt-get install -y /e2e/etcd_old.deb; echo $? > /e2e/out/install.rc
systemctl start etcd; echo $? > /e2e/out/start.rc
$C put k1 v1 > /e2e/out/put 2>&1
systemctl show -p MainPID --value etcd > /e2e/out/pid_old
apt-get install -y /e2e/etcd_new.deb; echo $? > /e2e/out/upgrade.rc
dpkg-query -W -f='${Version}\n' etcd > /e2e/out/version
systemctl is-active etcd > /e2e/out/active
systemctl show -p MainPID --value etcd > /e2e/out/pid_new
$C get k1 --print-value-only > /e2e/out/get 2>&1
# A stopped service stays stopped across an upgrade (reinstalling the same version).
systemctl stop etcd
apt-get install -y --reinstall /e2e/etcd_new.deb; echo $? > /e2e/out/reinstall.rc
systemctl is-active etcd > /e2e/out/active_stopped
# purge: configuration gone, data kept with a message.
apt-get purge -y etcd > /e2e/out/purge 2>&1; echo $? > /e2e/out/purge.rc
ls /etc/etcd/etcd.toml > /e2e/out/config_after_purge 2>&1
ls -A /var/lib/etcd > /e2e/out/data_after_purge
journalctl -u etcd --no-pager > /e2e/out/journal 2>&1
echo done > /e2e/out/done
systemctl poweroff --no-block
"#;

#[test]
fn deb_upgrade_restarts_a_running_service_and_keeps_data_purge_keeps_data() {
    if !prerequisites() {
        return;
    }
    let (_work, out, diag) = boot(UPGRADE_SH);
    let r = |f: &str| read(&out, f);
    assert_eq!(r("done"), "done", "{diag}");
    assert_eq!(r("install.rc"), "0", "{diag}");
    assert_eq!(r("start.rc"), "0", "{diag}");
    assert_eq!(r("upgrade.rc"), "0", "{diag}");
    assert_eq!(r("version"), "0.1.1-1", "{diag}");
    assert_eq!(r("active"), "active", "{diag}");
    let (old, new) = (r("pid_old"), r("pid_new"));
    assert!(
        old != "0" && new != "0" && old != new,
        "not restarted: {old} -> {new}\n{diag}"
    );
    assert_eq!(r("get"), "v1", "upgrade lost the data\n{diag}");
    assert_eq!(r("reinstall.rc"), "0", "{diag}");
    assert_eq!(
        r("active_stopped"),
        "inactive",
        "a stopped service was started\n{diag}"
    );
    assert_eq!(r("purge.rc"), "0", "{diag}");
    assert!(r("config_after_purge").contains("No such file"), "{diag}");
    assert!(
        !r("data_after_purge").is_empty(),
        "purge deleted data\n{diag}"
    );
    assert!(
        r("purge").contains("/var/lib/etcd was kept"),
        "no message\n{diag}"
    );
}
