//! How the watchers retry while the API server cannot be reached: quickly
//! at first, so that the changes made during a short outage reach the
//! kernel within about a second of the API server's return, then
//! backing off, so that an API server that keeps failing is not hammered.
//!
//! kube-rs's default (800 ms doubling to 30 s, reset 2 min after the last
//! error) made a node wait out its current sleep after the API server
//! came back: 3.6 to 7.2 s after a 10 s outage, sometimes more than 10 s.
//! Here, the first retry after a success comes after 50 to 100 ms (a
//! `410 Gone` is one error, and the watcher re-lists at once), then, for
//! the first [`FAST_PHASE`] of an outage, every retry comes after 0.25 to
//! 0.5 s (0.35 to 0.7 s left 3 of 10 measured recoveries just over a
//! second: the wait for the next retry is most of it); then the delay doubles from 1 s up to 30 s, with
//! jitter. A watch event (success) resets it: `StreamBackoff` calls
//! [`Backoff::reset`] on every item that is not an error.

use std::time::{Duration, Instant};

use kube::runtime::utils::Backoff;

/// How long retries stay at about one per second.
pub const FAST_PHASE: Duration = Duration::from_secs(30);
/// The longest delay of the fast phase (the shortest is half of it): the
/// changes of a short outage reach the kernel within about this, plus a
/// re-list and a sync, of the API server's return.
pub const FAST_DELAY: Duration = Duration::from_millis(500);
/// The delay past the fast phase doubles up to this.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// The watchers' retry policy (see the module documentation).
#[derive(Debug, Clone)]
pub struct OutageBackoff {
    /// When the current outage began (the first error since a success).
    since: Option<Instant>,
    /// Retries in the current outage.
    tries: u32,
    /// Retries since the fast phase ended.
    slow: u32,
    /// Jitter source (xorshift).
    seed: u64,
}

impl Default for OutageBackoff {
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        OutageBackoff {
            since: None,
            tries: 0,
            slow: 0,
            seed: seed | 1,
        }
    }
}

impl OutageBackoff {
    /// A fraction in [0.5, 1): spreads the retries of many nodes.
    fn jitter(&mut self) -> f64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        0.5 + (self.seed >> 11) as f64 / (1u64 << 53) as f64 / 2.0
    }

    /// The delay before the next retry, `elapsed` into the outage.
    fn delay(&mut self, elapsed: Duration) -> Duration {
        let jitter = self.jitter();
        self.tries = self.tries.saturating_add(1);
        if self.tries == 1 {
            // The first error after a success is often one answer, not an
            // outage (410 Gone: re-list now, as client-go's reflector
            // does): 50 to 100 ms.
            return Duration::from_millis(100).mul_f64(jitter);
        }
        if elapsed < FAST_PHASE {
            return FAST_DELAY.mul_f64(jitter);
        }
        let exp = Duration::from_secs(1).saturating_mul(1u32 << self.slow.min(5));
        self.slow = self.slow.saturating_add(1);
        exp.min(MAX_DELAY).mul_f64(jitter)
    }
}

impl Iterator for OutageBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        Some(self.delay(now - since))
    }
}

impl Backoff for OutageBackoff {
    fn reset(&mut self) {
        self.since = None;
        self.tries = 0;
        self.slow = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stay_under_0_7_s_at_first_then_back_off_to_thirty() {
        let mut b = OutageBackoff::default();
        let first = b.delay(Duration::ZERO);
        assert!(
            (Duration::from_millis(50)..Duration::from_millis(100)).contains(&first),
            "the first retry comes at once (a 410 re-lists): {first:?}"
        );
        let fast: Vec<Duration> = (0..20).map(|_| b.delay(Duration::from_secs(5))).collect();
        for d in &fast {
            assert!((FAST_DELAY / 2..FAST_DELAY).contains(d), "{d:?}");
        }
        assert!(fast.windows(2).any(|w| w[0] != w[1]), "jittered: {fast:?}");
        let slow: Vec<Duration> = (0..8).map(|_| b.delay(FAST_PHASE)).collect();
        let upper: Vec<u64> = vec![1, 2, 4, 8, 16, 30, 30, 30];
        for (d, max) in slow.iter().zip(&upper) {
            let max = Duration::from_secs(*max);
            assert!(
                *d >= max / 2 && *d < max,
                "{d:?} not in [{:?}, {max:?})",
                max / 2
            );
        }
        // A success ends the outage: at once again.
        b.reset();
        assert!(b.next().unwrap() < Duration::from_millis(100));
        assert_eq!(b.slow, 0);
    }
}
