//! etcdctl put / get / del: exact output of the simple and JSON printers.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use etcd_tests::{EtcdProcess, Harness};
use serde_json::Value;

fn b64(s: &str) -> String {
    B64.encode(s)
}

/// `v[path...]` as i64, panicking with the document when absent.
#[track_caller]
fn int(v: &Value, path: &[&str]) -> i64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_i64()
        .unwrap_or_else(|| panic!("{path:?} is not an integer in {v}"))
}

/// The `(key, value)` pairs of a `get -w json` document, decoded.
fn kv_pairs(v: &Value) -> Vec<(String, String)> {
    v["kvs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|kv| {
                    let dec = |f: &str| {
                        let s = kv[f].as_str().unwrap_or("");
                        String::from_utf8(B64.decode(s).expect("base64")).expect("utf8")
                    };
                    (dec("key"), dec("value"))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn put_get_simple_and_json() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    // A fresh store is at revision 1; the first write makes revision 2.
    assert_eq!(etcd.etcdctl_ok(&["put", "foo", "bar"]), "OK\n");
    assert_eq!(etcd.etcdctl_ok(&["get", "foo"]), "foo\nbar\n");
    assert_eq!(etcd.etcdctl_ok(&["get", "missing"]), "");
    assert_eq!(etcd.etcdctl_ok(&["get", "foo", "--print-value-only"]), "bar\n");

    let j = etcd.etcdctl_json(&["get", "foo", "-w", "json"]);
    assert_eq!(int(&j, &["header", "revision"]), 2);
    assert!(j["header"]["cluster_id"].as_u64().is_some_and(|c| c != 0), "{j}");
    assert!(j["header"]["member_id"].as_u64().is_some_and(|m| m != 0), "{j}");
    assert!(int(&j, &["header", "raft_term"]) >= 1, "{j}");
    assert_eq!(int(&j, &["count"]), 1);
    let kv = &j["kvs"][0];
    assert_eq!(kv["key"], b64("foo"));
    assert_eq!(kv["value"], b64("bar"));
    assert_eq!(int(kv, &["create_revision"]), 2);
    assert_eq!(int(kv, &["mod_revision"]), 2);
    assert_eq!(int(kv, &["version"]), 1);
    assert!(kv.get("lease").is_none(), "no lease field for lease 0: {kv}");
    assert!(j.get("more").is_none(), "more=false is omitted: {j}");

    // Overwrite: version 2, same create revision, new mod revision; --prev-kv
    // prints the previous pair after OK.
    assert_eq!(
        etcd.etcdctl_ok(&["put", "foo", "baz", "--prev-kv"]),
        "OK\nfoo\nbar\n"
    );
    let j = etcd.etcdctl_json(&["get", "foo", "-w", "json"]);
    let kv = &j["kvs"][0];
    assert_eq!(kv["value"], b64("baz"));
    assert_eq!(
        (
            int(kv, &["create_revision"]),
            int(kv, &["mod_revision"]),
            int(kv, &["version"])
        ),
        (2, 3, 2)
    );
    assert_eq!(int(&j, &["header", "revision"]), 3);

    // put -w json carries the new revision and, with --prev-kv, the old pair.
    let j = etcd.etcdctl_json(&["put", "foo", "qux", "--prev-kv", "-w", "json"]);
    assert_eq!(int(&j, &["header", "revision"]), 4);
    assert_eq!(j["prev_kv"]["value"], b64("baz"));
    assert_eq!(int(&j["prev_kv"], &["mod_revision"]), 3);
    assert_eq!(int(&j["prev_kv"], &["version"]), 2);

    // Reading an empty range: header only, count 0 omitted.
    let j = etcd.etcdctl_json(&["get", "nothing-here", "-w", "json"]);
    assert!(j.get("kvs").is_none() && j.get("count").is_none(), "{j}");
    assert_eq!(int(&j, &["header", "revision"]), 4);

    // Values with spaces and empty values survive.
    assert_eq!(etcd.etcdctl_ok(&["put", "spaced", "a b  c"]), "OK\n");
    assert_eq!(etcd.etcdctl_ok(&["get", "spaced"]), "spaced\na b  c\n");
    assert_eq!(etcd.etcdctl_ok(&["put", "empty", ""]), "OK\n");
    assert_eq!(etcd.etcdctl_ok(&["get", "empty"]), "empty\n\n");
    Ok(())
}

fn seed_ranges(etcd: &EtcdProcess) {
    // Revisions: a1=2, a2=3, a3=4, b1=5, a2 again=6 (value "z"), c=7.
    for (k, v) in [
        ("a1", "3"),
        ("a2", "1"),
        ("a3", "2"),
        ("b1", "0"),
        ("a2", "z"),
        ("c", "9"),
    ] {
        assert_eq!(etcd.etcdctl_ok(&["put", k, v]), "OK\n");
    }
}

#[test]
fn get_prefix_from_key_range_limit() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    seed_ranges(&etcd);
    assert_eq!(
        etcd.etcdctl_ok(&["get", "a", "--prefix"]),
        "a1\n3\na2\nz\na3\n2\n"
    );
    assert_eq!(
        etcd.etcdctl_ok(&["get", "a2", "--from-key"]),
        "a2\nz\na3\n2\nb1\n0\nc\n9\n"
    );
    // Explicit [key, range_end).
    assert_eq!(etcd.etcdctl_ok(&["get", "a1", "a3"]), "a1\n3\na2\nz\n");
    assert_eq!(etcd.etcdctl_ok(&["get", "a3", "a1"]), "", "range_end <= key is empty");
    // Limit truncates; JSON shows more=true and count = the whole range.
    assert_eq!(
        etcd.etcdctl_ok(&["get", "a", "--prefix", "--limit", "2"]),
        "a1\n3\na2\nz\n"
    );
    let j = etcd.etcdctl_json(&["get", "a", "--prefix", "--limit", "2", "-w", "json"]);
    assert_eq!(j["more"], Value::Bool(true));
    assert_eq!(int(&j, &["count"]), 3);
    assert_eq!(j["kvs"].as_array().map(Vec::len), Some(2));
    // A limit that covers everything: more is false (omitted).
    let j = etcd.etcdctl_json(&["get", "a", "--prefix", "--limit", "3", "-w", "json"]);
    assert!(j.get("more").is_none(), "{j}");
    assert_eq!(int(&j, &["count"]), 3);
    // Keys only: key, then an empty value line.
    assert_eq!(
        etcd.etcdctl_ok(&["get", "a", "--prefix", "--keys-only"]),
        "a1\n\na2\n\na3\n\n"
    );
    let j = etcd.etcdctl_json(&["get", "a", "--prefix", "--keys-only", "-w", "json"]);
    assert!(
        j["kvs"]
            .as_array()
            .is_some_and(|a| a.iter().all(|kv| kv.get("value").is_none())),
        "keys-only JSON has no values: {j}"
    );
    assert_eq!(
        etcd.etcdctl_ok(&["get", "a", "--prefix", "--print-value-only"]),
        "3\nz\n2\n"
    );
    // Empty prefix = everything.
    assert_eq!(
        etcd.etcdctl_ok(&["get", "", "--prefix", "--keys-only"]),
        "a1\n\na2\n\na3\n\nb1\n\nc\n\n"
    );

    // --count-only exists in etcdctl 3.5+; the API test covers count_only
    // for older etcdctl.
    if Harness::etcdctl_is_35_or_newer() {
        let j = etcd.etcdctl_json(&["get", "a", "--prefix", "--count-only", "-w", "json"]);
        assert_eq!(int(&j, &["count"]), 3);
        assert!(j.get("kvs").is_none(), "{j}");
    }
    Ok(())
}

#[test]
fn get_sort_by_and_order() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    seed_ranges(&etcd);
    let keys = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["get", "a", "--prefix", "-w", "json"];
        a.extend_from_slice(args);
        kv_pairs(&etcd.etcdctl_json(&a))
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(keys(&["--order", "DESCEND"]), ["a3", "a2", "a1"]);
    assert_eq!(keys(&["--sort-by", "KEY", "--order", "ASCEND"]), ["a1", "a2", "a3"]);
    // Values: a1=3, a2=z, a3=2.
    assert_eq!(keys(&["--sort-by", "VALUE"]), ["a3", "a1", "a2"]);
    assert_eq!(keys(&["--sort-by", "VALUE", "--order", "DESCEND"]), ["a2", "a1", "a3"]);
    // Mod revisions: a1=2, a3=4, a2=6.
    assert_eq!(keys(&["--sort-by", "MODIFY"]), ["a1", "a3", "a2"]);
    assert_eq!(keys(&["--sort-by", "MODIFY", "--order", "DESCEND"]), ["a2", "a3", "a1"]);
    // Create revisions: a1=2, a2=3, a3=4.
    assert_eq!(keys(&["--sort-by", "CREATE", "--order", "DESCEND"]), ["a3", "a2", "a1"]);
    // Versions: a2=2, others 1; ties keep key order.
    assert_eq!(keys(&["--sort-by", "VERSION", "--order", "DESCEND"])[0], "a2");
    assert_eq!(keys(&["--sort-by", "VERSION", "--order", "ASCEND"])[2], "a2");
    // Sorting happens before the limit.
    assert_eq!(
        etcd.etcdctl_ok(&[
            "get", "a", "--prefix", "--sort-by", "MODIFY", "--order", "DESCEND", "--limit", "1"
        ]),
        "a2\nz\n"
    );
    // Simple output follows the sort order too.
    assert_eq!(
        etcd.etcdctl_ok(&["get", "a", "--prefix", "--order", "DESCEND", "--print-value-only"]),
        "2\nz\n3\n"
    );
    Ok(())
}

#[test]
fn get_at_revision() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    seed_ranges(&etcd);
    // a2 was "1" at revision 3..5 and "z" from 6.
    assert_eq!(etcd.etcdctl_ok(&["get", "a2", "--rev", "5"]), "a2\n1\n");
    assert_eq!(etcd.etcdctl_ok(&["get", "a2", "--rev", "6"]), "a2\nz\n");
    assert_eq!(etcd.etcdctl_ok(&["get", "a2", "--rev", "2"]), "", "a2 did not exist yet");
    assert_eq!(
        etcd.etcdctl_ok(&["get", "a", "--prefix", "--rev", "3", "--keys-only"]),
        "a1\n\na2\n\n"
    );
    let j = etcd.etcdctl_json(&["get", "a2", "--rev", "4", "-w", "json"]);
    // The header carries the current revision, not the requested one.
    assert_eq!(int(&j, &["header", "revision"]), 7);
    assert_eq!(int(&j["kvs"][0], &["mod_revision"]), 3);
    assert_eq!(int(&j["kvs"][0], &["version"]), 1);

    let future = etcd.etcdctl(&["get", "a2", "--rev", "100"]);
    future.assert_failure();
    assert_eq!(
        future.error_line().as_deref(),
        Some("Error: etcdserver: mvcc: required revision is a future revision")
    );
    Ok(())
}

#[test]
fn del_simple_prefix_prev_kv_and_count() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    seed_ranges(&etcd);
    assert_eq!(etcd.etcdctl_ok(&["del", "nope"]), "0\n");
    assert_eq!(etcd.etcdctl_ok(&["del", "c"]), "1\n");
    assert_eq!(etcd.etcdctl_ok(&["get", "c"]), "");
    assert_eq!(
        etcd.etcdctl_ok(&["del", "a", "--prefix", "--prev-kv"]),
        "3\na1\n3\na2\nz\na3\n2\n"
    );
    assert_eq!(etcd.etcdctl_ok(&["get", "a", "--prefix"]), "");
    assert_eq!(etcd.etcdctl_ok(&["get", "", "--prefix", "--keys-only"]), "b1\n\n");

    // del -w json: deleted count and revision; deleting nothing does not
    // create a revision.
    let before = int(&etcd.etcdctl_json(&["get", "x", "-w", "json"]), &["header", "revision"]);
    let j = etcd.etcdctl_json(&["del", "nothing", "-w", "json"]);
    assert!(j.get("deleted").is_none(), "deleted=0 omitted: {j}");
    assert_eq!(int(&j, &["header", "revision"]), before);
    let j = etcd.etcdctl_json(&["del", "b1", "--prev-kv", "-w", "json"]);
    assert_eq!(int(&j, &["deleted"]), 1);
    assert_eq!(int(&j, &["header", "revision"]), before + 1);
    assert_eq!(j["prev_kvs"][0]["key"], b64("b1"));
    assert_eq!(j["prev_kvs"][0]["value"], b64("0"));

    // --from-key and explicit ranges.
    for k in ["k1", "k2", "k3", "k4"] {
        etcd.etcdctl_ok(&["put", k, "v"]);
    }
    assert_eq!(etcd.etcdctl_ok(&["del", "k1", "k3"]), "2\n");
    assert_eq!(etcd.etcdctl_ok(&["del", "k3", "--from-key"]), "2\n");
    assert_eq!(etcd.etcdctl_ok(&["get", "", "--prefix"]), "");

    // A re-created key starts a new generation.
    etcd.etcdctl_ok(&["put", "k1", "again"]);
    let j = etcd.etcdctl_json(&["get", "k1", "-w", "json"]);
    assert_eq!(int(&j["kvs"][0], &["version"]), 1);
    assert_eq!(
        int(&j["kvs"][0], &["create_revision"]),
        int(&j["kvs"][0], &["mod_revision"])
    );
    Ok(())
}

#[test]
fn put_with_unknown_lease_fails() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let o = etcd.etcdctl(&["put", "k", "v", "--lease=1234abcd"]);
    o.assert_failure();
    assert_eq!(
        o.error_line().as_deref(),
        Some("Error: etcdserver: requested lease not found")
    );
    assert_eq!(etcd.etcdctl_ok(&["get", "k"]), "");
    Ok(())
}
