//! `--initial-election-tick-advance`: when a member of a multi-member cluster starts,
//! it fast-forwards its election clock once it can reach other members, so that the
//! cluster's first election comes `election − 2` ticks sooner than a full randomized
//! election timeout after the start (etcd's `adjustTicks`).
//!
//! As in etcd: the member checks every 50 ms, for at most 5 s, how many other members
//! answer; once more than one does, it advances `election − 2` ticks (two ticks are left,
//! so that a leader's message already on its way still arrives in time). If fewer answer
//! within 5 s (all connections failed, or a two-member cluster) nothing is advanced. A
//! single member elects itself at once and needs none of this; with the flag off nothing
//! is advanced and that is logged.
//!
//! "Answers" means the member's peer service answered a `Members` call with this
//! cluster's ID over the peer URL (TLS included): etcd counts a peer once its raft stream
//! connects, which ours does only when raft has a message for it.
//!
//! Guarantees: at most one advance per start, of `election − 2` ticks, and only while no
//! leader is known (the raft loop ignores it otherwise, [`RaftHandle::advance_ticks`]);
//! none for a single member, with the flag off, or with fewer than two peers answering;
//! the probes stop after 5 s or at shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::raft::transport::{fetch_members, PeerClientTls};
use crate::raft::RaftHandle;

/// How long the member waits for peers to answer (etcd's `rafthttp.ConnReadTimeout`).
pub const WAIT: Duration = Duration::from_secs(5);
/// How often the member looks again.
pub const INTERVAL: Duration = Duration::from_millis(50);

/// What the advance needs to know about this member's start.
pub struct TickAdvance {
    /// The raft loop whose clock is advanced.
    pub raft: RaftHandle,
    /// `--initial-election-tick-advance`.
    pub enabled: bool,
    /// The other members' peer URLs (empty for a single member).
    pub peers: Vec<(u64, Vec<String>)>,
    /// This cluster's ID: a member of another cluster does not count.
    pub cluster_id: u64,
    /// TLS for `https` peer URLs.
    pub tls: Option<PeerClientTls>,
    /// `--election-timeout` in ticks.
    pub election_ticks: usize,
    /// `--heartbeat-interval`: one tick.
    pub tick: Duration,
}

/// The ticks to advance for `election_ticks`: all but two.
pub fn forward_ticks(election_ticks: usize) -> usize {
    election_ticks.saturating_sub(2)
}

/// Runs the advance (see the module documentation); returns how many ticks were
/// advanced (0 if none).
pub async fn run(a: TickAdvance, mut shutdown: watch::Receiver<bool>) -> usize {
    if a.peers.is_empty() {
        return 0;
    }
    if !a.enabled {
        tracing::info!(
            "skipping initial election tick advance (--initial-election-tick-advance=false)"
        );
        return 0;
    }
    let ticks = forward_ticks(a.election_ticks);
    if ticks == 0 {
        return 0;
    }
    tracing::info!(
        election_ticks = a.election_ticks,
        "starting initial election tick advance"
    );
    let answered = Arc::new(AtomicUsize::new(0));
    let mut probes = tokio::task::JoinSet::new();
    for (id, urls) in a.peers {
        probes.spawn(probe(
            id,
            urls,
            a.cluster_id,
            a.tls.clone(),
            answered.clone(),
        ));
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let result = loop {
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = shutdown.changed() => break 0,
        }
        let peers = answered.load(Ordering::Acquire);
        if peers > 1 {
            if a.raft.advance_ticks(ticks).is_err() {
                break 0;
            }
            tracing::info!(
                forward_ticks = ticks,
                forward_duration = ?a.tick * ticks as u32,
                election_ticks = a.election_ticks,
                active_remote_members = peers,
                "initialized peer connections; fast-forwarding election ticks"
            );
            break ticks;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::info!(
                active_remote_members = peers,
                "fewer than two other members answered within 5s; election ticks not fast-forwarded"
            );
            break 0;
        }
    };
    probes.abort_all();
    result
}

/// Asks peer `id` for its members over each of its URLs in turn, every [`INTERVAL`],
/// until one answers with `cluster_id`; then counts it in `answered`.
async fn probe(
    id: u64,
    urls: Vec<String>,
    cluster_id: u64,
    tls: Option<PeerClientTls>,
    answered: Arc<AtomicUsize>,
) {
    loop {
        for u in &urls {
            match fetch_members(u, tls.as_ref(), Duration::from_secs(1)).await {
                Ok(r) if r.cluster_id == cluster_id => {
                    answered.fetch_add(1, Ordering::AcqRel);
                    return;
                }
                Ok(r) => {
                    tracing::debug!(peer = %format!("{id:x}"), url = %u, cluster = %format!("{:x}", r.cluster_id), "peer belongs to another cluster")
                }
                Err(e) => {
                    tracing::debug!(peer = %format!("{id:x}"), url = %u, error = %e, "peer not reachable yet")
                }
            }
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_ticks_are_left_before_the_first_election() {
        assert_eq!(forward_ticks(10), 8);
        assert_eq!(forward_ticks(3), 1);
        assert_eq!(forward_ticks(2), 0);
        assert_eq!(forward_ticks(1), 0);
    }
}
