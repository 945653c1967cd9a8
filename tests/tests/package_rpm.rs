//! The rpm built by cargo-generate-rpm from `etcd/Cargo.toml` (`[package.metadata.generate-rpm]`):
//! `rpm -qip`, `rpm -qlp` and `rpm -qp --scripts` show the files, `%config(noreplace)` flags and
//! the written-out systemd scriptlets; `rpmlint` (with `packaging/rpm/rpmlintrc.toml`) reports
//! no errors; the scriptlets (and the deb maintainer scripts) pass `shellcheck`.
//!
//! Needs `cargo-generate-rpm`, `rpm`, `rpmlint` and `shellcheck` (`scripts/deps.sh --test`). The
//! rpm holds the workspace's debug binaries, stripped (see packaging/README.md).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use etcd_tests::bins::etcd_bin;

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

fn require(tool: &str, probe: &[&str]) {
    let ok = Command::new(tool)
        .args(probe)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "{tool} missing: bash scripts/deps.sh --test");
}

/// Builds the rpm from stripped copies of this build's binaries.
fn build_rpm(dir: &Path) -> PathBuf {
    let release = dir.join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    let etcd = etcd_bin();
    let provision = etcd.parent().unwrap().join("etcd-provision");
    let etcdutl = etcd.with_file_name("etcdutl");
    for (src, name) in [
        (&etcd, "etcd"),
        (&etcdutl, "etcdutl"),
        (&provision, "etcd-provision"),
    ] {
        run(Command::new("strip")
            .arg("-o")
            .arg(release.join(name))
            .arg(src));
    }
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    run(Command::new("cargo")
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .args(["generate-rpm", "-p", "etcd", "-o"])
        .arg(&out));
    let rpm = out.join(format!("etcd-{}-1.x86_64.rpm", env!("CARGO_PKG_VERSION")));
    assert!(rpm.is_file(), "{} not built", rpm.display());
    rpm
}

#[test]
fn rpm_has_the_files_config_flags_and_scriptlets_and_passes_rpmlint_and_shellcheck() {
    require("cargo", &["generate-rpm", "--version"]);
    require("rpm", &["--version"]);
    require("rpmlint", &["--version"]);
    require("shellcheck", &["--version"]);
    let dir = tempfile::Builder::new()
        .prefix("package-rpm.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let rpm = build_rpm(dir.path());

    let info = run(Command::new("rpm").arg("-qip").arg(&rpm));
    for want in [
        "Name        : etcd",
        &format!("Version     : {}", env!("CARGO_PKG_VERSION")),
        "License     : Apache-2.0",
        "Architecture: x86_64",
        "Summary     : An etcd v3 compatible key-value store",
    ] {
        assert!(info.contains(want), "rpm -qip lacks {want:?}:\n{info}");
    }

    let list = run(Command::new("rpm").arg("-qlp").arg(&rpm));
    for f in [
        "/usr/bin/etcd",
        "/usr/bin/etcdutl",
        "/usr/bin/etcd-provision",
        "/usr/lib/systemd/system/etcd.service",
        "/etc/etcd/etcd.toml",
        "/etc/default/etcd",
    ] {
        assert!(list.lines().any(|l| l == f), "rpm -qlp lacks {f}:\n{list}");
    }

    // %config(noreplace): file flags c (config) and n (noreplace).
    let flags = run(Command::new("rpm")
        .args([
            "-qp",
            "--qf",
            "[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:perms}\n]",
        ])
        .arg(&rpm));
    for want in [
        "/etc/etcd/etcd.toml cn -rw-r--r--",
        "/etc/default/etcd cn -rw-r--r--",
        "/usr/bin/etcd  -rwxr-xr-x",
    ] {
        assert!(flags.lines().any(|l| l == want), "no {want:?}:\n{flags}");
    }

    let scripts = run(Command::new("rpm").args(["-qp", "--scripts"]).arg(&rpm));
    for want in [
        "preinstall scriptlet",
        "useradd -r -g etcd -d /var/lib/etcd",
        "postinstall scriptlet",
        "chmod 0700 /var/lib/etcd",
        "systemctl --no-reload preset etcd.service",
        "preuninstall scriptlet",
        "systemctl --no-reload disable --now etcd.service",
        "postuninstall scriptlet",
        "systemctl try-restart etcd.service",
    ] {
        assert!(
            scripts.contains(want),
            "scriptlets lack {want:?}:\n{scripts}"
        );
    }
    // Never started on install.
    assert!(!scripts.contains("systemctl start"), "{scripts}");

    let lint = Command::new("rpmlint")
        .arg("-c")
        .arg(workspace_root().join("packaging/rpm/rpmlintrc.toml"))
        .arg(&rpm)
        .output()
        .unwrap();
    assert!(
        lint.status.success() && text(&lint).contains(" 0 errors"),
        "rpmlint:\n{}",
        text(&lint)
    );

    let root = workspace_root();
    let mut sc = Command::new("shellcheck");
    sc.args(["-s", "sh"]);
    for f in [
        "packaging/rpm/pre-install.sh",
        "packaging/rpm/post-install.sh",
        "packaging/rpm/pre-uninstall.sh",
        "packaging/rpm/post-uninstall.sh",
        "packaging/debian/postinst",
        "packaging/debian/postrm",
    ] {
        sc.arg(root.join(f));
    }
    run(&mut sc);
}
