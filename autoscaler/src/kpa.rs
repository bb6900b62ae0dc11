//! The KPA decision: how many instances a revision wants now.
//!
//! Follows Knative's `autoscaler.Scale`: desired = ceil(window average / target) for the stable
//! and the panic window, each kept within the per-tick rate limits; panic starts when the panic
//! window's demand reaches the panic threshold times the ready instances, only lets the count
//! grow while it lasts, and ends after a full stable window without the condition. Then
//! min/max scale apply, and zero is only reached after the scale-to-zero grace period.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::ScalingSpec;

/// What was observed of a revision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// Average of the metric over the stable window (whole revision, not per instance).
    pub stable: f64,
    /// Average over the panic window.
    pub panic: f64,
    /// Instances ready to take requests.
    pub ready: u32,
    /// The count decided last time (kept while there is not enough data to decide).
    pub current: u32,
    /// How long the metric has been observed; no decision to go to zero before a full
    /// stable window of observation.
    pub observed_for: Duration,
}

/// The outcome of one decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub desired: u32,
    pub panicking: bool,
}

/// Decision state of one revision, carried from tick to tick.
#[derive(Clone, Debug, Default)]
pub struct Kpa {
    /// When the panic condition last held, while panicking.
    panic_since: Option<Instant>,
    /// Highest count wanted during this panic.
    max_panic: u32,
    /// When the decision first became zero, while it stays zero.
    zero_since: Option<Instant>,
    /// Counts wanted within the scale-down delay, as a decreasing run: each entry is higher
    /// than every later one, so the first is the highest, and the queue stays short.
    delayed: VecDeque<(Instant, u32)>,
}

impl Kpa {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn panicking(&self) -> bool {
        self.panic_since.is_some()
    }

    /// Decides how many instances `spec`'s revision wants given `observed` at `now`.
    pub fn decide(&mut self, spec: &ScalingSpec, observed: &Observation, now: Instant) -> Decision {
        let ready = f64::from(observed.ready.max(1));
        let max_up = (spec.max_scale_up_rate * ready).ceil();
        let max_down = if observed.ready == 0 {
            0.0
        } else {
            (ready / spec.max_scale_down_rate).floor()
        };
        let stable_raw = (observed.stable / spec.target).ceil();
        let panic_raw = (observed.panic / spec.target).ceil();
        let stable = stable_raw.max(max_down).min(max_up);
        let panic = panic_raw.max(max_down).min(max_up);

        let over_threshold = panic_raw / ready >= spec.panic_threshold;
        match self.panic_since {
            _ if over_threshold => self.panic_since = Some(now),
            Some(since) if now.saturating_duration_since(since) >= spec.stable_window => {
                self.panic_since = None;
            }
            _ => {}
        }
        let mut desired = if self.panic_since.is_some() {
            // While panicking, never scale down.
            self.max_panic = self.max_panic.max(panic as u32).max(stable as u32);
            self.max_panic
        } else {
            self.max_panic = 0;
            stable as u32
        };

        // Not observed for a full stable window yet: no conclusion that demand is gone, so
        // keep what there is (Knative keeps the current scale while it has no data).
        if observed.observed_for < spec.stable_window {
            desired = desired.max(observed.current).max(observed.ready);
        }
        // Scale-down delay: the highest count wanted within the delay (Knative's max window).
        if spec.scale_down_delay > Duration::ZERO {
            while self.delayed.back().is_some_and(|(_, n)| *n <= desired) {
                self.delayed.pop_back();
            }
            self.delayed.push_back((now, desired));
            while self
                .delayed
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > spec.scale_down_delay)
            {
                self.delayed.pop_front();
            }
            desired = self.delayed.front().map_or(desired, |(_, n)| *n);
        }
        // Activation scale: never fewer while there is demand. Not without demand, where the
        // count is only held up by the scale-down rate and would be lifted back for ever.
        if desired > 0 && (stable_raw > 0.0 || panic_raw > 0.0) {
            desired = desired.max(spec.activation_scale);
        }
        desired = desired.max(spec.min_scale);
        if !spec.scale_to_zero {
            desired = desired.max(1);
        }
        if spec.max_scale > 0 {
            desired = desired.min(spec.max_scale);
        }

        if desired == 0 {
            let since = *self.zero_since.get_or_insert(now);
            if now.saturating_duration_since(since) < spec.scale_to_zero_grace && observed.ready > 0 {
                desired = 1;
            }
        } else {
            self.zero_since = None;
        }
        Decision {
            desired,
            panicking: self.panic_since.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AutoscalerConfig;
    use proptest::prelude::*;
    use rouse_api::ScaleBounds;

    fn spec() -> ScalingSpec {
        AutoscalerConfig::default().spec_for(&ScaleBounds::default(), 0)
    }

    fn observe(stable: f64, panic: f64, ready: u32) -> Observation {
        Observation {
            stable,
            panic,
            ready,
            current: ready,
            observed_for: Duration::from_secs(600),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn scale_down_delay_holds_the_highest_count_of_the_delay() {
        let scale = ScaleBounds {
            scale_down_delay_ms: Some(30_000),
            ..ScaleBounds::default()
        };
        let spec = AutoscalerConfig::default().spec_for(&scale, 0);
        let mut kpa = Kpa::new();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(kpa.decide(&spec, &observe(350.0, 350.0, 5), at(0)).desired, 5);
        assert_eq!(kpa.decide(&spec, &observe(140.0, 140.0, 5), at(10)).desired, 5, "held");
        assert_eq!(kpa.decide(&spec, &observe(0.0, 0.0, 5), at(29)).desired, 5, "held");
        // The 5 of t=0 is older than the delay; 2 (t=10, and the scale-down rate's floor of
        // 5 / 2 now) is the highest left.
        assert_eq!(kpa.decide(&spec, &observe(0.0, 0.0, 5), at(35)).desired, 2);
        assert_eq!(
            kpa.decide(&spec, &observe(0.0, 0.0, 2), at(45)).desired,
            2,
            "held from t=35"
        );
        // Down once nothing higher is within the delay.
        let d = kpa.decide(&spec, &observe(0.0, 0.0, 2), at(66)).desired;
        assert!(d <= 1, "{d}");
        assert!(kpa.delayed.len() <= 3, "the queue stays short: {:?}", kpa.delayed);
    }

    #[tokio::test(start_paused = true)]
    async fn activation_scale_is_the_fewest_above_zero() {
        let scale = ScaleBounds {
            activation_scale: Some(3),
            max: 4,
            ..ScaleBounds::default()
        };
        let spec = AutoscalerConfig::default().spec_for(&scale, 0);
        let mut kpa = Kpa::new();
        let now = Instant::now();
        assert_eq!(kpa.decide(&spec, &observe(10.0, 10.0, 0), now).desired, 3);
        assert_eq!(
            kpa.decide(&spec, &observe(350.0, 200.0, 3), now).desired,
            4,
            "max-scale still caps"
        );
        let idle = Observation {
            ready: 0,
            ..observe(0.0, 0.0, 0)
        };
        assert_eq!(kpa.decide(&spec, &idle, now).desired, 0, "zero stays zero");
        // Demand gone: down at the scale-down rate and to zero, not held at three.
        let mut ready = 3;
        let mut at = now;
        for _ in 0..20 {
            at += Duration::from_secs(2);
            ready = kpa.decide(&spec, &observe(0.0, 0.0, ready), at).desired;
        }
        assert_eq!(ready, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn stable_desired_is_ceil_of_average_over_target() {
        let mut kpa = Kpa::new();
        let now = Instant::now();
        // Target 100 × 70 % = 70 per instance.
        assert_eq!(kpa.decide(&spec(), &observe(70.0, 70.0, 1), now).desired, 1);
        assert_eq!(kpa.decide(&spec(), &observe(71.0, 71.0, 1), now).desired, 2);
        assert_eq!(kpa.decide(&spec(), &observe(140.0, 140.0, 2), now).desired, 2);
        assert_eq!(kpa.decide(&spec(), &observe(350.0, 200.0, 5), now).desired, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn panic_starts_at_threshold_only_grows_and_ends_after_a_stable_window() {
        let spec = spec();
        let mut kpa = Kpa::new();
        let t0 = Instant::now();
        // 1 ready instance, panic window demand 140 = 2 instances' worth: 2/1 >= 200 %.
        let d = kpa.decide(&spec, &observe(10.0, 140.0, 1), t0);
        assert!(d.panicking);
        assert_eq!(d.desired, 2);
        // Demand drops, but while panicking the count does not shrink.
        let d = kpa.decide(&spec, &observe(10.0, 10.0, 2), t0 + Duration::from_secs(10));
        assert!(d.panicking);
        assert_eq!(d.desired, 2);
        // A full stable window after the condition last held, panic ends and stable rules.
        let d = kpa.decide(&spec, &observe(10.0, 10.0, 2), t0 + Duration::from_secs(60));
        assert!(!d.panicking);
        assert_eq!(d.desired, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn below_threshold_no_panic() {
        let mut kpa = Kpa::new();
        // 3 instances' worth over 2 ready: 150 % < 200 %.
        let d = kpa.decide(&spec(), &observe(10.0, 210.0, 2), Instant::now());
        assert!(!d.panicking);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limits_bound_each_step() {
        let mut spec = spec();
        spec.max_scale_up_rate = 2.0;
        let mut kpa = Kpa::new();
        let now = Instant::now();
        // Wants 100 from 3 ready: at most 3 × 2 = 6.
        assert_eq!(kpa.decide(&spec, &observe(7000.0, 0.0, 3), now).desired, 6);
        // Wants 0 from 10 ready: at least 10 / 2 = 5.
        let mut kpa = Kpa::new();
        assert_eq!(kpa.decide(&spec, &observe(0.0, 0.0, 10), now).desired, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn min_and_max_scale_bound_the_result() {
        let mut spec = spec();
        spec.min_scale = 2;
        spec.max_scale = 4;
        let mut kpa = Kpa::new();
        let now = Instant::now();
        assert_eq!(kpa.decide(&spec, &observe(0.0, 0.0, 2), now).desired, 2);
        assert_eq!(kpa.decide(&spec, &observe(7000.0, 7000.0, 2), now).desired, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_only_after_the_grace_period() {
        let spec = spec();
        let mut kpa = Kpa::new();
        let t0 = Instant::now();
        assert_eq!(kpa.decide(&spec, &observe(0.0, 0.0, 1), t0).desired, 1);
        assert_eq!(
            kpa.decide(&spec, &observe(0.0, 0.0, 1), t0 + Duration::from_secs(29))
                .desired,
            1
        );
        assert_eq!(
            kpa.decide(&spec, &observe(0.0, 0.0, 1), t0 + Duration::from_secs(30))
                .desired,
            0
        );
        // Demand comes back: the grace restarts next time.
        assert_eq!(
            kpa.decide(&spec, &observe(1.0, 1.0, 0), t0 + Duration::from_secs(31))
                .desired,
            1
        );
        assert_eq!(
            kpa.decide(&spec, &observe(0.0, 0.0, 1), t0 + Duration::from_secs(40))
                .desired,
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_zero_before_a_full_window_was_observed_nor_when_disabled() {
        let spec = spec();
        let mut kpa = Kpa::new();
        let young = Observation {
            stable: 0.0,
            panic: 0.0,
            ready: 1,
            current: 1,
            observed_for: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        assert_eq!(kpa.decide(&spec, &young, t0).desired, 1);
        assert_eq!(kpa.decide(&spec, &young, t0 + Duration::from_secs(100)).desired, 1);
        let mut no_zero = spec.clone();
        no_zero.scale_to_zero = false;
        let mut kpa = Kpa::new();
        assert_eq!(
            kpa.decide(&no_zero, &observe(0.0, 0.0, 1), t0 + Duration::from_secs(1000))
                .desired,
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_full_window_the_current_count_is_kept() {
        // After a daemon restart: 3 instances adopted, none probed ready yet, no samples.
        let mut kpa = Kpa::new();
        let restarted = Observation {
            stable: 0.0,
            panic: 0.0,
            ready: 0,
            current: 3,
            observed_for: Duration::ZERO,
        };
        assert_eq!(kpa.decide(&spec(), &restarted, Instant::now()).desired, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn demand_at_zero_asks_for_an_instance_at_once() {
        let mut kpa = Kpa::new();
        let d = kpa.decide(&spec(), &observe(0.02, 0.2, 0), Instant::now());
        assert_eq!(d.desired, 1);
    }

    proptest! {
        #[test]
        fn decision_stays_within_bounds(stable in 0.0f64..100_000.0, panic in 0.0f64..100_000.0, ready in 0u32..500, min in 0u32..5, max in 0u32..50) {
            let mut spec = spec();
            spec.min_scale = min;
            spec.max_scale = if max == 0 { 0 } else { max.max(min) };
            let mut kpa = Kpa::new();
            let d = kpa.decide(&spec, &observe(stable, panic, ready), Instant::now());
            prop_assert!(d.desired >= min);
            if spec.max_scale > 0 {
                prop_assert!(d.desired <= spec.max_scale);
            }
            let ceiling = (spec.max_scale_up_rate * f64::from(ready.max(1))).ceil() as u32;
            prop_assert!(d.desired <= ceiling.max(min));
        }
    }
}
