//! When to compact automatically (`--auto-compaction-mode`/`-retention`), as etcd does:
//! - periodic: every `min(retention, 1h)`, compact to the revision that was current
//!   `retention` ago (keeping `retention` of history);
//! - revision: every 5 minutes, compact to `current - retention`.
//!
//! The schedule is a pure state machine fed with the time and the current revision, so it
//! is tested without waiting.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::AutoCompaction;

const REVISION_MODE_PERIOD: Duration = Duration::from_secs(300);
const MAX_PERIOD: Duration = Duration::from_secs(3600);

/// The auto-compaction schedule.
#[derive(Debug)]
pub struct Schedule {
    mode: AutoCompaction,
    every: Duration,
    samples: VecDeque<(Instant, i64)>,
    last_run: Instant,
}

impl Schedule {
    /// A schedule starting at `now`; `None` when auto compaction is off.
    pub fn new(mode: AutoCompaction, now: Instant) -> Option<Self> {
        let every = match &mode {
            AutoCompaction::Off => return None,
            AutoCompaction::Periodic(d) => (*d).min(MAX_PERIOD),
            AutoCompaction::Revision(_) => REVISION_MODE_PERIOD,
        };
        Some(Schedule {
            mode,
            every,
            samples: VecDeque::new(),
            last_run: now,
        })
    }

    /// How often to call [`Schedule::observe`].
    pub fn sample_interval(&self) -> Duration {
        (self.every / 10).max(Duration::from_millis(100))
    }

    /// Records `current` at `now`; returns the revision to compact to when a run is due
    /// and it would move the compaction point past `compacted`.
    pub fn observe(&mut self, now: Instant, current: i64, compacted: i64) -> Option<i64> {
        self.samples.push_back((now, current));
        if now.duration_since(self.last_run) < self.every {
            return None;
        }
        let target = match &self.mode {
            AutoCompaction::Off => return None,
            AutoCompaction::Revision(keep) => current - keep,
            AutoCompaction::Periodic(retention) => {
                // Keep the newest sample that is at least `retention` old.
                while self.samples.len() > 1 && now.duration_since(self.samples[1].0) >= *retention
                {
                    self.samples.pop_front();
                }
                match self.samples.front() {
                    Some((at, rev)) if now.duration_since(*at) >= *retention => *rev,
                    _ => return None,
                }
            }
        };
        self.last_run = now;
        (target > compacted && target > 0).then_some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_is_none() {
        assert!(Schedule::new(AutoCompaction::Off, Instant::now()).is_none());
    }

    #[test]
    fn revision_mode_every_five_minutes_keeps_retention() {
        let t0 = Instant::now();
        let mut s = Schedule::new(AutoCompaction::Revision(100), t0).unwrap();
        assert_eq!(s.observe(t0 + Duration::from_secs(60), 1000, 0), None);
        assert_eq!(s.observe(t0 + Duration::from_secs(300), 1000, 0), Some(900));
        // Not due again until five more minutes pass.
        assert_eq!(s.observe(t0 + Duration::from_secs(400), 5000, 900), None);
        assert_eq!(
            s.observe(t0 + Duration::from_secs(600), 5000, 900),
            Some(4900)
        );
        // Nothing to do when the target is not past the compaction point.
        assert_eq!(s.observe(t0 + Duration::from_secs(900), 4950, 4900), None);
    }

    #[test]
    fn periodic_mode_compacts_to_revision_seen_retention_ago() {
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        let mut s = Schedule::new(AutoCompaction::Periodic(2 * hour), t0).unwrap();
        assert_eq!(s.sample_interval(), Duration::from_secs(360));
        // Revision grows by 10 per 6-minute sample.
        let mut rev = 1;
        let mut got = Vec::new();
        for i in 1..=41 {
            rev += 10;
            let now = t0 + Duration::from_secs(360 * i);
            if let Some(t) = s.observe(now, rev, 0) {
                got.push((i, t));
            }
        }
        // Due after one period (1h), but nothing is 2h old until the oldest sample
        // (t0 + 6 min) is: the first compaction targets it at t0 + 2h06.
        assert_eq!(got.first(), Some(&(21, 11)));
        // Then hourly, each time to the revision current two hours earlier.
        assert_eq!(got.get(1), Some(&(31, 111)));
        assert_eq!(got.get(2), Some(&(41, 211)));
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn short_periodic_retention() {
        let t0 = Instant::now();
        let mut s = Schedule::new(AutoCompaction::Periodic(Duration::from_secs(1)), t0).unwrap();
        assert_eq!(s.sample_interval(), Duration::from_millis(100));
        assert_eq!(s.observe(t0 + Duration::from_millis(500), 5, 0), None);
        assert_eq!(s.observe(t0 + Duration::from_millis(1000), 7, 0), None);
        assert_eq!(s.observe(t0 + Duration::from_millis(1500), 9, 0), Some(5));
    }
}
