//! etcd's late-heartbeat warning: a leader that sends a follower its heartbeat more than
//! two heartbeat intervals after the previous one logs "leader failed to send out
//! heartbeat on time; took too long, leader is overloaded likely from slow disk" (fields
//! `to`, `heartbeat-interval`, `expected-duration`, `exceeded-duration`) and counts it in
//! `etcd_server_heartbeat_send_failures_total`. It is the first sign of a leader about to
//! lose its followers to an election; operators alert on it.
//!
//! Guarantees:
//! - one map lookup per heartbeat sent, nothing on any other message;
//! - the gaps are measured per follower and start afresh when this member becomes
//!   leader (the time it spent as a follower is not a late heartbeat).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// When each follower last got a heartbeat, against the bound of two intervals.
#[derive(Debug)]
pub struct LateHeartbeats {
    interval: Duration,
    last: HashMap<u64, Instant>,
}

impl LateHeartbeats {
    /// A detector for `--heartbeat-interval` `interval`.
    pub fn new(interval: Duration) -> Self {
        LateHeartbeats {
            interval,
            last: HashMap::new(),
        }
    }

    /// Forgets every follower's last heartbeat (on becoming leader).
    pub fn reset(&mut self) {
        self.last.clear();
    }

    /// Records a heartbeat to `to` sent at `now`; returns by how much it exceeded two
    /// intervals since the previous one, if it did.
    pub fn observe(&mut self, to: u64, now: Instant) -> Option<Duration> {
        let bound = 2 * self.interval;
        let late = self
            .last
            .insert(to, now)
            .map(|prev| now.saturating_duration_since(prev))
            .filter(|gap| *gap > bound)
            .map(|gap| gap - bound);
        if let Some(exceeded) = late {
            tracing::warn!(
                to = %format!("{to:x}"),
                "heartbeat-interval" = ?self.interval,
                "expected-duration" = ?bound,
                "exceeded-duration" = ?exceeded,
                "leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk"
            );
            crate::metrics::HEARTBEAT_SEND_FAILURES.inc();
        }
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn on_time_heartbeats_pass() {
        let mut d = LateHeartbeats::new(100 * MS);
        let t0 = Instant::now();
        assert_eq!(
            d.observe(2, t0),
            None,
            "the first one has nothing to be late for"
        );
        assert_eq!(d.observe(2, t0 + 100 * MS), None);
        assert_eq!(
            d.observe(2, t0 + 300 * MS),
            None,
            "exactly two intervals is on time"
        );
    }

    #[test]
    fn a_late_heartbeat_reports_the_excess_per_follower() {
        let mut d = LateHeartbeats::new(100 * MS);
        let t0 = Instant::now();
        d.observe(2, t0);
        d.observe(3, t0 + 250 * MS);
        assert_eq!(d.observe(2, t0 + 350 * MS), Some(150 * MS));
        assert_eq!(d.observe(3, t0 + 350 * MS), None);
    }

    #[test]
    fn becoming_leader_starts_afresh() {
        let mut d = LateHeartbeats::new(100 * MS);
        let t0 = Instant::now();
        d.observe(2, t0);
        d.reset();
        assert_eq!(d.observe(2, t0 + 5000 * MS), None);
    }
}
