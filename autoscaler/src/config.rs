//! The `[autoscaler]` table, spelled as Knative's config-autoscaler, and the per-revision
//! settings resolved from it and the revision's own overrides.

use std::time::Duration;

use rouse_api::duration::deserialize_duration;
use rouse_api::{ScaleBounds, ScaleMetric};
use serde::{Deserialize, Deserializer};

/// Concurrent requests per instance the autoscaler aims at (before utilization).
pub(crate) const DEFAULT_CONCURRENCY_TARGET: f64 = 100.0;
/// Percent of the target actually aimed at, leaving headroom for bursts.
pub(crate) const DEFAULT_TARGET_PERCENTAGE: f64 = 70.0;
/// Requests per second per instance aimed at with the `rps` metric.
pub(crate) const DEFAULT_RPS_TARGET: f64 = 200.0;
/// Window over which the stable decision averages.
pub(crate) const DEFAULT_STABLE_WINDOW: Duration = Duration::from_secs(60);
/// Panic window, as a percent of the stable window.
pub(crate) const DEFAULT_PANIC_WINDOW_PERCENTAGE: f64 = 10.0;
/// Panic starts when demand over the panic window reaches this percent of ready capacity.
pub(crate) const DEFAULT_PANIC_THRESHOLD_PERCENTAGE: f64 = 200.0;
/// Most growth per tick, as a multiple of ready instances.
pub(crate) const DEFAULT_MAX_SCALE_UP_RATE: f64 = 1000.0;
/// Most shrinkage per tick, as a divisor of ready instances.
pub(crate) const DEFAULT_MAX_SCALE_DOWN_RATE: f64 = 2.0;
/// How long the last instance stays once the decision is zero.
pub(crate) const DEFAULT_SCALE_TO_ZERO_GRACE: Duration = Duration::from_secs(30);
/// How long instances stay frozen once their revision is at zero.
pub(crate) const DEFAULT_FROZEN_RETENTION: Duration = Duration::from_secs(600);
/// How often the autoscaler decides (Knative's tick).
pub(crate) const DEFAULT_TICK_INTERVAL: Duration = Duration::from_secs(2);

/// `[autoscaler]` in `rouse.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct AutoscalerConfig {
    pub container_concurrency_target_default: f64,
    pub container_concurrency_target_percentage: f64,
    pub requests_per_second_target_default: f64,
    #[serde(deserialize_with = "deserialize_duration")]
    pub stable_window: Duration,
    pub panic_window_percentage: f64,
    pub panic_threshold_percentage: f64,
    pub max_scale_up_rate: f64,
    pub max_scale_down_rate: f64,
    #[serde(deserialize_with = "deserialize_duration")]
    pub scale_to_zero_grace_period: Duration,
    pub enable_scale_to_zero: bool,
    #[serde(deserialize_with = "deserialize_duration")]
    pub tick_interval: Duration,
    /// How long idle instances stay frozen at zero before removal; 0 removes them at once.
    #[serde(deserialize_with = "deserialize_duration")]
    pub frozen_retention: Duration,
    /// Memory budget for frozen instances, e.g. `"2GiB"`; `None` = a quarter of the host's.
    #[serde(deserialize_with = "bytes")]
    pub max_frozen_memory: Option<u64>,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        Self {
            container_concurrency_target_default: DEFAULT_CONCURRENCY_TARGET,
            container_concurrency_target_percentage: DEFAULT_TARGET_PERCENTAGE,
            requests_per_second_target_default: DEFAULT_RPS_TARGET,
            stable_window: DEFAULT_STABLE_WINDOW,
            panic_window_percentage: DEFAULT_PANIC_WINDOW_PERCENTAGE,
            panic_threshold_percentage: DEFAULT_PANIC_THRESHOLD_PERCENTAGE,
            max_scale_up_rate: DEFAULT_MAX_SCALE_UP_RATE,
            max_scale_down_rate: DEFAULT_MAX_SCALE_DOWN_RATE,
            scale_to_zero_grace_period: DEFAULT_SCALE_TO_ZERO_GRACE,
            enable_scale_to_zero: true,
            tick_interval: DEFAULT_TICK_INTERVAL,
            frozen_retention: DEFAULT_FROZEN_RETENTION,
            max_frozen_memory: None,
        }
    }
}

fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let s = String::deserialize(d)?;
    parse_bytes(&s).map(Some).map_err(serde::de::Error::custom)
}

/// Parses a size: `"512MiB"`, `"2GiB"`, `"64KiB"`, `"1000000"` (bytes); also KB/MB/GB (powers of 10).
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{s}' is not a size; write e.g. \"512MiB\" or \"2GiB\""))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("'{s}': unknown unit '{other}'; use B, KiB, MiB or GiB")),
    };
    number.checked_mul(factor).ok_or_else(|| format!("'{s}' is too large"))
}

/// Why an `[autoscaler]` table cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("[autoscaler] {key} = {value}: {reason}")]
pub struct ConfigError {
    pub key: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl AutoscalerConfig {
    /// Checks the ranges Knative enforces.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, value: String, reason| Err(ConfigError { key, value, reason });
        if self.container_concurrency_target_default < 0.01 {
            return err(
                "container-concurrency-target-default",
                self.container_concurrency_target_default.to_string(),
                "must be at least 0.01",
            );
        }
        if !(1.0..=100.0).contains(&self.container_concurrency_target_percentage) {
            return err(
                "container-concurrency-target-percentage",
                self.container_concurrency_target_percentage.to_string(),
                "must be between 1 and 100",
            );
        }
        if self.requests_per_second_target_default < 0.01 {
            return err(
                "requests-per-second-target-default",
                self.requests_per_second_target_default.to_string(),
                "must be at least 0.01",
            );
        }
        if self.stable_window < Duration::from_secs(1) || self.stable_window > Duration::from_secs(3600) {
            return err(
                "stable-window",
                format!("{:?}", self.stable_window),
                "must be between 1s and 1h",
            );
        }
        if !(1.0..=100.0).contains(&self.panic_window_percentage) {
            return err(
                "panic-window-percentage",
                self.panic_window_percentage.to_string(),
                "must be between 1 and 100",
            );
        }
        if !(110.0..=1000.0).contains(&self.panic_threshold_percentage) {
            return err(
                "panic-threshold-percentage",
                self.panic_threshold_percentage.to_string(),
                "must be between 110 and 1000",
            );
        }
        if self.max_scale_up_rate <= 1.0 {
            return err(
                "max-scale-up-rate",
                self.max_scale_up_rate.to_string(),
                "must be greater than 1",
            );
        }
        if self.max_scale_down_rate <= 1.0 {
            return err(
                "max-scale-down-rate",
                self.max_scale_down_rate.to_string(),
                "must be greater than 1",
            );
        }
        if self.tick_interval < Duration::from_millis(100) {
            return err(
                "tick-interval",
                format!("{:?}", self.tick_interval),
                "must be at least 100ms",
            );
        }
        Ok(())
    }

    /// The settings for one revision: its overrides over these defaults.
    pub fn spec_for(&self, scale: &ScaleBounds, container_concurrency: u32) -> ScalingSpec {
        let metric = scale.metric;
        let mut target = match (scale.target, metric) {
            (Some(t), _) => f64::from(t),
            (None, ScaleMetric::Concurrency) => self.container_concurrency_target_default,
            (None, ScaleMetric::Rps) => self.requests_per_second_target_default,
        };
        // A hard per-instance limit caps the concurrency target (Knative does the same).
        if metric == ScaleMetric::Concurrency && container_concurrency > 0 {
            target = target.min(f64::from(container_concurrency));
        }
        let utilization = scale
            .utilization
            .map_or(self.container_concurrency_target_percentage, f64::from);
        let stable_window = scale.window_ms.map_or(self.stable_window, Duration::from_millis);
        let panic_percentage = scale
            .panic_window_percentage
            .map_or(self.panic_window_percentage, f64::from);
        let panic_window = stable_window
            .mul_f64(panic_percentage / 100.0)
            .max(Duration::from_secs(1));
        ScalingSpec {
            metric,
            target: (target * utilization / 100.0).max(0.01),
            stable_window,
            panic_window,
            panic_threshold: scale
                .panic_threshold_percentage
                .map_or(self.panic_threshold_percentage, f64::from)
                / 100.0,
            max_scale_up_rate: self.max_scale_up_rate,
            max_scale_down_rate: self.max_scale_down_rate,
            min_scale: scale.min,
            max_scale: scale.max,
            scale_to_zero_grace: scale
                .last_instance_retention_ms
                .map_or(self.scale_to_zero_grace_period, |ms| {
                    self.scale_to_zero_grace_period.max(Duration::from_millis(ms))
                }),
            scale_to_zero: self.enable_scale_to_zero,
            frozen_retention: scale
                .frozen_retention_ms
                .map_or(self.frozen_retention, Duration::from_millis),
            scale_down_delay: Duration::from_millis(scale.scale_down_delay_ms.unwrap_or(0)),
            activation_scale: scale.activation_scale.unwrap_or(1),
        }
    }
}

/// Everything the decision needs about one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingSpec {
    pub metric: ScaleMetric,
    /// Per-instance value aimed at: target × utilization.
    pub target: f64,
    pub stable_window: Duration,
    pub panic_window: Duration,
    /// Ratio (e.g. 2.0 for 200 %).
    pub panic_threshold: f64,
    pub max_scale_up_rate: f64,
    pub max_scale_down_rate: f64,
    pub min_scale: u32,
    /// 0 = unlimited.
    pub max_scale: u32,
    pub scale_to_zero_grace: Duration,
    /// Whether the revision may go to zero at all.
    pub scale_to_zero: bool,
    /// How long instances stay frozen at zero; zero removes them at once.
    pub frozen_retention: Duration,
    /// The count stays at the highest wanted over this long (Knative's scale-down-delay).
    pub scale_down_delay: Duration,
    /// Fewest instances while the count is above zero (Knative's activation-scale); 1 is none.
    pub activation_scale: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert_eq!(parse_bytes("3MB").unwrap(), 3_000_000);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
    }

    #[test]
    fn knative_defaults() {
        let config = AutoscalerConfig::default();
        config.validate().unwrap();
        let spec = config.spec_for(&ScaleBounds::default(), 0);
        assert_eq!(spec.target, 70.0);
        assert_eq!(spec.stable_window, Duration::from_secs(60));
        assert_eq!(spec.panic_window, Duration::from_secs(6));
        assert_eq!(spec.panic_threshold, 2.0);
    }

    #[test]
    fn container_concurrency_caps_the_target_and_overrides_apply() {
        let config = AutoscalerConfig::default();
        assert_eq!(config.spec_for(&ScaleBounds::default(), 10).target, 7.0);
        let scale = ScaleBounds {
            target: Some(50),
            utilization: Some(100),
            window_ms: Some(20_000),
            ..ScaleBounds::default()
        };
        let spec = config.spec_for(&scale, 0);
        assert_eq!(spec.target, 50.0);
        let panicky = ScaleBounds {
            panic_window_percentage: Some(50),
            panic_threshold_percentage: Some(300),
            last_instance_retention_ms: Some(90_000),
            ..ScaleBounds::default()
        };
        let spec_p = config.spec_for(&panicky, 0);
        assert_eq!(spec_p.panic_window, Duration::from_secs(30));
        assert_eq!(spec_p.panic_threshold, 3.0);
        assert_eq!(spec_p.scale_to_zero_grace, Duration::from_secs(90));
        assert_eq!(spec.panic_window, Duration::from_secs(2));
        let rps = ScaleBounds {
            metric: ScaleMetric::Rps,
            ..ScaleBounds::default()
        };
        assert_eq!(
            config.spec_for(&rps, 10).target,
            140.0,
            "containerConcurrency does not cap an rps target"
        );
    }

    #[test]
    fn reads_knative_keys_and_checks_ranges() {
        let config: AutoscalerConfig = toml::from_str(
            "stable-window = \"6s\"\nscale-to-zero-grace-period = \"1s\"\npanic-window-percentage = 20.0\ncontainer-concurrency-target-default = 10\n",
        )
        .unwrap();
        assert_eq!(config.stable_window, Duration::from_secs(6));
        assert_eq!(config.container_concurrency_target_default, 10.0);
        config.validate().unwrap();
        let bad = AutoscalerConfig {
            max_scale_down_rate: 1.0,
            ..AutoscalerConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "max-scale-down-rate");
        assert!(toml::from_str::<AutoscalerConfig>("bogus = 1").is_err());
        let frozen: AutoscalerConfig =
            toml::from_str("frozen-retention = \"0s\"\nmax-frozen-memory = \"64MiB\"").unwrap();
        assert_eq!(frozen.frozen_retention, Duration::ZERO);
        assert_eq!(frozen.max_frozen_memory, Some(64 << 20));
        let spec = frozen.spec_for(
            &ScaleBounds {
                frozen_retention_ms: Some(5_000),
                ..ScaleBounds::default()
            },
            0,
        );
        assert_eq!(spec.frozen_retention, Duration::from_secs(5));
    }
}
