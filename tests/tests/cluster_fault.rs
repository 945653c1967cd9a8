//! Randomized fault test, bounded in time: concurrent writers (etcd-client)
//! against a 3-member cluster while random members (often the leader) are
//! killed with `kill -9` and restarted, never more than one down at a time.
//! Afterwards every acknowledged write is on every member with the revision
//! it was acknowledged at, contended keys hold a value consistent with the
//! acknowledged history, and all members report the same `HashKV` at the
//! same revision (compactions happen along the way, so the compact
//! revision must agree too).
//!
//! `ETCD_E2E_FAULT_SEED=<u64>` replays a run (the seed is printed);
//! `ETCD_E2E_FAULT_SECS=<n>` changes the fault period (default 40 s).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcd_client::{Client, GetOptions};
use etcd_tests::cluster::{poll, ClusterOptions, EtcdCluster};
use etcd_tests::util::key_of;

const WRITERS: usize = 4;
const HOT_KEYS: u64 = 8;

/// splitmix64: a tiny deterministic generator, enough for fault schedules.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// What the writers know.
#[derive(Default)]
struct Ledger {
    /// Unique keys: key -> (value, revision of the acknowledged put).
    acked: BTreeMap<String, (String, i64)>,
    /// Hot keys: every value ever sent (acked or not) per key.
    hot_sent: BTreeMap<String, BTreeSet<String>>,
    /// Hot keys: acknowledged (revision, value) per key.
    hot_acked: BTreeMap<String, Vec<(i64, String)>>,
    /// Puts whose outcome is unknown (error or timeout).
    unknown: usize,
    errors: BTreeMap<String, usize>,
}

fn short_error(e: &str) -> String {
    let e = e.split(" (").next().unwrap_or(e);
    e.chars().take(120).collect()
}

async fn writer(
    id: usize,
    seed: u64,
    clients: Vec<Client>,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut rng = Rng(seed ^ (id as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut clients = clients;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let target = rng.below(clients.len() as u64) as usize;
        let hot = rng.below(5) == 0;
        let key = if hot {
            format!("fault/hot/{}", rng.below(HOT_KEYS))
        } else {
            format!("fault/w{id}/{n:08}")
        };
        let value = format!("v-{id}-{n}");
        if hot {
            let mut l = ledger.lock().unwrap_or_else(|e| e.into_inner());
            l.hot_sent
                .entry(key.clone())
                .or_default()
                .insert(value.clone());
        }
        let res = tokio::time::timeout(
            Duration::from_secs(3),
            clients[target].put(key.clone(), value.clone(), None),
        )
        .await;
        let failed = {
            let mut l = ledger.lock().unwrap_or_else(|e| e.into_inner());
            match res {
                Ok(Ok(resp)) => {
                    let rev = resp.header().map(|h| h.revision()).unwrap_or(-1);
                    if hot {
                        l.hot_acked.entry(key).or_default().push((rev, value));
                    } else {
                        l.acked.insert(key, (value, rev));
                    }
                    false
                }
                Ok(Err(e)) => {
                    l.unknown += 1;
                    *l.errors.entry(short_error(&e.to_string())).or_default() += 1;
                    true
                }
                Err(_) => {
                    l.unknown += 1;
                    *l.errors
                        .entry("client timeout (3 s)".to_string())
                        .or_default() += 1;
                    false
                }
            }
        };
        if failed {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads `fault/` serializably from member `i` alone: key -> (value, mod_revision).
async fn read_member(c: &EtcdCluster, i: usize) -> Result<(i64, BTreeMap<String, (String, i64)>)> {
    let mut client = c.client(&[i]).await?;
    let r = client
        .get(
            "fault/",
            Some(GetOptions::new().with_prefix().with_serializable()),
        )
        .await
        .with_context(|| format!("serializable range on {}", c.name(i)))?;
    let rev = r.header().map(|h| h.revision()).unwrap_or(-1);
    let kvs = r
        .kvs()
        .iter()
        .map(|kv| {
            (
                key_of(kv),
                (
                    String::from_utf8_lossy(kv.value()).into_owned(),
                    kv.mod_revision(),
                ),
            )
        })
        .collect();
    Ok((rev, kvs))
}

#[test]
fn slow_random_kill9_under_concurrent_writes() -> Result<()> {
    let seed = std::env::var("ETCD_E2E_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let secs = std::env::var("ETCD_E2E_FAULT_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(40);
    eprintln!(
        "fault test: seed {seed} (ETCD_E2E_FAULT_SEED={seed} replays it), {secs} s of faults"
    );
    let mut rng = Rng(seed);

    let mut c = EtcdCluster::start(
        ClusterOptions::new(3)
            .arg("--snapshot-count=500")
            .ready_timeout(Duration::from_secs(20)),
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut tasks = Vec::new();
    for id in 0..WRITERS {
        let clients = rt.block_on(async {
            let mut v = Vec::new();
            for i in 0..3 {
                v.push(c.client(&[i]).await?);
            }
            anyhow::Ok(v)
        })?;
        tasks.push(rt.spawn(writer(
            id,
            seed,
            clients,
            Arc::clone(&stop),
            Arc::clone(&ledger),
        )));
    }

    // Faults: one member down at a time, often the leader.
    let until = Instant::now() + Duration::from_secs(secs);
    let mut rounds = 0;
    while Instant::now() < until {
        thread::sleep(rng.millis(300, 2000));
        let victim = if rng.below(2) == 0 {
            c.leader().unwrap_or_else(|_| rng.below(3) as usize)
        } else {
            rng.below(3) as usize
        };
        let down = rng.millis(200, 2500);
        eprintln!(
            "[{:>5.1}s] kill -9 {} for {down:?}",
            secs as f64
                - until
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64(),
            c.name(victim)
        );
        c.kill9(victim)?;
        // Sometimes compact while a member is down (it must apply the
        // compaction from the log or a snapshot when it comes back).
        if rng.below(4) == 0 {
            let live = (victim + 1) % 3;
            if let Ok(st) = c.status(live) {
                let at = (st.revision - 200).max(1).to_string();
                let o = c.etcdctl(live, &["compaction", &at]);
                eprintln!("         compaction at {at}: {}", o.combined().trim());
            }
        }
        thread::sleep(down);
        c.spawn(victim)?;
        c.wait_ready(victim, Duration::from_secs(30))
            .with_context(|| format!("restart of {} in round {rounds}", c.name(victim)))?;
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
    });
    let ledger = std::mem::take(&mut *ledger.lock().unwrap_or_else(|e| e.into_inner()));
    let hot_acked: usize = ledger.hot_acked.values().map(Vec::len).sum();
    eprintln!(
        "{rounds} kill rounds; {} unique puts and {hot_acked} hot puts acknowledged, {} unknown; errors: {:?}",
        ledger.acked.len(),
        ledger.unknown,
        ledger.errors
    );
    assert!(
        ledger.acked.len() > 100,
        "too few acknowledged writes ({}): the cluster did not serve under faults",
        ledger.acked.len()
    );

    // Convergence: one leader, every member at the same revision.
    c.wait_for_leader(Duration::from_secs(15))?;
    let rev = poll(
        "all members at the same revision",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let revs: Vec<i64> = (0..3)
                .map(|i| c.status(i).map(|s| s.revision))
                .collect::<Result<_>>()?;
            if revs.iter().all(|&r| r == revs[0]) {
                Ok(revs[0])
            } else {
                bail!("revisions differ: {revs:?}")
            }
        },
    )?;
    eprintln!("converged at revision {rev}");

    // Revisions of acknowledged puts are unique.
    let mut seen = BTreeMap::new();
    for (k, (_, r)) in &ledger.acked {
        if let Some(other) = seen.insert(*r, k) {
            panic!("revision {r} acknowledged for {k} and {other}");
        }
    }
    rt.block_on(async {
        let mut hashes = Vec::new();
        for i in 0..3 {
            let (read_rev, kvs) = read_member(&c, i).await?;
            assert_eq!(read_rev, rev, "{} moved on after convergence", c.name(i));
            // Every acknowledged unique put, with its value and revision.
            let mut missing = Vec::new();
            for (k, (v, r)) in &ledger.acked {
                match kvs.get(k) {
                    Some((gv, gr)) if gv == v && gr == r => {}
                    other => missing.push(format!("{k}={v}@{r} -> {other:?}")),
                }
            }
            assert!(
                missing.is_empty(),
                "{}: {} acknowledged writes lost or altered, e.g. {:?}",
                c.name(i),
                missing.len(),
                &missing[..missing.len().min(5)]
            );
            // Hot keys: the final value was sent to that key, and is not
            // older than the newest acknowledged put on it.
            for (k, sent) in &ledger.hot_sent {
                let newest = ledger
                    .hot_acked
                    .get(k)
                    .and_then(|v| v.iter().max_by_key(|(r, _)| *r).cloned());
                match (kvs.get(k), newest) {
                    (None, None) => {}
                    (None, Some(n)) => panic!("{}: {k} missing, acked {n:?}", c.name(i)),
                    (Some((v, r)), newest) => {
                        assert!(sent.contains(v), "{}: {k}={v} was never written", c.name(i));
                        if let Some((nr, nv)) = newest {
                            assert!(
                                *r > nr || (*r == nr && *v == nv),
                                "{}: {k}={v}@{r} but {nv}@{nr} was acknowledged",
                                c.name(i)
                            );
                        }
                    }
                }
            }
            let mut client = c.client(&[i]).await?;
            let h = client.hash_kv(rev).await?;
            hashes.push((
                c.name(i).to_string(),
                h.hash(),
                h.compact_version(),
                h.header().map(|x| x.revision()).unwrap_or(-1),
            ));
        }
        eprintln!("HashKV at {rev}: {hashes:?}");
        assert!(
            hashes
                .iter()
                .all(|(_, h, cv, r)| (*h, *cv, *r) == (hashes[0].1, hashes[0].2, hashes[0].3)),
            "members disagree on HashKV at revision {rev}: {hashes:?}"
        );
        anyhow::Ok(())
    })?;
    Ok(())
}
