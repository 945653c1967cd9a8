//! etcdctl lease grant / keep-alive --once / timetolive / revoke / list, and
//! expiry deleting attached keys.

use std::time::{Duration, Instant};

use etcd_tests::EtcdProcess;

/// Parses "lease <16 hex digits> granted with TTL(<n>s)" and returns the
/// hex ID and TTL. Asserts the exact shape.
#[track_caller]
fn parse_grant(out: &str) -> (String, i64) {
    let line = out.strip_suffix('\n').unwrap_or(out);
    let rest = line
        .strip_prefix("lease ")
        .unwrap_or_else(|| panic!("unexpected grant output {out:?}"));
    let (id, rest) = rest
        .split_once(' ')
        .unwrap_or_else(|| panic!("unexpected grant output {out:?}"));
    assert_eq!(id.len(), 16, "lease ID printed as %016x: {out:?}");
    assert!(
        id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "lowercase hex: {out:?}"
    );
    let ttl = rest
        .strip_prefix("granted with TTL(")
        .and_then(|r| r.strip_suffix("s)"))
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or_else(|| panic!("unexpected grant output {out:?}"));
    (id.to_string(), ttl)
}

#[test]
fn lease_lifecycle() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let (id, ttl) = parse_grant(&etcd.etcdctl_ok(&["lease", "grant", "100"]));
    assert_eq!(ttl, 100);

    // The JSON form carries the same ID as a decimal number.
    let j = etcd.etcdctl_json(&["lease", "grant", "50", "-w", "json"]);
    let id2 = j["ID"].as_i64().expect("ID");
    assert!(id2 > 0);
    assert_eq!(j["TTL"].as_i64(), Some(50));
    let id2_hex = format!("{id2:016x}");

    let list = etcd.etcdctl_ok(&["lease", "list"]);
    let mut lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.remove(0), "found 2 leases");
    lines.sort_unstable();
    let mut expected = vec![id.as_str(), id2_hex.as_str()];
    expected.sort_unstable();
    assert_eq!(lines, expected);

    assert_eq!(etcd.etcdctl_ok(&["put", "lk1", "v1", "--lease", &id]), "OK\n");
    assert_eq!(etcd.etcdctl_ok(&["put", "lk2", "v2", "--lease", &id]), "OK\n");
    let j = etcd.etcdctl_json(&["get", "lk1", "-w", "json"]);
    assert_eq!(
        j["kvs"][0]["lease"].as_i64().map(|l| format!("{l:016x}")),
        Some(id.clone()),
        "key is attached to the lease: {j}"
    );

    // timetolive: remaining TTL is whole seconds just under the granted TTL.
    let out = etcd.etcdctl_ok(&["lease", "timetolive", &id]);
    let prefix = format!("lease {id} granted with TTL(100s), remaining(");
    let remaining: i64 = out
        .strip_prefix(&prefix)
        .and_then(|r| r.strip_suffix("s)\n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected timetolive output {out:?}"));
    assert!((95..=100).contains(&remaining), "remaining {remaining}");

    // Attached keys come in no particular order (etcd keeps them in a map).
    let out = etcd.etcdctl_ok(&["lease", "timetolive", &id, "--keys"]);
    assert!(
        out.starts_with(&prefix)
            && (out.ends_with("s), attached keys([lk1 lk2])\n")
                || out.ends_with("s), attached keys([lk2 lk1])\n")),
        "unexpected timetolive --keys output {out:?}"
    );
    let j = etcd.etcdctl_json(&["lease", "timetolive", &id, "--keys", "-w", "json"]);
    assert_eq!(j["granted-ttl"].as_i64(), Some(100));
    let mut keys: Vec<&str> = j["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["bGsx", "bGsy"], "{j}");

    assert_eq!(
        etcd.etcdctl_ok(&["lease", "keep-alive", "--once", &id]),
        format!("lease {id} keepalived with TTL(100)\n")
    );

    // Revoking deletes the attached keys.
    assert_eq!(
        etcd.etcdctl_ok(&["lease", "revoke", &id]),
        format!("lease {id} revoked\n")
    );
    assert_eq!(etcd.etcdctl_ok(&["get", "lk", "--prefix"]), "");
    assert_eq!(
        etcd.etcdctl_ok(&["lease", "timetolive", &id]),
        format!("lease {id} already expired\n")
    );
    let list = etcd.etcdctl_ok(&["lease", "list"]);
    assert_eq!(list, format!("found 1 leases\n{id2_hex}\n"));

    // Revoking again, or keeping alive a revoked lease, fails.
    let o = etcd.etcdctl(&["lease", "revoke", &id]);
    o.assert_failure();
    assert!(
        o.stderr.contains("etcdserver: requested lease not found"),
        "stderr: {}",
        o.stderr
    );
    let o = etcd.etcdctl(&["lease", "keep-alive", "--once", &id]);
    o.assert_failure();
    assert!(
        o.stderr.contains("etcdserver: requested lease not found"),
        "stderr: {}",
        o.stderr
    );
    Ok(())
}

#[test]
fn slow_lease_expiry_deletes_keys() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let (id, ttl) = parse_grant(&etcd.etcdctl_ok(&["lease", "grant", "2"]));
    assert_eq!(ttl, 2, "a 2 s TTL is at the default minimum and kept");
    let granted = Instant::now();
    etcd.etcdctl_ok(&["put", "ex1", "a", "--lease", &id]);
    etcd.etcdctl_ok(&["put", "ex2", "b", "--lease", &id]);
    etcd.etcdctl_ok(&["put", "keep", "c"]);
    assert_eq!(
        etcd.etcdctl_ok(&["get", "ex", "--prefix", "--keys-only"]),
        "ex1\n\nex2\n\n"
    );
    let rev_before = etcd.etcdctl_json(&["get", "keep", "-w", "json"])["header"]["revision"]
        .as_i64()
        .expect("revision");

    // Wait for expiry: the keys must be gone within a generous bound.
    let deadline = granted + Duration::from_secs(12);
    loop {
        let out = etcd.etcdctl_ok(&["get", "ex", "--prefix", "--keys-only"]);
        if out.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "keys still present {:?} after lease expiry",
            out
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        granted.elapsed() >= Duration::from_millis(1500),
        "keys vanished before the TTL could have run out ({:?})",
        granted.elapsed()
    );
    assert_eq!(etcd.etcdctl_ok(&["get", "keep"]), "keep\nc\n");
    // Both deletions happened in one revision.
    let rev_after = etcd.etcdctl_json(&["get", "keep", "-w", "json"])["header"]["revision"]
        .as_i64()
        .expect("revision");
    assert_eq!(rev_after, rev_before + 1, "expiry deletes all keys in one revision");
    assert_eq!(
        etcd.etcdctl_ok(&["lease", "timetolive", &id]),
        format!("lease {id} already expired\n")
    );
    Ok(())
}
