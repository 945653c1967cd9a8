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

/// Writes `/k/00`..`/k/19` (then `/k/00` again, "changed") to the running cluster `c`,
/// saves a backup from member `from` with etcdctl and writes `/late` after it. Returns
/// the status before the backup, its revision and the backup's path.
fn write_and_back_up(
    c: &EtcdCluster,
    from: usize,
) -> Result<(serde_json::Value, i64, std::path::PathBuf)> {
    c.wait_for_leader(Duration::from_secs(15))?;
    for i in 0..20 {
        let o = c.etcdctl(0, &["put", &format!("/k/{i:02}"), &format!("v{i}")]);
        anyhow::ensure!(o.success(), "{o:?}");
    }
    let o = c.etcdctl(0, &["put", "/k/00", "changed"]);
    anyhow::ensure!(o.success(), "{o:?}");
    let old = status_json(c, 0)?;
    let revision = old["header"]["revision"].as_i64().context("revision")?;
    let snap = c.dir().join("backup.db");
    let o = c.etcdctl(from, &["snapshot", "save", snap.to_str().context("path")?]);
    anyhow::ensure!(o.success(), "{o:?}");
    // Written after the backup: gone after a restore.
    let o = c.etcdctl(0, &["put", "/late", "x"]);
    anyhow::ensure!(o.success(), "{o:?}");
    Ok((old, revision, snap))
}

#[test]
fn a_cluster_is_restored_from_a_saved_snapshot() -> Result<()> {
    if etcd_tests::Harness::is_reference() {
        eprintln!("skipped under the reference server: it cannot start from etcdutl's data dirs");
        return Ok(());
    }
    let mut c = EtcdCluster::start(ClusterOptions::new(3))?;
    let (old, revision, snap) = write_and_back_up(&c, 1)?;
    let snap_s = snap.to_str().context("path")?;

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

/// A client and a peer URL on free loopback ports.
fn loopback_urls() -> (String, String) {
    use etcd_tests::ports::free_port;
    let (client, peer) = (free_port(), free_port());
    (
        format!("http://127.0.0.1:{client}"),
        format!("http://127.0.0.1:{peer}"),
    )
}

/// Starts Debian's etcd 3.4 as the single member `ref` on `data_dir` (new, or restored
/// for `ref` at `peer_url` with the default cluster token).
fn start_reference(
    data_dir: &std::path::Path,
    client_url: &str,
    peer_url: &str,
) -> Result<std::process::Child> {
    let reference = std::path::Path::new("/usr/bin/etcd");
    anyhow::ensure!(
        reference.is_file(),
        "Debian's etcd-server is needed (scripts/deps.sh --test)"
    );
    let child = Command::new(reference)
        .args([
            "--name=ref",
            &format!("--data-dir={}", data_dir.display()),
            &format!("--listen-client-urls={client_url}"),
            &format!("--advertise-client-urls={client_url}"),
            &format!("--listen-peer-urls={peer_url}"),
            &format!("--initial-advertise-peer-urls={peer_url}"),
            &format!("--initial-cluster=ref={peer_url}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    Ok(child)
}

/// Moving from etcd: a backup taken from Debian's etcd 3.4 (`etcdctl snapshot save`, a
/// bbolt file) restored with `etcdutl snapshot restore` into a data dir this server
/// starts from: the keys with their revisions and versions, deletions, the lease, the
/// users (their passwords still work) and the auth flag carry over.
#[test]
fn a_backup_of_etcd_itself_is_restored() -> Result<()> {
    if etcd_tests::Harness::is_reference() {
        eprintln!("skipped under the reference server");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (client_url, peer_url) = loopback_urls();
    let mut etcd = start_reference(&dir.path().join("ref.etcd"), &client_url, &peer_url)?;
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

/// Moving back to etcd: a backup of this server (`etcdctl snapshot save`, etcd's bbolt
/// format) read by etcd 3.4's own `etcdctl snapshot status` and `snapshot restore`, and
/// Debian's etcd 3.4 started on the restored data dir serves the keys with their
/// revisions, versions and history, the compaction point, the lease, the users (their
/// passwords still work) and the auth flag.
#[test]
fn a_backup_of_this_server_is_restored_by_etcd_itself() -> Result<()> {
    if etcd_tests::Harness::is_reference() {
        eprintln!("skipped under the reference server: this is the test of ours");
        return Ok(());
    }
    let c = EtcdCluster::start(ClusterOptions::new(1))?;
    c.wait_for_leader(Duration::from_secs(15))?;
    let ok = |args: &[&str]| {
        let o = c.etcdctl(0, args);
        assert!(o.success(), "{args:?}: {o:?}");
        o
    };
    for i in 0..300 {
        ok(&[
            "put",
            &format!("/k/{i:03}"),
            &format!("v{i}-{}", "x".repeat(100)),
        ]);
    }
    ok(&["put", "/k/000", "changed"]);
    ok(&["del", "/k/001"]);
    // Compacted below revision 4: /k/002's value before it is gone for good.
    ok(&["put", "/k/002", "second"]);
    ok(&["compact", "4"]);
    let lease = ok(&["lease", "grant", "900"]).stdout;
    let lease = lease
        .split_whitespace()
        .nth(1)
        .context("lease id")?
        .to_string();
    ok(&["put", "/leased", "x", &format!("--lease={lease}")]);
    ok(&["user", "add", "root:rootpw"]);
    ok(&["role", "add", "reader"]);
    ok(&[
        "role",
        "grant-permission",
        "reader",
        "read",
        "/k/",
        "--prefix=true",
    ]);
    ok(&["user", "add", "alice:alicepw"]);
    ok(&["user", "grant-role", "alice", "reader"]);
    ok(&["auth", "enable"]);
    let root = ["--user", "root:rootpw"];
    let as_root = |args: &[&str]| {
        let a: Vec<&str> = args.iter().chain(&root).copied().collect();
        ok(&a)
    };
    let revision = as_root(&["endpoint", "status", "-w", "json"]).json()[0]["Status"]["header"]
        ["revision"]
        .as_i64()
        .context("revision")?;
    let snap = c.dir().join("ours.db");
    let snap_s = snap.to_str().context("path")?;
    as_root(&["snapshot", "save", snap_s]);

    // etcd 3.4's etcdctl reads the file (bbolt, its digest) and finds the revision.
    let dir = tempfile::tempdir()?;
    let (client_url, peer_url) = loopback_urls();
    let ctl = |args: &[&str]| etcd_tests::etcdctl::run(&client_url, args, None);
    let o = ctl(&["snapshot", "status", snap_s, "-w", "json"]);
    assert!(o.success(), "{o:?}");
    let st = o.json();
    assert_eq!(st["revision"].as_i64(), Some(revision), "{st}");
    assert!(st["totalKey"].as_i64() > Some(300), "{st}");
    let data = dir.path().join("ref.etcd");
    let o = ctl(&[
        "snapshot",
        "restore",
        snap_s,
        "--name=ref",
        &format!("--initial-cluster=ref={peer_url}"),
        &format!("--initial-advertise-peer-urls={peer_url}"),
        &format!("--data-dir={}", data.display()),
    ]);
    assert!(o.success(), "{o:?}");

    let mut etcd = start_reference(&data, &client_url, &peer_url)?;
    let checked = (|| -> Result<()> {
        let as_root = |args: &[&str]| {
            let a: Vec<&str> = args.iter().chain(&root).copied().collect();
            ctl(&a)
        };
        poll(
            "etcd 3.4 serves the restored data",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || {
                anyhow::ensure!(as_root(&["get", "/k/000"]).success(), "not yet");
                Ok(())
            },
        )?;
        // Auth came along: no user, no access; the passwords and the role work.
        let o = ctl(&["get", "/k/000"]);
        assert!(o.combined().contains("user name is empty"), "{o:?}");
        let o = ctl(&[
            "--user",
            "alice:alicepw",
            "get",
            "/k/003",
            "--print-value-only",
        ]);
        assert!(o.stdout.starts_with("v3-"), "{o:?}");
        let o = ctl(&["--user", "alice:alicepw", "put", "/k/003", "no"]);
        assert!(o.combined().contains("permission denied"), "{o:?}");
        let o = as_root(&["get", "/k/", "--prefix", "-w", "json", "--keys-only"]);
        assert!(o.success(), "{o:?}");
        let j = o.json();
        assert_eq!(j["header"]["revision"].as_i64(), Some(revision), "{j}");
        assert_eq!(j["count"].as_i64(), Some(299), "{j}");
        let first = &j["kvs"][0];
        assert_eq!(first["version"].as_i64(), Some(2), "{first}");
        assert_eq!(first["create_revision"].as_i64(), Some(2), "{first}");
        // History after the compaction point, and the compaction point itself.
        let o = as_root(&["get", "/k/001", "--rev=302", "--print-value-only"]);
        assert!(o.stdout.starts_with("v1-"), "{o:?}");
        let o = as_root(&["get", "/k/002", "--rev=3"]);
        assert!(
            o.combined()
                .contains("required revision has been compacted"),
            "{o:?}"
        );
        // The lease and its key.
        let o = as_root(&["lease", "list"]);
        assert!(o.stdout.contains("found 1 leases"), "{o:?}");
        assert!(o.stdout.contains(&lease), "{o:?}");
        let o = as_root(&["get", "/leased", "--print-value-only"]);
        assert_eq!(o.stdout.trim(), "x", "{o:?}");
        // Writes go on from the backup's revision.
        let o = as_root(&["put", "/after", "y", "-w", "json"]);
        assert!(o.success(), "{o:?}");
        assert_eq!(o.json()["header"]["revision"].as_i64(), Some(revision + 1));
        Ok(())
    })();
    let _ = etcd.kill();
    let _ = etcd.wait();
    checked
}

/// Recovery with etcd's own tools (as kubespray's lost-quorum recovery does): every
/// member lost, each data dir made by etcd 3.4's `etcdctl snapshot restore` (etcd's
/// layout: `member/snap/db` and an etcd WAL with the new membership), and this server
/// started on them adopts them at its first start: a new cluster serving the backup's
/// keys; etcd's files are set aside, not deleted; later starts are plain restarts.
#[test]
fn data_dirs_restored_by_etcds_own_etcdctl_are_adopted() -> Result<()> {
    if etcd_tests::Harness::is_reference() {
        eprintln!("skipped under the reference server: this is the test of ours");
        return Ok(());
    }
    let mut c = EtcdCluster::start(ClusterOptions::new(3))?;
    let (old, revision, snap) = write_and_back_up(&c, 0)?;
    let snap_s = snap.to_str().context("path")?;

    for i in 0..3 {
        c.sigterm(i)?;
        let data = c.member_dir(i).join("data");
        std::fs::remove_dir_all(&data)?;
        let o = etcd_tests::etcdctl::run(
            "http://127.0.0.1:1",
            &[
                "snapshot",
                "restore",
                snap_s,
                &format!("--name={}", c.name(i)),
                &format!("--initial-cluster={}", c.initial_cluster()),
                "--initial-cluster-token=restored-by-etcd",
                &format!("--initial-advertise-peer-urls={}", c.peer_url(i)),
                &format!("--data-dir={}", data.display()),
            ],
            None,
        );
        assert!(o.success(), "{o:?}");
        assert!(data.join("member").join("snap").join("db").is_file());
    }
    for i in 0..3 {
        c.spawn(i)?;
    }
    c.wait_all_ready(&[0, 1, 2], Duration::from_secs(30))?;
    c.wait_for_leader(Duration::from_secs(15))?;
    let new = status_json(&c, 0)?;
    assert_ne!(new["header"]["cluster_id"], old["header"]["cluster_id"]);
    for i in 0..3 {
        let member = c.member_dir(i).join("data").join("member");
        assert!(member.join("snap.etcd-imported").join("db").is_file());
        assert!(member.join("wal.etcd-imported").is_dir());
        assert!(!member.join("snap").exists());
        let o = c.etcdctl(i, &["get", "/k/", "--prefix", "--keys-only", "-w", "json"]);
        assert!(o.success(), "{o:?}");
        assert_eq!(o.json()["count"].as_i64(), Some(20), "{o:?}");
        assert_eq!(c.get_value(i, "/k/00", "l")?.as_deref(), Some("changed"));
        assert_eq!(c.get_value(i, "/late", "l")?, None);
    }
    let o = c.etcdctl(0, &["member", "list"]);
    assert!(o.success(), "{o:?}");
    assert_eq!(o.stdout.lines().count(), 3, "{o:?}");
    let o = c.etcdctl(1, &["put", "/after", "y", "-w", "json"]);
    assert!(o.success(), "{o:?}");
    let rev = o.json()["header"]["revision"].as_i64().context("rev")?;
    assert_eq!(rev, revision + 1);
    // A later start is a plain restart of this server's own data.
    c.sigterm(2)?;
    c.spawn(2)?;
    c.wait_all_ready(&[2], Duration::from_secs(30))?;
    poll(
        "the restarted member has the write",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let v = c.get_value(2, "/after", "s")?;
            anyhow::ensure!(v.as_deref() == Some("y"), "{v:?}");
            Ok(())
        },
    )?;
    Ok(())
}

/// A running etcd member's data dir (its WAL holds writes, not just a restore's member
/// additions) is refused with a message naming the way, and left as it was.
#[test]
fn a_live_etcd_data_dir_is_refused_and_left_alone() -> Result<()> {
    if etcd_tests::Harness::is_reference() {
        eprintln!("skipped under the reference server: this is the test of ours");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("ref.etcd");
    let (client_url, peer_url) = loopback_urls();
    let mut etcd = start_reference(&data, &client_url, &peer_url)?;
    let wrote = poll(
        "etcd 3.4 takes a write",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let o = etcd_tests::etcdctl::run(&client_url, &["put", "/k", "v"], None);
            anyhow::ensure!(o.success(), "{o:?}");
            Ok(())
        },
    );
    let _ = etcd.kill();
    let _ = etcd.wait();
    wrote?;
    let before = std::fs::read(data.join("member").join("snap").join("db"))?;
    let o = Command::new(etcd_tests::bins::etcd_bin())
        .args([
            "--name=ref",
            &format!("--data-dir={}", data.display()),
            &format!("--listen-client-urls={client_url}"),
            &format!("--advertise-client-urls={client_url}"),
            &format!("--listen-peer-urls={peer_url}"),
            &format!("--initial-advertise-peer-urls={peer_url}"),
            &format!("--initial-cluster=ref={peer_url}"),
        ])
        .output()?;
    assert!(!o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot be adopted in place"), "{err}");
    assert!(err.contains("etcdctl snapshot save"), "{err}");
    let member = data.join("member");
    assert_eq!(std::fs::read(member.join("snap").join("db"))?, before);
    assert!(member.join("wal").is_dir());
    assert!(!member.join("db").exists());
    assert!(!member.join("snap.etcd-imported").exists());
    Ok(())
}
