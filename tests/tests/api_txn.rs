//! Txn through etcd-client: compare targets, both branches, nesting, the
//! duplicate-key and too-many-ops checks.

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use etcd_tests::grpc::{Code, assert_status};
use etcd_tests::util::{current_revision, pairs};
use etcd_tests::{EtcdOptions, EtcdProcess};

const DUP: &str = "etcdserver: duplicate key given in txn request";
const TOO_MANY: &str = "etcdserver: too many operations in txn request";

/// Runs `Txn{when: [cmp], then: put(key,"then"), else: put(key,"else")}` and
/// returns whether it succeeded.
async fn check(c: &mut etcd_client::Client, cmp: Compare) -> anyhow::Result<bool> {
    let t = Txn::new()
        .when([cmp])
        .and_then([TxnOp::put("branch", "then", None)])
        .or_else([TxnOp::put("branch", "else", None)]);
    let r = c.txn(t).await?;
    let got = c.get("branch", None).await?;
    let v = got.kvs().first().map(|kv| kv.value().to_vec()).unwrap_or_default();
    let expected: &[u8] = if r.succeeded() { b"then" } else { b"else" };
    assert_eq!(v, expected, "the executed branch matches `succeeded`");
    Ok(r.succeeded())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_targets_both_outcomes() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    c.put("k", "v1", None).await?; // rev 2
    c.put("k", "v2", None).await?; // rev 3: create 2, mod 3, version 2
    let lease = c.lease_grant(100, None).await?.id();
    c.put("l", "x", Some(PutOptions::new().with_lease(lease))).await?; // rev 4

    use CompareOp::*;
    // version
    assert!(check(&mut c, Compare::version("k", Equal, 2)).await?);
    assert!(!check(&mut c, Compare::version("k", Equal, 1)).await?);
    assert!(check(&mut c, Compare::version("k", Greater, 1)).await?);
    assert!(!check(&mut c, Compare::version("k", Less, 2)).await?);
    assert!(check(&mut c, Compare::version("k", NotEqual, 3)).await?);
    // create
    assert!(check(&mut c, Compare::create_revision("k", Equal, 2)).await?);
    assert!(!check(&mut c, Compare::create_revision("k", Greater, 2)).await?);
    // mod
    assert!(check(&mut c, Compare::mod_revision("k", Equal, 3)).await?);
    assert!(!check(&mut c, Compare::mod_revision("k", Less, 3)).await?);
    // value (bytewise)
    assert!(check(&mut c, Compare::value("k", Equal, "v2")).await?);
    assert!(!check(&mut c, Compare::value("k", Equal, "v1")).await?);
    assert!(check(&mut c, Compare::value("k", Greater, "v1")).await?);
    assert!(check(&mut c, Compare::value("k", Less, "v3")).await?);
    assert!(!check(&mut c, Compare::value("k", NotEqual, "v2")).await?);
    // lease
    assert!(check(&mut c, Compare::lease("l", Equal, lease)).await?);
    assert!(!check(&mut c, Compare::lease("l", Equal, lease + 1)).await?);
    assert!(check(&mut c, Compare::lease("k", Equal, 0)).await?);
    // A missing key compares as a zero KeyValue ("create if absent").
    assert!(check(&mut c, Compare::mod_revision("missing", Equal, 0)).await?);
    assert!(check(&mut c, Compare::create_revision("missing", Equal, 0)).await?);
    assert!(check(&mut c, Compare::version("missing", Equal, 0)).await?);
    // ... but a VALUE compare on a missing key is always false.
    assert!(!check(&mut c, Compare::value("missing", Equal, "")).await?);
    assert!(!check(&mut c, Compare::value("missing", NotEqual, "x")).await?);
    // Compares over a range: every key must satisfy it.
    c.put("p/1", "a", None).await?;
    c.put("p/2", "a", None).await?;
    assert!(check(&mut c, Compare::value("p/", Equal, "a").with_prefix()).await?);
    c.put("p/3", "b", None).await?;
    assert!(!check(&mut c, Compare::value("p/", Equal, "a").with_prefix()).await?);
    // Several compares are ANDed.
    let t = Txn::new()
        .when([
            Compare::version("k", Equal, 2),
            Compare::value("k", Equal, "nope"),
        ])
        .and_then([])
        .or_else([]);
    assert!(!c.txn(t).await?.succeeded());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_responses_and_revisions() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    c.put("a", "1", None).await?; // rev 2
    c.put("b", "1", None).await?; // rev 3

    // Success: put + delete + read-after-write, all at one revision.
    let t = Txn::new()
        .when([Compare::value("a", CompareOp::Equal, "1")])
        .and_then([
            TxnOp::put("a", "2", Some(PutOptions::new().with_prev_key())),
            TxnOp::delete("b", Some(DeleteOptions::new().with_prev_key())),
            TxnOp::put("c", "new", None),
            TxnOp::get("", Some(GetOptions::new().with_all_keys())),
        ])
        .or_else([TxnOp::put("never", "x", None)]);
    let r = c.txn(t).await?;
    assert!(r.succeeded());
    assert_eq!(r.header().map(|h| h.revision()), Some(4));
    let ops = r.op_responses();
    assert_eq!(ops.len(), 4);
    match &ops[0] {
        TxnOpResponse::Put(p) => {
            assert_eq!(p.prev_key().map(|kv| kv.value()), Some(&b"1"[..]));
        }
        other => panic!("expected put response, got {other:?}"),
    }
    match &ops[1] {
        TxnOpResponse::Delete(d) => {
            assert_eq!(d.deleted(), 1);
            assert_eq!(d.prev_kvs()[0].value(), b"1");
        }
        other => panic!("expected delete response, got {other:?}"),
    }
    match &ops[3] {
        TxnOpResponse::Get(g) => {
            assert_eq!(
                pairs(g),
                [
                    ("a".to_string(), "2".to_string()),
                    ("c".to_string(), "new".to_string())
                ],
                "reads inside the txn see its earlier writes"
            );
            assert!(g.kvs().iter().all(|kv| kv.mod_revision() == 4));
        }
        other => panic!("expected range response, got {other:?}"),
    }
    assert_eq!(current_revision(&mut c).await?, 4);

    // Failure branch with only reads: no new revision.
    let t = Txn::new()
        .when([Compare::value("a", CompareOp::Equal, "1")])
        .and_then([TxnOp::put("a", "3", None)])
        .or_else([TxnOp::get("a", None)]);
    let r = c.txn(t).await?;
    assert!(!r.succeeded());
    assert_eq!(r.header().map(|h| h.revision()), Some(4));
    match &r.op_responses()[0] {
        TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"2"),
        other => panic!("expected range response, got {other:?}"),
    }
    assert_eq!(current_revision(&mut c).await?, 4);

    // An empty txn succeeds and writes nothing.
    let r = c.txn(Txn::new()).await?;
    assert!(r.succeeded());
    assert!(r.op_responses().is_empty());
    assert_eq!(r.header().map(|h| h.revision()), Some(4));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_txn() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    c.put("n", "1", None).await?; // rev 2
    let inner = Txn::new()
        .when([Compare::value("n", CompareOp::Equal, "1")])
        .and_then([TxnOp::put("inner", "then", None)])
        .or_else([TxnOp::put("inner", "else", None)]);
    let inner_fail = Txn::new()
        .when([Compare::version("n", CompareOp::Equal, 9)])
        .and_then([TxnOp::put("inner2", "then", None)])
        .or_else([TxnOp::put("inner2", "else", None)]);
    let outer = Txn::new()
        .when([Compare::version("n", CompareOp::Greater, 0)])
        .and_then([
            TxnOp::put("outer", "x", None),
            TxnOp::txn(inner),
            TxnOp::txn(inner_fail),
        ]);
    let r = c.txn(outer).await?;
    assert!(r.succeeded());
    assert_eq!(r.header().map(|h| h.revision()), Some(3), "one revision for all levels");
    let ops = r.op_responses();
    assert_eq!(ops.len(), 3);
    match (&ops[1], &ops[2]) {
        (TxnOpResponse::Txn(a), TxnOpResponse::Txn(b)) => {
            assert!(a.succeeded());
            assert!(!b.succeeded());
            assert_eq!(a.op_responses().len(), 1);
            assert_eq!(b.op_responses().len(), 1);
        }
        other => panic!("expected nested txn responses, got {other:?}"),
    }
    let r = c.get("", Some(GetOptions::new().with_all_keys())).await?;
    assert_eq!(
        pairs(&r),
        [
            ("inner", "then"),
            ("inner2", "else"),
            ("n", "1"),
            ("outer", "x")
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert!(r.kvs().iter().filter(|kv| kv.key() != b"n").all(|kv| kv.mod_revision() == 3));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_key_rules() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    let put = |k: &str| TxnOp::put(k, "v", None);

    // Two puts of one key in the same branch.
    let t = Txn::new().and_then([put("d"), put("d")]);
    assert_status(c.txn(t).await, Code::InvalidArgument, DUP);
    let t = Txn::new().when([]).and_then([]).or_else([put("d"), put("d")]);
    assert_status(c.txn(t).await, Code::InvalidArgument, DUP);
    // A put inside a range deleted in the same branch.
    let t = Txn::new().and_then([
        TxnOp::delete("d/", Some(DeleteOptions::new().with_prefix())),
        put("d/x"),
    ]);
    assert_status(c.txn(t).await, Code::InvalidArgument, DUP);
    // A put in a nested txn vs a delete outside it.
    let t = Txn::new().and_then([
        TxnOp::delete("d/x", None),
        TxnOp::txn(Txn::new().and_then([put("d/x")])),
    ]);
    assert_status(c.txn(t).await, Code::InvalidArgument, DUP);
    assert_eq!(current_revision(&mut c).await?, 1, "rejected txns wrote nothing");

    // Allowed: overlapping deletes, the same key in then/else, reads.
    let t = Txn::new().and_then([
        TxnOp::delete("d/", Some(DeleteOptions::new().with_prefix())),
        TxnOp::delete("d/x", None),
        TxnOp::get("d/x", None),
    ]);
    assert!(c.txn(t).await?.succeeded());
    let t = Txn::new()
        .when([Compare::version("d", CompareOp::Equal, 0)])
        .and_then([put("d"), TxnOp::get("d", None)])
        .or_else([put("d")]);
    assert!(c.txn(t).await?.succeeded());
    let nested = Txn::new()
        .when([Compare::version("d", CompareOp::Equal, 1)])
        .and_then([put("e")])
        .or_else([put("e")]);
    let t = Txn::new().and_then([TxnOp::txn(nested)]);
    assert!(c.txn(t).await?.succeeded());
    assert_eq!(c.get("e", None).await?.count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_ops_default_limit() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    let puts = |n: usize| (0..n).map(|i| TxnOp::put(format!("m{i}"), "v", None)).collect::<Vec<_>>();
    // Default --max-txn-ops is 128.
    assert!(c.txn(Txn::new().and_then(puts(128))).await?.succeeded());
    assert_status(
        c.txn(Txn::new().and_then(puts(129))).await,
        Code::InvalidArgument,
        TOO_MANY,
    );
    let cmps: Vec<Compare> = (0..129)
        .map(|i| Compare::version(format!("m{i}"), CompareOp::Greater, -1))
        .collect();
    assert_status(
        c.txn(Txn::new().when(cmps)).await,
        Code::InvalidArgument,
        TOO_MANY,
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_ops_configured_limit() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start(EtcdOptions::default().arg("--max-txn-ops=3"))?;
    let mut c = etcd.client().await?;
    let puts = |n: usize| (0..n).map(|i| TxnOp::put(format!("m{i}"), "v", None)).collect::<Vec<_>>();
    assert!(c.txn(Txn::new().and_then(puts(3))).await?.succeeded());
    assert_status(
        c.txn(Txn::new().and_then(puts(4))).await,
        Code::InvalidArgument,
        TOO_MANY,
    );
    assert_status(
        c.txn(Txn::new().or_else(puts(4))).await,
        Code::InvalidArgument,
        TOO_MANY,
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_errors_apply_nothing() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    c.put("x", "1", None).await?; // rev 2
    // A put with an unknown lease rejects the whole txn.
    let t = Txn::new().and_then([
        TxnOp::put("y", "1", None),
        TxnOp::put("z", "1", Some(PutOptions::new().with_lease(0x7777))),
    ]);
    assert_status(
        c.txn(t).await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    // A range at a future revision inside a txn.
    let t = Txn::new().and_then([
        TxnOp::put("y", "1", None),
        TxnOp::get("x", Some(GetOptions::new().with_revision(100))),
    ]);
    assert_status(
        c.txn(t).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    assert_eq!(current_revision(&mut c).await?, 2);
    assert_eq!(c.get("y", None).await?.count(), 0);
    // An empty key inside a txn.
    let t = Txn::new().and_then([TxnOp::put("", "1", None)]);
    assert_status(
        c.txn(t).await,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    Ok(())
}
