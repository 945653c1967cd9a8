//! Wait registry: a proposer registers a request id and awaits what becomes of it: the
//! result apply delivers for that id, the error of the raft loop dropping the proposal,
//! or a timeout. Ids are unique per process run (a counter seeded from the member id and
//! start time, as etcd's request-id generator).
//!
//! Timeouts cost no timer per request: [`WaitRegistry::sweep`], called on a fixed period
//! by one task, ends every wait registered more than a given number of sweeps ago. A
//! wait registered between two sweeps therefore times out between `rounds` and
//! `rounds + 1` periods after it started, never earlier.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use super::node::RaftError;

/// What a waiter learns about its request.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited<T> {
    /// Apply delivered this result.
    Done(T),
    /// The raft loop dropped the proposal: it will never be applied.
    Dropped(RaftError),
    /// Nothing came within the registry's timeout; the request may still be applied
    /// later, but nobody is answered for it.
    TimedOut,
}

struct Waiter<T> {
    tx: oneshot::Sender<Waited<T>>,
    /// The sweep round when it registered.
    round: u64,
}

/// Maps request ids to the waiters of their results.
pub struct WaitRegistry<T> {
    next: AtomicU64,
    /// Sweeps so far.
    round: AtomicU64,
    waiters: Mutex<HashMap<u64, Waiter<T>>>,
}

impl<T> WaitRegistry<T> {
    /// A registry whose ids start from a prefix of `member_id` and the current time, so
    /// ids of different members and runs do not collide (etcd's idutil layout: 2 bytes
    /// of member id, 5 bytes of milliseconds, 1 byte counter space growing upward).
    pub fn new(member_id: u64) -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let start = ((member_id & 0xffff) << 48) | ((millis & 0xff_ffff_ffff) << 8);
        WaitRegistry {
            next: AtomicU64::new(start),
            round: AtomicU64::new(0),
            waiters: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh id (never returned twice by this registry); not registered.
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a fresh id and returns it with the receiver of its outcome. The
    /// receiver yields an error only if the registry itself is dropped.
    pub fn register(&self) -> (u64, oneshot::Receiver<Waited<T>>) {
        let id = self.next_id();
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.lock();
        // Read under the lock: a sweep cannot run between this read and the insert, so
        // the entry is never judged by a round it did not see start.
        let round = self.round.load(Ordering::Relaxed);
        waiters.insert(id, Waiter { tx, round });
        (id, rx)
    }

    /// Delivers `value` to the waiter of `id`, if one is registered (entries proposed by
    /// another member or before a restart have none). Returns whether one was waiting.
    pub fn trigger(&self, id: u64, value: T) -> bool {
        self.finish(id, Waited::Done(value))
    }

    /// Tells the waiter of `id`, if any, that its proposal was dropped with `err`.
    /// Returns whether one was waiting.
    pub fn fail(&self, id: u64, err: RaftError) -> bool {
        self.finish(id, Waited::Dropped(err))
    }

    /// Forgets `id` (its proposer gave up).
    pub fn cancel(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// True when someone waits for `id`.
    pub fn is_registered(&self, id: u64) -> bool {
        self.lock().contains_key(&id)
    }

    /// Starts a new round and ends, with [`Waited::TimedOut`], every wait registered
    /// more than `rounds` rounds ago (before the `rounds`-th sweep preceding this one);
    /// waits whose receiver is gone are dropped too. Returns how many timed out.
    pub fn sweep(&self, rounds: u64) -> usize {
        let expired: Vec<oneshot::Sender<Waited<T>>> = {
            let mut waiters = self.lock();
            let now = self.round.fetch_add(1, Ordering::Relaxed) + 1;
            waiters.retain(|_, w| !w.tx.is_closed());
            let ids: Vec<u64> = waiters
                .iter()
                .filter(|(_, w)| now - w.round > rounds)
                .map(|(id, _)| *id)
                .collect();
            ids.iter()
                .filter_map(|id| waiters.remove(id))
                .map(|w| w.tx)
                .collect()
        };
        // Sent after the lock is released: the woken receivers do not contend for it.
        let n = expired.len();
        for tx in expired {
            let _ = tx.send(Waited::TimedOut);
        }
        n
    }

    fn finish(&self, id: u64, outcome: Waited<T>) -> bool {
        let w = self.lock().remove(&id);
        match w {
            Some(w) => w.tx.send(outcome).is_ok(),
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter<T>>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn register_trigger_cancel() {
        let w = WaitRegistry::<u32>::new(7);
        let (a, rx) = w.register();
        let (b, _rx2) = w.register();
        assert_ne!(a, b);
        assert!(w.trigger(a, 5));
        assert_eq!(rx.await.unwrap(), Waited::Done(5));
        assert!(!w.trigger(a, 6));
        w.cancel(b);
        assert!(!w.is_registered(b));
    }

    #[tokio::test]
    async fn a_dropped_proposal_reaches_its_waiter() {
        let w = WaitRegistry::<u32>::new(7);
        let (a, rx) = w.register();
        assert!(w.fail(a, RaftError::NoLeader));
        assert_eq!(rx.await.unwrap(), Waited::Dropped(RaftError::NoLeader));
        assert!(!w.trigger(a, 1), "a failed wait is over");
    }

    #[tokio::test]
    async fn sweeps_time_out_only_waits_older_than_the_given_rounds() {
        let w = WaitRegistry::<u32>::new(7);
        let (old, mut old_rx) = w.register();
        assert_eq!(w.sweep(2), 0);
        let (young, mut young_rx) = w.register();
        assert_eq!(w.sweep(2), 0, "two rounds are not more than two");
        assert!(old_rx.try_recv().is_err());
        assert_eq!(w.sweep(2), 1);
        assert_eq!(old_rx.await.unwrap(), Waited::TimedOut);
        assert!(!w.is_registered(old));
        assert!(w.is_registered(young));
        assert!(young_rx.try_recv().is_err());
        assert_eq!(w.sweep(2), 1);
        assert_eq!(young_rx.await.unwrap(), Waited::TimedOut);
    }

    #[test]
    fn sweeps_drop_waits_nobody_listens_to() {
        let w = WaitRegistry::<u32>::new(7);
        let (gone, rx) = w.register();
        drop(rx);
        assert_eq!(w.sweep(100), 0);
        assert!(!w.is_registered(gone));
    }
}
