//! etcdctl txn (interactive format on stdin) and compaction.

use etcd_tests::EtcdProcess;
use serde_json::Value;

fn revision(etcd: &EtcdProcess) -> i64 {
    etcd.etcdctl_json(&["get", "any", "-w", "json"])["header"]["revision"]
        .as_i64()
        .expect("header.revision")
}

#[test]
fn txn_success_branch() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    etcd.etcdctl_ok(&["put", "t1", "1"]);
    etcd.etcdctl_ok(&["put", "t2", "2"]);
    let rev = revision(&etcd);
    // compares, blank line, success ops, blank line, failure ops, blank line.
    let input = "version(\"t1\") = \"1\"\nvalue(\"t2\") = \"2\"\n\n\
                 put t1 one\ndel t2\nget t1\nget t --prefix\n\n\
                 put t1 fail\n\n";
    let out = etcd.etcdctl_stdin(&["txn"], input).ok();
    assert_eq!(out, "SUCCESS\n\nOK\n\n1\n\nt1\none\n\nt1\none\n");
    // One revision for the whole transaction.
    assert_eq!(revision(&etcd), rev + 1);
    assert_eq!(etcd.etcdctl_ok(&["get", "t", "--prefix"]), "t1\none\n");
    Ok(())
}

#[test]
fn txn_failure_branch() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    etcd.etcdctl_ok(&["put", "t1", "1"]);
    etcd.etcdctl_ok(&["put", "t1", "2"]);
    let input = "version(\"t1\") = \"1\"\n\nput t1 x\n\nget t1\ndel t1\nput t3 three\n\n";
    let out = etcd.etcdctl_stdin(&["txn"], input).ok();
    assert_eq!(out, "FAILURE\n\nt1\n2\n\n1\n\nOK\n");
    assert_eq!(etcd.etcdctl_ok(&["get", "t", "--prefix"]), "t3\nthree\n");

    // mod / create compares: create("t3") > 0 holds, mod("t1") = 0 (absent).
    let input = "create(\"t3\") > \"0\"\nmod(\"t1\") = \"0\"\n\nput t1 recreated\n\n\n";
    assert_eq!(etcd.etcdctl_stdin(&["txn"], input).ok(), "SUCCESS\n\nOK\n");
    assert_eq!(etcd.etcdctl_ok(&["get", "t1"]), "t1\nrecreated\n");

    // A failing compare with an empty failure branch prints only FAILURE and
    // does not create a revision.
    let rev = revision(&etcd);
    let input = "value(\"t3\") = \"nope\"\n\nput t3 x\n\n\n";
    assert_eq!(etcd.etcdctl_stdin(&["txn"], input).ok(), "FAILURE\n");
    assert_eq!(revision(&etcd), rev);
    Ok(())
}

#[test]
fn txn_json_output() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    etcd.etcdctl_ok(&["put", "j", "1"]);
    let input = "mod(\"j\") > \"0\"\n\nput j 2\nget j\n\n\n";
    let j: Value = etcd.etcdctl_stdin(&["txn", "-w", "json"], input).json();
    assert_eq!(j["succeeded"], Value::Bool(true));
    assert_eq!(j["header"]["revision"].as_i64(), Some(3));
    let responses = j["responses"].as_array().expect("responses array");
    assert_eq!(responses.len(), 2, "{j}");
    Ok(())
}

#[test]
fn compaction_then_old_revision_fails() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    for v in ["1", "2", "3", "4"] {
        etcd.etcdctl_ok(&["put", "c", v]); // revisions 2..=5
    }
    assert_eq!(etcd.etcdctl_ok(&["get", "c", "--rev", "3"]), "c\n2\n");
    assert_eq!(etcd.etcdctl_ok(&["compaction", "4"]), "compacted revision 4\n");

    let o = etcd.etcdctl(&["get", "c", "--rev", "3"]);
    o.assert_failure();
    assert_eq!(
        o.error_line().as_deref(),
        Some("Error: etcdserver: mvcc: required revision has been compacted")
    );
    // The compaction revision itself is still readable.
    assert_eq!(etcd.etcdctl_ok(&["get", "c", "--rev", "4"]), "c\n3\n");
    assert_eq!(etcd.etcdctl_ok(&["get", "c"]), "c\n4\n");

    // Compacting again at or below the compacted revision fails.
    let o = etcd.etcdctl(&["compaction", "4"]);
    o.assert_failure();
    assert_eq!(
        o.error_line().as_deref(),
        Some("Error: etcdserver: mvcc: required revision has been compacted")
    );
    // Compacting to a future revision fails too.
    let o = etcd.etcdctl(&["compaction", "100"]);
    o.assert_failure();
    assert_eq!(
        o.error_line().as_deref(),
        Some("Error: etcdserver: mvcc: required revision is a future revision")
    );
    // --physical waits for the compaction to be applied.
    assert_eq!(
        etcd.etcdctl_ok(&["compaction", "5", "--physical"]),
        "compacted revision 5\n"
    );
    let o = etcd.etcdctl(&["get", "c", "--rev", "4"]);
    o.assert_failure();
    assert_eq!(
        o.error_line().as_deref(),
        Some("Error: etcdserver: mvcc: required revision has been compacted")
    );
    Ok(())
}
