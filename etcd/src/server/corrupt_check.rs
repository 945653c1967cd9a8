//! etcd's initial corruption check (`--feature-gates=InitialCorruptCheck=true`, or the
//! deprecated `--experimental-initial-corrupt-check=true`, which kubeadm sets): before a
//! restarted member of a multi-member cluster starts raft and serves, it hashes its
//! key-value store at its current revision and asks every peer for the hash at that
//! revision over the peer URLs. A peer with the same compaction revision and another
//! hash holds other data for the same history: the member logs "found different hash
//! values from remote peer" and refuses to start ("<id> found data inconsistency with
//! peers"), as etcd does, instead of serving its diverged copy.
//!
//! As in etcd, a peer that cannot answer does not fail the check: one behind this
//! member ("cannot fetch hash from slow remote peer": a future revision for it), one that
//! compacted past this revision ("cannot fetch hash from remote peer; local member is
//! behind"), one of another cluster, or one unreachable within the request timeout
//! (peers that are starting too have bound their listener but serve only once their own
//! check is over). A different compaction revision is logged and not a mismatch.
//!
//! Guarantees: the check ends within one request timeout (peers are asked at once); it
//! fails only on a hash mismatch at the same revision and compaction revision.
//!
//! The periodic check (`--corrupt-check-time`, etcd's `--experimental-corrupt-check-time`)
//! runs on the leader every interval while the cluster serves: it hashes its store at
//! its current revision, asks every other member for the hash at that revision, hashes
//! again, and raises the CORRUPT alarm (through raft, on every member) for the first
//! member found inconsistent: itself when its own two hashes of one revision differ, a
//! member whose compaction is ahead of the leader's, or one with another hash at the
//! same compaction. While the alarm is raised, writes fail with "etcdserver: corrupt
//! cluster" (reads are served), as in etcd; `etcdctl alarm disarm` lifts it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::EtcdServer;
use crate::cluster::Membership;
use crate::mvcc::Store;
use crate::proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType};
use crate::raft::transport::{fetch_hash_kv, PeerClientTls};

/// A peer's answer, from the first of its URLs that gave one.
enum PeerHash {
    Hash {
        hash: u32,
        compact_revision: i64,
        url: String,
    },
    Failed(tonic::Status),
}

/// What the check needs to know about this member's start.
pub struct InitialCheck<'a> {
    /// This member's store.
    pub store: &'a Arc<Store>,
    /// This member's ID.
    pub local_id: u64,
    /// The cluster's ID (peers of another cluster refuse).
    pub cluster_id: u64,
    /// The other members and their peer URLs.
    pub peers: Vec<(u64, Vec<String>)>,
    /// TLS for `https` peer URLs.
    pub tls: Option<PeerClientTls>,
    /// How long a peer may take to answer (etcd's request timeout).
    pub timeout: Duration,
}

/// Runs the check (see the module documentation): `Err` with etcd's message on a
/// mismatch, or when the local hash cannot be computed.
pub async fn run(c: InitialCheck<'_>) -> Result<(), String> {
    let local = format!("{:x}", c.local_id);
    tracing::info!(
        "local-member-id" = %local,
        timeout = ?c.timeout,
        "starting initial corruption check"
    );
    let store = c.store.clone();
    let (hash, compact, rev) = tokio::task::spawn_blocking(move || store.hash_kv(0))
        .await
        .map_err(|e| format!("cannot compute hash ({e})"))?
        .map_err(|e| format!("cannot compute hash ({e})"))?;
    let asks = c.peers.iter().map(|(id, urls)| {
        let tls = c.tls.clone();
        async move {
            (
                *id,
                urls,
                ask(urls, tls.as_ref(), c.cluster_id, rev, c.timeout).await,
            )
        }
    });
    let answers = futures::future::join_all(asks).await;
    let mut mismatch = 0;
    for (id, urls, answer) in answers {
        let remote = format!("{id:x}");
        match answer {
            PeerHash::Hash {
                hash: peer_hash,
                compact_revision: peer_compact,
                url,
            } => {
                if peer_hash == hash {
                    continue;
                }
                let msg = if peer_compact == compact {
                    mismatch += 1;
                    "found different hash values from remote peer"
                } else {
                    "found different compact revision values from remote peer"
                };
                tracing::warn!(
                    "local-member-id" = %local,
                    "local-member-revision" = rev,
                    "local-member-compact-revision" = compact,
                    "local-member-hash" = hash,
                    "remote-peer-id" = %remote,
                    "remote-peer-endpoints" = ?[url],
                    "remote-peer-compact-revision" = peer_compact,
                    "remote-peer-hash" = peer_hash,
                    "{msg}"
                );
            }
            PeerHash::Failed(status) => {
                let m = status.message();
                let msg = if m.contains("required revision is a future revision") {
                    "cannot fetch hash from slow remote peer"
                } else if m.contains("required revision has been compacted") {
                    "cannot fetch hash from remote peer; local member is behind"
                } else if m.contains("cluster ID mismatch") {
                    "cluster ID mismatch"
                } else {
                    "failed hash kv request"
                };
                tracing::warn!(
                    "local-member-id" = %local,
                    "local-member-revision" = rev,
                    "remote-peer-id" = %remote,
                    "remote-peer-endpoints" = ?urls,
                    error = %m,
                    "{msg}"
                );
            }
        }
    }
    if mismatch > 0 {
        return Err(format!("{local} found data inconsistency with peers"));
    }
    tracing::info!(
        "local-member-id" = %local,
        "initial corruption checking passed; no corruption"
    );
    Ok(())
}

/// The hash of the peer at `urls` at `revision`: the first URL's answer that is a hash or
/// a refusal by the peer; the last failure if none answers.
async fn ask(
    urls: &[String],
    tls: Option<&PeerClientTls>,
    cluster_id: u64,
    revision: i64,
    timeout: Duration,
) -> PeerHash {
    let mut last = tonic::Status::unavailable("the peer has no URL");
    for url in urls {
        match fetch_hash_kv(url, tls, cluster_id, revision, timeout).await {
            Ok(r) => {
                return PeerHash::Hash {
                    hash: r.hash,
                    compact_revision: r.compact_revision,
                    url: url.clone(),
                }
            }
            Err(s) => last = s,
        }
    }
    PeerHash::Failed(last)
}

/// One member's answer to the periodic check: its hash at the leader's revision and its
/// compaction revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The member.
    pub id: u64,
    /// Its hash at the asked revision.
    pub hash: u32,
    /// Its compaction revision.
    pub compact_revision: i64,
}

/// The leader's own hash of its current revision: `(hash, revision, compact revision)`.
pub type Local = (u32, i64, i64);

/// The member to raise the CORRUPT alarm for, and why (etcd's warning), given the
/// leader's hash before (`first`) and after (`again`) asking the others: the first
/// inconsistency found, as etcd raises one alarm per pass.
pub fn find_mismatch(
    leader: u64,
    first: Local,
    again: Local,
    answers: &[Answer],
) -> Option<(u64, &'static str)> {
    let (h, rev, crev) = first;
    let (h2, rev2, crev2) = again;
    if h2 != h && rev2 == rev && crev2 == crev {
        return Some((leader, "found hash mismatch"));
    }
    for a in answers {
        if a.compact_revision > crev2 {
            return Some((
                a.id,
                "compact revision from follower must be less than or equal to leader's",
            ));
        }
        if a.compact_revision == crev && a.hash != h {
            return Some((a.id, "same compact revision then hashes must match"));
        }
    }
    None
}

/// What the periodic check needs.
pub struct PeriodicCheck {
    /// The server (its store, raft status and alarms).
    pub server: Arc<EtcdServer>,
    /// The members (their peer URLs, as they change).
    pub members: Arc<Membership>,
    /// This member's ID.
    pub local_id: u64,
    /// The cluster's ID.
    pub cluster_id: u64,
    /// TLS for `https` peer URLs.
    pub tls: Option<PeerClientTls>,
    /// How long a member may take to answer.
    pub timeout: Duration,
    /// `--corrupt-check-time`.
    pub interval: Duration,
}

/// Runs the periodic check every `interval` while this member leads, until `shutdown`.
pub async fn periodic(c: PeriodicCheck, mut shutdown: watch::Receiver<bool>) {
    if c.interval.is_zero() {
        return;
    }
    let local = format!("{:x}", c.local_id);
    tracing::info!("local-member-id" = %local, interval = ?c.interval, "enabled corruption checking");
    let start = tokio::time::Instant::now() + c.interval;
    let mut t = tokio::time::interval_at(start, c.interval);
    loop {
        tokio::select! {
            _ = t.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if !c.server.raft().status().is_leader() || c.server.alarms().is_active(AlarmType::Corrupt)
        {
            continue;
        }
        if let Err(e) = check_once(&c, &local).await {
            tracing::warn!("local-member-id" = %local, error = %e, "failed to run corruption check");
        }
    }
}

async fn local_hash(store: &Arc<Store>) -> Result<Local, String> {
    let store = store.clone();
    let (hash, compact, rev) = tokio::task::spawn_blocking(move || store.hash_kv(0))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok((hash, rev, compact))
}

async fn check_once(c: &PeriodicCheck, local: &str) -> Result<(), String> {
    let first = local_hash(c.server.store()).await?;
    let peers: Vec<(u64, Vec<String>)> = super::peer_urls(&c.members, c.local_id).collect();
    if peers.is_empty() {
        return Ok(());
    }
    let asks = peers.iter().map(|(id, urls)| {
        let tls = c.tls.clone();
        async move {
            let a = ask(urls, tls.as_ref(), c.cluster_id, first.1, c.timeout).await;
            (*id, a)
        }
    });
    let mut answers = Vec::new();
    for (id, a) in futures::future::join_all(asks).await {
        match a {
            PeerHash::Hash {
                hash,
                compact_revision,
                ..
            } => answers.push(Answer {
                id,
                hash,
                compact_revision,
            }),
            // A member behind the leader, compacted past it, or unreachable is skipped.
            PeerHash::Failed(s) => tracing::debug!(
                "remote-peer-id" = %format!("{id:x}"),
                error = %s.message(),
                "cannot fetch hash from remote peer"
            ),
        }
    }
    let again = local_hash(c.server.store()).await?;
    if let Some((id, why)) = find_mismatch(c.local_id, first, again, &answers) {
        tracing::warn!(
            "leader-member-id" = local,
            "leader-revision" = first.1,
            "leader-compact-revision" = first.2,
            "leader-hash" = first.0,
            "member-id" = %format!("{id:x}"),
            "{why}"
        );
        let raise = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: id,
            alarm: AlarmType::Corrupt as i32,
        };
        c.server.alarm(raise).await.map_err(|e| e.to_string())?;
    }
    tracing::info!(
        "local-member-id" = local,
        "number-of-peers-checked" = answers.len(),
        "finished peer corruption check"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(id: u64, hash: u32, compact_revision: i64) -> Answer {
        Answer {
            id,
            hash,
            compact_revision,
        }
    }

    #[test]
    fn mismatches_as_etcd_finds_them() {
        let l = (7, 100, 10);
        assert_eq!(find_mismatch(1, l, l, &[a(2, 7, 10), a(3, 7, 10)]), None);
        // Another hash at the same compaction.
        assert_eq!(
            find_mismatch(1, l, l, &[a(2, 7, 10), a(3, 8, 10)]).map(|m| m.0),
            Some(3)
        );
        // An older compaction hashes a different range: not comparable.
        assert_eq!(find_mismatch(1, l, l, &[a(2, 9, 5)]), None);
        // A compaction ahead of the leader's.
        assert_eq!(find_mismatch(1, l, l, &[a(2, 7, 11)]).map(|m| m.0), Some(2));
        // The leader's own store changed under one revision.
        assert_eq!(
            find_mismatch(1, l, (8, 100, 10), &[a(2, 7, 10)]).map(|m| m.0),
            Some(1)
        );
        // New writes between the two hashes are no mismatch.
        assert_eq!(find_mismatch(1, l, (8, 101, 10), &[a(2, 7, 10)]), None);
        // One alarm per pass: the first inconsistent member.
        assert_eq!(
            find_mismatch(1, l, l, &[a(2, 8, 10), a(3, 9, 10)]).map(|m| m.0),
            Some(2)
        );
    }
}
