//! Disaster recovery as operators do it: `etcdctl snapshot save` from a running member,
//! every member lost, `etcdutl snapshot restore` of that file into a fresh data dir for
//! each member (with a new cluster token), the members started on them: a new cluster
//! (new member and cluster IDs) serving the saved keys, taking writes, on every member.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use etcd_tests::bins::etcdutl_bin;
use etcd_tests::cluster::{poll, ClusterOptions, EtcdCluster};

fn etcdutl(args: &[&str]) -> Result<std::process::Output> {
    let bin = etcdutl_bin();
    Command::new(&bin)
        .args(args)
        .output()
        .with_context(|| format!("run {}", bin.display()))
}

/// `etcdutl snapshot restore` of `snap` into member `i`'s data dir, for a new cluster of
/// `c`'s members with `token`.
fn restore_member(c: &EtcdCluster, i: usize, snap: &str, token: &str) -> Result<()> {
    let data = c.member_dir(i).join("data");
    let o = etcdutl(&[
        "snapshot",
        "restore",
        snap,
        "--name",
        c.name(i),
        "--initial-cluster",
        &c.initial_cluster(),
        "--initial-cluster-token",
        token,
        "--initial-advertise-peer-urls",
        &c.peer_url(i),
        "--data-dir",
        data.to_str().context("path")?,
    ])?;
    anyhow::ensure!(o.status.success(), "{o:?}");
    Ok(())
}

fn status_json(c: &EtcdCluster, i: usize) -> Result<serde_json::Value> {
    let o = c.etcdctl(i, &["endpoint", "status", "-w", "json"]);
    anyhow::ensure!(o.success(), "{o:?}");
    Ok(o.json()[0]["Status"].clone())
}

#[test]
fn a_cluster_is_restored_from_a_saved_snapshot() -> Result<()> {
    if etcd_tests::Harness::is_reference() {
        eprintln!("skipped under the reference server: its snapshots are bbolt files");
        return Ok(());
    }
    let mut c = EtcdCluster::start(ClusterOptions::new(3))?;
    c.wait_for_leader(Duration::from_secs(15))?;
    for i in 0..20 {
        let o = c.etcdctl(0, &["put", &format!("/k/{i:02}"), &format!("v{i}")]);
        assert!(o.success(), "{o:?}");
    }
    let o = c.etcdctl(0, &["put", "/k/00", "changed"]);
    assert!(o.success(), "{o:?}");
    let old = status_json(&c, 0)?;
    let revision = old["header"]["revision"].as_i64().context("revision")?;
    let snap = c.dir().join("backup.db");
    let snap_s = snap.to_str().context("path")?;
    let o = c.etcdctl(1, &["snapshot", "save", snap_s]);
    assert!(o.success(), "{o:?}");
    // Written after the backup: gone after the restore.
    let o = c.etcdctl(0, &["put", "/late", "x"]);
    assert!(o.success(), "{o:?}");

    let o = etcdutl(&["snapshot", "status", snap_s, "-w", "json"])?;
    assert!(o.status.success(), "{o:?}");
    let st: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(st["revision"].as_i64(), Some(revision), "{st}");

    // A damaged copy is refused and writes nothing.
    let mut bytes = std::fs::read(&snap)?;
    bytes[1000] ^= 0xff;
    let bad = c.dir().join("bad.db");
    std::fs::write(&bad, &bytes)?;
    let bad_dir = c.dir().join("bad.etcd");
    let o = etcdutl(&[
        "snapshot",
        "restore",
        bad.to_str().context("path")?,
        "--data-dir",
        bad_dir.to_str().context("path")?,
    ])?;
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("snapshot file integrity check failed"),
        "{o:?}"
    );
    assert!(!bad_dir.exists());

    // Every member is lost.
    for i in 0..3 {
        c.sigterm(i)?;
        std::fs::remove_dir_all(c.member_dir(i).join("data"))?;
    }
    for i in 0..3 {
        restore_member(&c, i, snap_s, "restored-1")?;
    }
    for i in 0..3 {
        c.spawn(i)?;
    }
    c.wait_all_ready(&[0, 1, 2], Duration::from_secs(30))?;
    c.wait_for_leader(Duration::from_secs(15))?;

    let new = status_json(&c, 0)?;
    assert_ne!(
        new["header"]["cluster_id"], old["header"]["cluster_id"],
        "a new cluster"
    );
    for i in 0..3 {
        let o = c.etcdctl(i, &["get", "/k/", "--prefix", "--keys-only"]);
        assert!(o.success(), "{o:?}");
        assert_eq!(
            o.stdout.lines().filter(|l| !l.is_empty()).count(),
            20,
            "{o:?}"
        );
        let v = c.get_value(i, "/k/00", "l")?;
        assert_eq!(v.as_deref(), Some("changed"));
        assert_eq!(c.get_value(i, "/late", "l")?, None);
    }
    // Revisions go on from the snapshot's.
    let o = c.etcdctl(2, &["put", "/after", "y", "-w", "json"]);
    assert!(o.success(), "{o:?}");
    let rev = o.json()["header"]["revision"]
        .as_i64()
        .context("revision")?;
    assert!(rev > revision, "{rev} after {revision}");
    poll(
        "every member has the new write",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            for i in 0..3 {
                let v = c.get_value(i, "/after", "s")?;
                anyhow::ensure!(v.as_deref() == Some("y"), "member {i}: {v:?}");
            }
            Ok(())
        },
    )?;
    let o = c.etcdctl(0, &["member", "list"]);
    assert!(o.success(), "{o:?}");
    assert_eq!(o.stdout.lines().count(), 3, "{o:?}");
    Ok(())
}

/// Moving from etcd: a backup taken from Debian's etcd 3.4 (`etcdctl snapshot save`, a
/// bbolt file) restored with `etcdutl snapshot restore` into a data dir this server
/// starts from: the keys with their revisions and versions, deletions, the lease, the
/// users (their passwords still work) and the auth flag carry over.
#[test]
fn a_backup_of_etcd_itself_is_restored() -> Result<()> {
    use etcd_tests::ports::free_port;
    if etcd_tests::Harness::is_reference() {
        eprintln!("skipped under the reference server");
        return Ok(());
    }
    let reference = std::path::Path::new("/usr/bin/etcd");
    anyhow::ensure!(
        reference.is_file(),
        "Debian's etcd-server is needed (scripts/deps.sh --test)"
    );
    let dir = tempfile::tempdir()?;
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut etcd = Command::new(reference)
        .args([
            "--name=ref",
            &format!("--data-dir={}", dir.path().join("ref.etcd").display()),
            &format!("--listen-client-urls={client_url}"),
            &format!("--advertise-client-urls={client_url}"),
            &format!("--listen-peer-urls={peer_url}"),
            &format!("--initial-advertise-peer-urls={peer_url}"),
            &format!("--initial-cluster=ref={peer_url}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let ctl = |args: &[&str]| etcd_tests::etcdctl::run(&client_url, args, None);
    let saved = (|| -> Result<(i64, String)> {
        poll(
            "etcd 3.4 serves",
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                anyhow::ensure!(ctl(&["endpoint", "health"]).success(), "not yet");
                Ok(())
            },
        )?;
        for i in 0..50 {
            ctl(&["put", &format!("/k/{i:02}"), &format!("v{i}")]).assert_success();
        }
        ctl(&["put", "/k/00", "changed"]).assert_success();
        ctl(&["del", "/k/01"]).assert_success();
        let lease = ctl(&["lease", "grant", "900"]).ok();
        let lease = lease.split_whitespace().nth(1).unwrap_or("").to_string();
        ctl(&["put", "/leased", "x", &format!("--lease={lease}")]).assert_success();
        ctl(&["user", "add", "root:rootpw"]).assert_success();
        ctl(&["auth", "enable"]).assert_success();
        let o = ctl(&["--user", "root:rootpw", "endpoint", "status", "-w", "json"]);
        let rev = o.json()[0]["Status"]["header"]["revision"]
            .as_i64()
            .context("revision")?;
        let snap = dir.path().join("etcd-backup.db");
        let snap_s = snap.to_str().context("path")?.to_string();
        ctl(&["--user", "root:rootpw", "snapshot", "save", &snap_s]).assert_success();
        Ok((rev, snap_s))
    })();
    let _ = etcd.kill();
    let _ = etcd.wait();
    let (revision, snap) = saved?;

    let o = etcdutl(&["snapshot", "status", &snap, "-w", "json"])?;
    assert!(o.status.success(), "{o:?}");
    let st: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(st["revision"].as_i64(), Some(revision), "{st}");

    let mut c = EtcdCluster::prepare(ClusterOptions::new(1))?;
    let token = c.token().to_string();
    restore_member(&c, 0, &snap, &token)?;
    c.spawn(0)?;
    let root = ["--user", "root:rootpw"];
    let as_root = |args: &[&str]| {
        let a: Vec<&str> = args.iter().chain(&root).copied().collect();
        c.etcdctl(0, &a)
    };
    poll(
        "the restored member serves root",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            anyhow::ensure!(as_root(&["get", "/k/00"]).success(), "not yet");
            Ok(())
        },
    )?;
    // Auth came along: no user, no access; root's etcd password works.
    let o = c.etcdctl(0, &["get", "/k/00"]);
    assert!(
        o.combined().contains("etcdserver: user name is empty"),
        "{o:?}"
    );
    let o = as_root(&["get", "/k/", "--prefix", "-w", "json"]);
    assert!(o.success(), "{o:?}");
    let j = o.json();
    assert_eq!(j["header"]["revision"].as_i64(), Some(revision));
    assert_eq!(j["count"].as_i64(), Some(49), "{j}");
    let kvs = j["kvs"].as_array().context("kvs")?;
    let first = &kvs[0];
    assert_eq!(
        first["version"].as_i64(),
        Some(2),
        "/k/00 was written twice: {first}"
    );
    assert_eq!(first["create_revision"].as_i64(), Some(2), "{first}");
    // History: the value before the change, and the deleted key before its deletion.
    let o = as_root(&["get", "/k/01", "--rev=3", "--print-value-only"]);
    assert_eq!(o.stdout.trim(), "v1", "{o:?}");
    assert!(as_root(&["get", "/k/01", "--print-value-only"])
        .stdout
        .trim()
        .is_empty());
    // The lease and its key.
    let o = as_root(&["lease", "list"]);
    assert!(o.stdout.contains("found 1 leases"), "{o:?}");
    assert_eq!(
        as_root(&["get", "/leased", "--print-value-only"])
            .stdout
            .trim(),
        "x"
    );
    // Writes go on from the backup's revision.
    let o = as_root(&["put", "/after", "y", "-w", "json"]);
    assert!(o.success(), "{o:?}");
    assert_eq!(o.json()["header"]["revision"].as_i64(), Some(revision + 1));
    Ok(())
}
