//! Wait registry: a proposer registers a request id and awaits the result that apply
//! delivers for that id. Ids are unique per process run (a counter seeded from the
//! member id and start time, as etcd's request-id generator).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

/// Maps request ids to the waiters of their results.
pub struct WaitRegistry<T> {
    next: AtomicU64,
    waiters: Mutex<HashMap<u64, oneshot::Sender<T>>>,
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
            waiters: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh id (never returned twice by this registry); not registered.
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a fresh id and returns it with the receiver of its result.
    pub fn register(&self) -> (u64, oneshot::Receiver<T>) {
        let id = self.next_id();
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        (id, rx)
    }

    /// Delivers `value` to the waiter of `id`, if one is registered (entries proposed by
    /// another member or before a restart have none). Returns whether one was waiting.
    pub fn trigger(&self, id: u64, value: T) -> bool {
        let tx = self.lock().remove(&id);
        match tx {
            Some(tx) => tx.send(value).is_ok(),
            None => false,
        }
    }

    /// Forgets `id` (its proposer gave up).
    pub fn cancel(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// True when someone waits for `id`.
    pub fn is_registered(&self, id: u64) -> bool {
        self.lock().contains_key(&id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<T>>> {
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
        assert_eq!(rx.await.unwrap(), 5);
        assert!(!w.trigger(a, 6));
        w.cancel(b);
        assert!(!w.is_registered(b));
    }
}
