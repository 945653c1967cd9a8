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

use std::sync::Arc;
use std::time::Duration;

use crate::mvcc::Store;
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
