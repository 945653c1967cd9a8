//! etcdctl watch as a child process: live events, replay from a past
//! revision, --prev-kv, --prefix, and deletes.

use std::time::Duration;

use etcd_tests::{EtcdProcess, EtcdctlChild};

const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// Blocks until the watcher delivers live events: repeatedly puts
/// `<probe_key>` until an event shows up, then writes `<sync_key>` once and
/// consumes everything up to its event. Afterwards the watch is known to be
/// live and its output is at a clean boundary.
fn sync_watch(etcd: &EtcdProcess, w: &EtcdctlChild, probe_key: &str, sync_key: &str) {
    let mut seen = false;
    for i in 0..100 {
        etcd.etcdctl_ok(&["put", probe_key, &format!("probe{i}")]);
        if w.next_line(Duration::from_millis(300)).is_some() {
            seen = true;
            break;
        }
    }
    assert!(seen, "watch never delivered a probe event; stderr: {}", w.stderr_text());
    etcd.etcdctl_ok(&["put", sync_key, "sync"]);
    // Skip lines until "<sync_key>\nsync".
    let mut prev = String::new();
    loop {
        let line = w
            .next_line(LINE_TIMEOUT)
            .unwrap_or_else(|| panic!("sync event never arrived; stderr: {}", w.stderr_text()));
        if prev == sync_key && line == "sync" {
            return;
        }
        prev = line;
    }
}

#[test]
fn watch_live_puts_and_deletes() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let w = etcd.spawn_etcdctl(&["watch", "live/", "--prefix"]);
    sync_watch(&etcd, &w, "live/probe", "live/sync");

    etcd.etcdctl_ok(&["put", "live/a", "1"]);
    etcd.etcdctl_ok(&["put", "other", "not watched"]);
    etcd.etcdctl_ok(&["put", "live/b", "2 two"]);
    etcd.etcdctl_ok(&["del", "live/a"]);
    assert_eq!(
        w.expect_lines(9, LINE_TIMEOUT),
        ["PUT", "live/a", "1", "PUT", "live/b", "2 two", "DELETE", "live/a", ""]
    );
    // A transaction touching two keys arrives as one batch of two events.
    let input = "\nput live/x 10\nput live/y 20\n\n\n";
    etcd.etcdctl_stdin(&["txn"], input).assert_success();
    assert_eq!(
        w.expect_lines(6, LINE_TIMEOUT),
        ["PUT", "live/x", "10", "PUT", "live/y", "20"]
    );
    // Nothing else was delivered.
    assert_eq!(w.drain(Duration::from_millis(300)), Vec::<String>::new());
    Ok(())
}

#[test]
fn watch_from_past_revision_replays_history() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    etcd.etcdctl_ok(&["put", "h", "1"]); // rev 2
    etcd.etcdctl_ok(&["put", "h", "2"]); // rev 3
    etcd.etcdctl_ok(&["del", "h"]); // rev 4
    etcd.etcdctl_ok(&["put", "h", "3"]); // rev 5

    let w = etcd.spawn_etcdctl(&["watch", "h", "--rev", "3"]);
    assert_eq!(
        w.expect_lines(9, LINE_TIMEOUT),
        ["PUT", "h", "2", "DELETE", "h", "", "PUT", "h", "3"]
    );
    // ... and then continues live.
    etcd.etcdctl_ok(&["put", "h", "4"]);
    assert_eq!(w.expect_lines(3, LINE_TIMEOUT), ["PUT", "h", "4"]);

    // JSON output of a replay from revision 2 for an exact look at the
    // event fields.
    let w = etcd.spawn_etcdctl(&["watch", "h", "--rev", "2", "-w", "json"]);
    let line = w.expect_lines(1, LINE_TIMEOUT).remove(0);
    let j: serde_json::Value = serde_json::from_str(&line)?;
    let events = j["Events"].as_array().expect("Events array");
    assert!(events.len() >= 4, "replay batches revisions 2..=6: {j}");
    // First event: creation at revision 2.
    assert_eq!(events[0]["kv"]["create_revision"].as_i64(), Some(2));
    assert_eq!(events[0]["kv"]["mod_revision"].as_i64(), Some(2));
    assert_eq!(events[0]["kv"]["version"].as_i64(), Some(1));
    assert!(events[0].get("type").is_none(), "PUT is type 0, omitted: {j}");
    // Third event: the delete at revision 4 carries only key and mod_revision.
    assert_eq!(events[2]["type"].as_i64(), Some(1));
    assert_eq!(events[2]["kv"]["mod_revision"].as_i64(), Some(4));
    assert!(events[2]["kv"].get("value").is_none(), "{j}");
    assert!(events[2]["kv"].get("create_revision").is_none(), "{j}");
    Ok(())
}

#[test]
fn watch_prev_kv() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    etcd.etcdctl_ok(&["put", "p", "old"]);
    let rev = etcd.etcdctl_json(&["get", "p", "-w", "json"])["header"]["revision"]
        .as_i64()
        .expect("revision");
    let w = etcd.spawn_etcdctl(&["watch", "p", "--prev-kv", "--rev", &(rev + 1).to_string()]);
    etcd.etcdctl_ok(&["put", "p", "new"]);
    etcd.etcdctl_ok(&["del", "p"]);
    etcd.etcdctl_ok(&["put", "p", "fresh"]);
    // With --prev-kv etcdctl prints the previous pair before the new one;
    // a creation has no previous pair.
    assert_eq!(
        w.expect_lines(13, LINE_TIMEOUT),
        [
            "PUT", "p", "old", "p", "new", // update
            "DELETE", "p", "new", "p", "", // delete
            "PUT", "p", "fresh", // re-creation
        ]
    );
    assert_eq!(w.drain(Duration::from_millis(300)), Vec::<String>::new());
    Ok(())
}
