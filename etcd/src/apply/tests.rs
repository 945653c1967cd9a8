//! The applier against a real store: a run of plain puts applied as one write gives
//! every proposer, the store, a restart and watchers exactly what applying the same
//! entries one by one gives.

use std::sync::Arc;

use ::raft::prelude::Entry;
use prost::Message as _;
use tempfile::TempDir;

use super::*;
use crate::proto::etcdserverpb::{DeleteRangeRequest, RangeRequest};
use crate::raft::Waited;
use crate::watch::{WatchMessage, WatchSpec};

struct Fixture {
    _dir: TempDir,
    storage: Storage,
    auth: Arc<AuthStore>,
    store: Arc<Store>,
    hub: Arc<WatchHub>,
    wait: Arc<WaitRegistry<Applied>>,
    applier: Applier,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let store = Arc::new(Store::open(storage.clone()).unwrap());
    let lessor = Arc::new(Lessor::new(5));
    let hub = WatchHub::new(store.clone());
    let alarms = Arc::new(Alarms::load(&storage).unwrap());
    let members = Arc::new(Membership::load(&storage).unwrap());
    let wait = Arc::new(WaitRegistry::new(1));
    let auth = Arc::new(
        AuthStore::load(
            &storage,
            crate::auth::TokenProvider::Simple(std::time::Duration::from_secs(60)),
        )
        .unwrap(),
    );
    let applier = Applier::new(
        storage.clone(),
        store.clone(),
        lessor,
        hub.clone(),
        alarms,
        members,
        auth.clone(),
        wait.clone(),
        0,
    );
    Fixture {
        _dir: dir,
        auth,
        storage,
        store,
        hub,
        wait,
        applier,
    }
}

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

type Answers = Vec<tokio::sync::oneshot::Receiver<Waited<Applied>>>;

/// Committed entries at indexes 1.. carrying `requests` (the server's own: no caller),
/// each with a fresh waiter.
fn entries(f: &Fixture, requests: &[Request]) -> (Vec<Entry>, Answers) {
    let with: Vec<(Request, Option<RequestAuth>)> =
        requests.iter().map(|r| (r.clone(), None)).collect();
    entries_as(f, &with)
}

/// [`entries`] of requests made by the given callers.
fn entries_as(f: &Fixture, requests: &[(Request, Option<RequestAuth>)]) -> (Vec<Entry>, Answers) {
    let mut es = Vec::new();
    let mut answers = Vec::new();
    for (i, (r, who)) in requests.iter().enumerate() {
        let (id, rx) = f.wait.register();
        let data = InternalRequest {
            id,
            request: Some(r.clone()),
            auth: who.clone(),
        }
        .encode_to_vec();
        es.push(Entry {
            index: i as u64 + 1,
            term: 1,
            data: data.into(),
            ..Default::default()
        });
        answers.push(rx);
    }
    (es, answers)
}

/// Everything in the store at its current revision, with each key's revisions.
fn contents(store: &Store) -> (i64, Vec<crate::proto::mvccpb::KeyValue>) {
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    (store.current_revision(), store.range(&all).unwrap().kvs)
}

fn mixed_requests() -> Vec<Request> {
    vec![
        Request::Put(put("a", "1")),
        Request::Put(put("b", "1")),
        Request::Put(put("a", "2")),
        // Fails (no such lease) in the middle of a run: changes nothing.
        Request::Put(PutRequest {
            lease: 99,
            ..put("c", "x")
        }),
        Request::Put(put("c", "1")),
        // Reads the previous value: applied on its own.
        Request::Put(PutRequest {
            prev_kv: true,
            ..put("a", "3")
        }),
        Request::Put(put("d", "1")),
        Request::Put(put("a", "4")),
        Request::DeleteRange(DeleteRangeRequest {
            key: "b".into(),
            ..Default::default()
        }),
        Request::Put(put("b", "2")),
        Request::Put(put("b", "3")),
    ]
}

#[test]
fn a_run_of_plain_puts_is_one_write_with_the_results_of_one_by_one() {
    let mut together = fixture();
    let mut alone = fixture();
    let requests = mixed_requests();
    let (mut es, mut answers_t) = entries(&together, &requests);
    let (mut es_alone, mut answers_a) = entries(&alone, &requests);
    // The last entry does not decode: a no-op after the run before it.
    for e in es
        .iter_mut()
        .chain(es_alone.iter_mut())
        .filter(|e| e.index == 11)
    {
        e.data = vec![0xff, 0xff, 0xff].into();
    }
    together.applier.apply_run(&es);
    for e in &es_alone {
        alone.applier.apply(e.index, e.term, &e.data);
    }
    let n = requests.len() as u64;
    assert_eq!(together.applier.applied_index(), n);
    assert_eq!(alone.applier.applied_index(), n);
    // Runs: puts 1-5 (one write), the prev_kv put, puts 7-8, the delete, put 10.
    assert_eq!(alone.applier.writes, 10);
    assert_eq!(together.applier.writes, 5);
    // Every decodable entry is answered, and alike; the undecodable one is not.
    for (i, (t, a)) in answers_t.iter_mut().zip(answers_a.iter_mut()).enumerate() {
        let t = t.try_recv().ok();
        if i + 1 == 11 {
            assert!(t.is_none(), "entry 11 is not answered: {t:?}");
        } else {
            assert!(matches!(t, Some(Waited::Done(_))), "entry {}: {t:?}", i + 1);
        }
        assert_eq!(t, a.try_recv().ok());
    }
    let want = contents(&alone.store);
    assert_eq!(
        want.0, 10,
        "nine requests change something: revisions 2..=10"
    );
    assert_eq!(contents(&together.store), want);
    // After a restart: the same store and applied index (a no-op writes nothing).
    for f in [&together, &alone] {
        let reopened = Store::open(f.storage.clone()).unwrap();
        assert_eq!(contents(&reopened), want);
        assert_eq!(load_applied_index(&f.storage).unwrap(), n - 1);
    }
}

#[tokio::test]
async fn watchers_get_every_revision_of_a_run_in_order() {
    let mut f = fixture();
    let (mut stream, queue) = f.hub.open_stream();
    let spec = WatchSpec {
        key: vec![0],
        range_end: vec![0],
        start_revision: 0,
        prev_kv: false,
        no_put: false,
        no_delete: false,
        progress_notify: false,
        fragment: false,
    };
    stream.create(spec, 0).unwrap();
    let requests: Vec<Request> = ["x", "y", "x"]
        .iter()
        .map(|k| Request::Put(put(k, "v")))
        .collect();
    let (es, _answers) = entries(&f, &requests);
    f.applier.apply_run(&es);
    assert_eq!(f.applier.writes, 1);
    let mut got = Vec::new();
    while got.len() < 3 {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(5), queue.next())
            .await
            .expect("events arrive")
            .expect("stream open");
        if let WatchMessage::Events { events, .. } = msg {
            for e in events {
                let kv = e.kv.clone().unwrap();
                got.push((kv.key.to_vec(), kv.mod_revision, kv.version));
            }
        }
    }
    assert_eq!(
        got,
        vec![
            (b"x".to_vec(), 2, 1),
            (b"y".to_vec(), 3, 1),
            (b"x".to_vec(), 4, 2)
        ]
    );
}

/// The outcome of each answered entry: Ok, or its error.
fn outcomes(answers: &mut Answers) -> Vec<Result<(), EtcdError>> {
    answers
        .iter_mut()
        .map(|rx| match rx.try_recv() {
            Ok(Waited::Done(a)) => a.result.map(|_| ()),
            other => panic!("not answered: {other:?}"),
        })
        .collect()
}

#[test]
fn callers_are_checked_against_auth_when_applied() {
    use crate::proto::authpb::{permission::Type, Permission};
    let mut f = fixture();
    let h = crate::auth::hash_password("pw", 4).unwrap();
    let mut b = f.storage.batch();
    let a = &f.auth;
    a.user_add("root", &h, None, &mut b).unwrap();
    a.user_grant_role("root", "root", &mut b).unwrap();
    a.user_add("alice", &h, None, &mut b).unwrap();
    a.role_add("r", &mut b).unwrap();
    let p = Permission {
        perm_type: Type::Readwrite as i32,
        key: b"a".to_vec(),
        range_end: vec![],
    };
    a.role_grant_permission("r", p, &mut b).unwrap();
    a.user_grant_role("alice", "r", &mut b).unwrap();
    a.enable(&mut b).unwrap();
    f.storage
        .write(b, crate::storage::Durability::Synced)
        .unwrap();
    let rev = a.revision();
    let by = |user: &str, revision: u64| {
        Some(RequestAuth {
            username: user.into(),
            revision,
        })
    };
    let requests = vec![
        (Request::Put(put("a", "1")), by("alice", rev)),
        (Request::Put(put("b", "1")), by("alice", rev)),
        (Request::Put(put("b", "1")), by("", 0)),
        (Request::Put(put("b", "2")), None),
        (Request::Put(put("a", "2")), by("alice", rev - 1)),
        (
            Request::RoleAdd(crate::proto::etcdserverpb::AuthRoleAddRequest { name: "x".into() }),
            by("alice", rev),
        ),
        (Request::Put(put("b", "3")), by("root", rev)),
    ];
    let (es, mut answers) = entries_as(&f, &requests);
    f.applier.apply_run(&es);
    assert_eq!(
        outcomes(&mut answers),
        vec![
            Ok(()),
            Err(EtcdError::PermissionDenied),
            Err(EtcdError::UserEmpty),
            Ok(()),
            Err(EtcdError::AuthOldRevision),
            Err(EtcdError::PermissionDenied),
            Ok(()),
        ]
    );
    let (_, kvs) = contents(&f.store);
    let got: Vec<(String, String)> = kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![("a".into(), "1".into()), ("b".into(), "3".into())]
    );
    assert_eq!(f.auth.role_list(), vec!["r".to_string()]);
}

#[test]
fn no_writes_while_the_corrupt_alarm_is_raised() {
    use crate::proto::etcdserverpb::{AlarmRequest, TxnRequest};
    let mut f = fixture();
    let alarm = |action: AlarmAction| {
        Request::Alarm(AlarmRequest {
            action: action as i32,
            member_id: 9,
            alarm: AlarmType::Corrupt as i32,
        })
    };
    let requests = vec![
        Request::Put(put("a", "1")),
        alarm(AlarmAction::Activate),
        // A run of plain puts, a lone one, a txn, a lease grant: all refused.
        Request::Put(put("b", "1")),
        Request::Put(put("c", "1")),
        Request::Txn(TxnRequest::default()),
        Request::Put(PutRequest {
            prev_kv: true,
            ..put("d", "1")
        }),
        Request::LeaseGrant(crate::proto::etcdserverpb::LeaseGrantRequest { ttl: 60, id: 5 }),
        alarm(AlarmAction::Deactivate),
        Request::Put(put("e", "1")),
    ];
    let (es, mut answers) = entries(&f, &requests);
    f.applier.apply_run(&es);
    let got = outcomes(&mut answers);
    let corrupt = Err(EtcdError::Corrupt);
    assert_eq!(
        got,
        vec![
            Ok(()),
            Ok(()),
            corrupt.clone(),
            corrupt.clone(),
            corrupt.clone(),
            corrupt.clone(),
            corrupt,
            Ok(()),
            Ok(()),
        ]
    );
    let (rev, kvs) = contents(&f.store);
    assert_eq!(rev, 3, "a and e only");
    assert_eq!(kvs.len(), 2);
}
