//! etcdctl member list, endpoint health/status/hashkv, alarm list, defrag,
//! snapshot save.

use etcd_tests::{only_36, EtcdProcess, Harness};

#[test]
fn member_list() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let j = etcd.etcdctl_json(&["member", "list", "-w", "json"]);
    let member_id = j["header"]["member_id"].as_u64().expect("member_id");
    let members = j["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{j}");
    let m = &members[0];
    assert_eq!(m["ID"].as_u64(), Some(member_id));
    assert_eq!(m["name"], "e2e");
    assert_eq!(m["peerURLs"], serde_json::json!([etcd.peer_url()]));
    assert_eq!(m["clientURLs"], serde_json::json!([etcd.client_url()]));
    assert!(m.get("isLearner").is_none(), "isLearner=false omitted: {j}");
    // Member responses carry no revision.
    assert!(j["header"].get("revision").is_none(), "{j}");

    assert_eq!(
        etcd.etcdctl_ok(&["member", "list"]),
        format!(
            "{member_id:x}, started, e2e, {}, {}, false\n",
            etcd.peer_url(),
            etcd.client_url()
        )
    );
    Ok(())
}

#[test]
fn endpoint_health() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let o = etcd.etcdctl(&["endpoint", "health"]);
    o.assert_success();
    // etcdctl 3.4 prints the verdict on stderr, 3.5+ on stdout.
    let text = if Harness::etcdctl_is_35_or_newer() {
        o.stdout.clone()
    } else {
        o.stderr.clone()
    };
    let prefix = format!(
        "{} is healthy: successfully committed proposal: took = ",
        etcd.endpoint()
    );
    assert!(
        text.lines().any(|l| l.starts_with(&prefix)),
        "unexpected health output: {}",
        o.combined()
    );
    let j = etcd.etcdctl_json(&["endpoint", "health", "-w", "json"]);
    assert_eq!(j[0]["endpoint"], etcd.endpoint());
    assert_eq!(j[0]["health"], serde_json::Value::Bool(true));

    // A dead endpoint is reported unhealthy with a non-zero exit.
    let mut etcd = etcd;
    etcd.kill9()?;
    let o = etcd.etcdctl(&[
        "endpoint",
        "health",
        "--dial-timeout=1s",
        "--command-timeout=2s",
    ]);
    o.assert_failure();
    assert!(
        o.combined()
            .contains(&format!("{} is unhealthy", etcd.endpoint())),
        "{}",
        o.combined()
    );
    Ok(())
}

#[test]
fn endpoint_status() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    etcd.etcdctl_ok(&["put", "k", "v"]);
    let j = etcd.etcdctl_json(&["endpoint", "status", "-w", "json"]);
    let entry = &j[0];
    assert_eq!(entry["Endpoint"], etcd.endpoint());
    let st = &entry["Status"];
    let member_id = st["header"]["member_id"].as_u64().expect("member_id");
    assert_eq!(st["header"]["revision"].as_i64(), Some(2));
    assert_eq!(
        st["leader"].as_u64(),
        Some(member_id),
        "single member leads: {j}"
    );
    assert!(st["dbSize"].as_i64().is_some_and(|s| s > 0), "{j}");
    assert!(st["raftTerm"].as_u64().is_some_and(|t| t >= 1), "{j}");
    let index = st["raftIndex"].as_u64().expect("raftIndex");
    assert!(index >= 2, "{j}");
    assert!(
        st["raftAppliedIndex"]
            .as_u64()
            .is_some_and(|a| a >= 1 && a <= index),
        "{j}"
    );
    assert!(st.get("errors").is_none(), "no errors: {j}");
    let version = st["version"].as_str().expect("version").to_string();
    only_36!("Status.version is 3.6.x", {
        assert!(version.starts_with("3.6."), "version {version}");
    });
    // storageVersion (field 11) is unknown to etcdctl 3.4's protobuf types; the gateway
    // test checks it.

    // Simple format: endpoint, member id, version, ..., leader flag, learner flag.
    let out = etcd.etcdctl_ok(&["endpoint", "status"]);
    let fields: Vec<&str> = out.trim_end().split(", ").collect();
    assert_eq!(fields[0], etcd.endpoint());
    assert_eq!(fields[1], format!("{member_id:x}"));
    assert_eq!(fields[2], version);
    assert!(
        fields.contains(&"true") && fields.contains(&"false"),
        "is-leader true, is-learner false: {out:?}"
    );
    Ok(())
}

/// `--endpoints=http://host:port` (the usual form in scripts and docs): etcdctl
/// 3.4's gRPC client then sends the whole URL as `:authority`, which the server
/// must accept as Go's HTTP/2 server does.
#[test]
fn endpoint_with_scheme() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let url = format!("--endpoints=http://{}", etcd.endpoint());
    let put = etcd_tests::extra::etcdctl_raw(&[&url, "put", "sk", "sv"]);
    assert_eq!(put.stdout, "OK\n", "put via {url}: {}", put.stderr);
    let st = etcd_tests::extra::etcdctl_raw(&[&url, "endpoint", "status"]);
    assert!(
        st.stdout
            .starts_with(&format!("http://{}, ", etcd.endpoint())),
        "endpoint status via {url}: {} {}",
        st.stdout,
        st.stderr
    );
    let get = etcd_tests::extra::etcdctl_raw(&[&url, "get", "sk", "--print-value-only"]);
    assert_eq!(get.stdout, "sv\n", "get via {url}: {}", get.stderr);
    Ok(())
}

#[test]
fn alarm_list_defrag_hashkv() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    etcd.etcdctl_ok(&["put", "k", "v"]);
    // No alarms: nothing printed.
    assert_eq!(etcd.etcdctl_ok(&["alarm", "list"]), "");
    assert_eq!(
        etcd.etcdctl_ok(&["defrag"]),
        format!("Finished defragmenting etcd member[{}]\n", etcd.endpoint())
    );
    // Data survives defragmentation.
    assert_eq!(etcd.etcdctl_ok(&["get", "k"]), "k\nv\n");

    // hashkv is stable while nothing changes, and changes with a write.
    let h1 = etcd.etcdctl_ok(&["endpoint", "hashkv"]);
    let h2 = etcd.etcdctl_ok(&["endpoint", "hashkv"]);
    assert!(h1.starts_with(&format!("{}, ", etcd.endpoint())), "{h1:?}");
    assert_eq!(h1, h2);
    etcd.etcdctl_ok(&["put", "k", "v2"]);
    let h3 = etcd.etcdctl_ok(&["endpoint", "hashkv"]);
    assert_ne!(h1, h3);
    Ok(())
}

#[test]
fn snapshot_save() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    for i in 0..20 {
        etcd.etcdctl_ok(&["put", &format!("snap{i}"), &"x".repeat(100)]);
    }
    let path = etcd.dir().join("backup.db");
    let p = path.to_str().expect("utf8 path");
    let o = etcd.etcdctl(&["snapshot", "save", p]);
    o.assert_success();
    assert!(
        o.stdout.contains(&format!("Snapshot saved at {p}")),
        "stdout: {}",
        o.stdout
    );
    let len = std::fs::metadata(&path)?.len();
    assert!(len > 0);
    // A bbolt file padded to 512 bytes plus a 32-byte sha256 trailer.
    assert_eq!(len % 512, 32, "snapshot size {len}");
    assert!(!etcd.dir().join("backup.db.part").exists());
    Ok(())
}
