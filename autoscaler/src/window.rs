//! Samples in per-second buckets, averaged over a trailing window.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Width of one bucket.
const BUCKET: Duration = Duration::from_secs(1);

/// Per-second averages of a sampled value over the last `capacity` seconds.
#[derive(Debug, Clone)]
pub struct Window {
    /// When the first sample arrived; windows never reach back before it.
    start: Option<Instant>,
    /// (bucket index since `start`, sum of samples, number of samples), oldest first.
    buckets: VecDeque<(u64, f64, u32)>,
    /// Longest window that can be asked for, in buckets.
    capacity: u64,
}

impl Window {
    /// A window able to average over up to `longest`.
    pub fn new(longest: Duration) -> Self {
        Self {
            start: None,
            buckets: VecDeque::new(),
            capacity: longest.as_secs().max(1) + 1,
        }
    }

    fn index(&self, now: Instant) -> u64 {
        self.start.map_or(0, |start| {
            now.saturating_duration_since(start).as_secs() / BUCKET.as_secs()
        })
    }

    /// Records `value` (e.g. requests in flight) as seen at `now`.
    pub fn record(&mut self, now: Instant, value: f64) {
        let start = *self.start.get_or_insert(now);
        let index = now.saturating_duration_since(start).as_secs();
        match self.buckets.back_mut() {
            Some((last, sum, count)) if *last == index => {
                *sum += value;
                *count += 1;
            }
            _ => self.buckets.push_back((index, value, 1)),
        }
        while self.buckets.front().is_some_and(|(i, _, _)| i + self.capacity < index) {
            self.buckets.pop_front();
        }
    }

    /// How long samples have been recorded.
    pub fn observed_for(&self, now: Instant) -> Duration {
        self.start
            .map_or(Duration::ZERO, |start| now.saturating_duration_since(start))
    }

    /// Average over the `window` ending at `now`: each second counts once (a second with no
    /// sample counts as zero), and a window longer than what was observed averages over what
    /// was observed.
    pub fn average(&self, now: Instant, window: Duration) -> f64 {
        if self.start.is_none() {
            return 0.0;
        }
        let current = self.index(now);
        let span = window.as_secs().max(1);
        let first = current.saturating_sub(span - 1);
        let seconds = (current - first + 1) as f64;
        let total: f64 = self
            .buckets
            .iter()
            .filter(|(i, _, _)| *i >= first && *i <= current)
            .map(|(_, sum, count)| sum / f64::from(*count))
            .sum();
        total / seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn averages_over_seconds_with_empty_ones_as_zero() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(60));
        assert_eq!(w.average(t0, Duration::from_secs(60)), 0.0);
        w.record(t0, 10.0);
        w.record(t0 + Duration::from_millis(500), 20.0);
        // One second observed, averaging 15.
        assert_eq!(
            w.average(t0 + Duration::from_millis(900), Duration::from_secs(60)),
            15.0
        );
        // Three seconds observed, only the first had load.
        assert_eq!(
            w.average(t0 + Duration::from_millis(2500), Duration::from_secs(60)),
            5.0
        );
        // A 2-second window no longer sees the first second.
        assert_eq!(w.average(t0 + Duration::from_millis(2500), Duration::from_secs(2)), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn old_buckets_fall_out() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(6));
        for s in 0..100 {
            w.record(t0 + Duration::from_secs(s), 1.0);
        }
        assert!(w.buckets.len() <= 8);
        assert_eq!(w.average(t0 + Duration::from_secs(99), Duration::from_secs(6)), 1.0);
    }
}
