//! The daemon's configuration: `rouse.toml` in the home, or the file given to `--config`.

use std::path::Path;
use std::time::Duration;

use rouse_activator::IngressConfig;
use rouse_api::duration::deserialize_duration;
use rouse_autoscaler::AutoscalerConfig;
use rouse_runtime::Dial;
use serde::Deserialize;

use crate::error::ControlError;

/// How long an instance gets between SIGTERM and SIGKILL.
pub(crate) const DEFAULT_STOP_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// How long a new instance may take to answer HTTP before it counts as failed (Knative's
/// progress deadline).
pub(crate) const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(600);
/// First delay before restarting a crashed instance; doubles per failure in a row.
pub(crate) const DEFAULT_CRASH_BACKOFF: Duration = Duration::from_secs(1);
/// Longest delay between restarts of a crashing instance.
pub(crate) const DEFAULT_CRASH_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often the reconciler compares desired and actual state even when nothing changed.
pub(crate) const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(2);

/// Everything `rouse.toml` can set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// `[ingress]`
    pub ingress: IngressConfig,
    /// `[instances]`
    pub instances: InstanceConfig,
    /// `[autoscaler]`, keys as in Knative's config-autoscaler.
    pub autoscaler: AutoscalerConfig,
    /// `[runtime]`
    pub runtime: RuntimeConfig,
    /// `[gc]`
    pub gc: GcConfig,
    /// `[eventing]`: event size limits and the pace of delivery.
    pub eventing: rouse_eventing::EventingConfig,
}

/// Revisions kept that take no traffic, per service, when none is given (Knative's
/// `max-non-active-revisions` is 1000; 20 keeps `rouse revisions` readable).
pub(crate) const DEFAULT_MAX_NON_ACTIVE_REVISIONS: usize = 20;

/// `[gc]`: garbage collection of old revisions.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct GcConfig {
    /// Revisions without traffic or tag kept per service, newest first; older ones are deleted.
    pub max_non_active_revisions: usize,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            max_non_active_revisions: DEFAULT_MAX_NON_ACTIVE_REVISIONS,
        }
    }
}

/// `[runtime]`: how instances are run and reached.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RuntimeConfig {
    /// `container-ip` (Linux default) or `published-port` (default elsewhere).
    pub dial: Option<DialSetting>,
}

/// How the proxy reaches instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DialSetting {
    ContainerIp,
    PublishedPort,
}

impl RuntimeConfig {
    pub fn dial(&self) -> Dial {
        match self.dial {
            None => Dial::for_platform(),
            Some(DialSetting::ContainerIp) => Dial::ContainerIp,
            Some(DialSetting::PublishedPort) => Dial::PublishedPort,
        }
    }
}

/// `[instances]`: lifecycle of instances.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct InstanceConfig {
    #[serde(deserialize_with = "deserialize_duration")]
    pub stop_grace_period: Duration,
    #[serde(deserialize_with = "deserialize_duration")]
    pub ready_timeout: Duration,
    #[serde(deserialize_with = "deserialize_duration")]
    pub crash_backoff: Duration,
    #[serde(deserialize_with = "deserialize_duration")]
    pub crash_backoff_max: Duration,
    #[serde(deserialize_with = "deserialize_duration")]
    pub resync_interval: Duration,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        Self {
            stop_grace_period: DEFAULT_STOP_GRACE_PERIOD,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            crash_backoff: DEFAULT_CRASH_BACKOFF,
            crash_backoff_max: DEFAULT_CRASH_BACKOFF_MAX,
            resync_interval: DEFAULT_RESYNC_INTERVAL,
        }
    }
}

impl Config {
    /// Reads `path`; a missing file is an error only when `required` (given with --config).
    pub fn load(path: &Path, required: bool) -> Result<Config, ControlError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Config::default()),
            Err(e) => {
                return Err(ControlError::Config {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
        };
        Config::parse(&text).map_err(|reason| ControlError::Config {
            path: path.display().to_string(),
            reason,
        })
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))?;
        config.autoscaler.validate().map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses zero, negative and absurd values, naming the table, the key and the range,
    /// so a bad value stops `rouse serve` at start instead of panicking a task later (a zero
    /// interval reaching `tokio::time::interval`, say).
    fn validate(&self) -> Result<(), String> {
        const MS: Duration = Duration::from_millis(1);
        const SEC: Duration = Duration::from_secs(1);
        const HOUR: Duration = Duration::from_secs(3600);
        const DAY: Duration = Duration::from_secs(86_400);
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        const GIB: u64 = 1024 * MIB;
        let i = &self.ingress;
        size("ingress", "max-header-bytes", i.max_header_bytes as u64, KIB, MIB)?;
        size("ingress", "max-body-bytes", i.max_body_bytes, 1, 64 * GIB)?;
        duration("ingress", "idle-timeout", i.idle_timeout, 100 * MS, HOUR)?;
        duration("ingress", "body-idle-timeout", i.body_idle_timeout, 100 * MS, HOUR)?;
        count("ingress", "max-connections", i.max_connections as u64, 1, 1_000_000)?;
        count(
            "ingress",
            "max-connections-per-client",
            i.max_connections_per_client as u64,
            1,
            i.max_connections as u64,
        )?;
        count("ingress", "max-waiting", i.max_waiting as u64, 1, 1_000_000)?;
        if i.domain.is_empty() || i.domain.starts_with('.') || i.domain.contains(char::is_whitespace) {
            return Err(format!(
                "[ingress] domain = {:?}: must be a DNS name such as \"localhost\" or \"example.test\"",
                i.domain
            ));
        }
        let n = &self.instances;
        duration(
            "instances",
            "stop-grace-period",
            n.stop_grace_period,
            Duration::ZERO,
            HOUR,
        )?;
        duration("instances", "ready-timeout", n.ready_timeout, SEC, 2 * HOUR)?;
        duration("instances", "crash-backoff", n.crash_backoff, 10 * MS, HOUR)?;
        duration(
            "instances",
            "crash-backoff-max",
            n.crash_backoff_max,
            n.crash_backoff,
            HOUR,
        )?;
        duration(
            "instances",
            "resync-interval",
            n.resync_interval,
            100 * MS,
            10 * 60 * SEC,
        )?;
        let a = &self.autoscaler;
        duration(
            "autoscaler",
            "scale-to-zero-grace-period",
            a.scale_to_zero_grace_period,
            Duration::ZERO,
            HOUR,
        )?;
        duration("autoscaler", "tick-interval", a.tick_interval, 100 * MS, 10 * 60 * SEC)?;
        duration(
            "autoscaler",
            "frozen-retention",
            a.frozen_retention,
            Duration::ZERO,
            7 * DAY,
        )?;
        count(
            "gc",
            "max-non-active-revisions",
            self.gc.max_non_active_revisions as u64,
            0,
            10_000,
        )?;
        let e = &self.eventing;
        size("eventing", "max-event-bytes", e.max_event_bytes as u64, KIB, 64 * MIB)?;
        size(
            "eventing",
            "max-batch-bytes",
            e.max_batch_bytes as u64,
            e.max_event_bytes as u64,
            GIB,
        )?;
        count("eventing", "max-batch-events", e.max_batch_events as u64, 1, 1_000_000)?;
        count("eventing", "max-extensions", e.max_extensions as u64, 0, 1_000)?;
        size(
            "eventing",
            "max-attribute-bytes",
            e.max_attribute_bytes as u64,
            KIB,
            MIB,
        )?;
        count("eventing", "max-in-flight", e.max_in_flight as u64, 1, 100_000)?;
        duration("eventing", "cursor-interval", e.cursor_interval, 10 * MS, 60 * SEC)?;
        duration("eventing", "trim-interval", e.trim_interval, 100 * MS, DAY)?;
        duration(
            "eventing",
            "drain-timeout",
            e.drain_timeout,
            Duration::ZERO,
            10 * 60 * SEC,
        )?;
        Ok(())
    }
}

/// `[table] key = value: must be between min and max`, for a duration.
fn duration(table: &str, key: &str, value: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(format!(
        "[{table}] {key} = \"{}\": must be between {} and {}",
        show_duration(value),
        show_duration(min),
        show_duration(max)
    ))
}

/// `[table] key = value: must be between min and max`, for a count.
fn count(table: &str, key: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    within(table, key, value, min, max, "")
}

/// The same for a size in bytes.
fn size(table: &str, key: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    within(table, key, value, min, max, " bytes")
}

fn within(table: &str, key: &str, value: u64, min: u64, max: u64, unit: &str) -> Result<(), String> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(format!(
        "[{table}] {key} = {value}: must be between {min} and {max}{unit}"
    ))
}

/// A duration as it is written in `rouse.toml`: `0s`, `250ms`, `10s`, `2h`.
fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_string(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_empty() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.instances.stop_grace_period, DEFAULT_STOP_GRACE_PERIOD);
        assert_eq!(config.ingress.domain, "localhost");
    }

    #[test]
    fn reads_tables_and_durations() {
        let config = Config::parse(
            "[ingress]\ndomain = \"example.test\"\nidle-timeout = \"2s\"\n[instances]\ncrash-backoff = \"100ms\"\n",
        )
        .unwrap();
        assert_eq!(config.ingress.domain, "example.test");
        assert_eq!(config.ingress.idle_timeout, Duration::from_secs(2));
        assert_eq!(config.instances.crash_backoff, Duration::from_millis(100));
        let published = Config::parse("[runtime]\ndial = \"published-port\"\n").unwrap();
        assert_eq!(published.runtime.dial(), Dial::PublishedPort);
    }

    #[test]
    fn zero_and_absurd_values_are_refused_with_table_key_and_range() {
        let err = Config::parse("[eventing]\ntrim-interval = \"0s\"\n").unwrap_err();
        assert_eq!(err, "[eventing] trim-interval = \"0s\": must be between 100ms and 24h");
        let err = Config::parse("[instances]\nresync-interval = \"0s\"\n").unwrap_err();
        assert!(err.starts_with("[instances] resync-interval"), "{err}");
        let err = Config::parse("[instances]\ncrash-backoff = \"10s\"\ncrash-backoff-max = \"1s\"\n").unwrap_err();
        assert_eq!(
            err,
            "[instances] crash-backoff-max = \"1s\": must be between 10s and 1h"
        );
        let err = Config::parse("[ingress]\nmax-waiting = 0\n").unwrap_err();
        assert_eq!(err, "[ingress] max-waiting = 0: must be between 1 and 1000000");
        let err = Config::parse("[eventing]\nmax-batch-bytes = 10\n").unwrap_err();
        assert!(err.contains("max-batch-bytes = 10"), "{err}");
        assert!(
            Config::parse("[ingress]\ndomain = \"\"\n")
                .unwrap_err()
                .contains("domain")
        );
        let err = Config::parse("[eventing]\ncursor-interval = \"2h\"\n").unwrap_err();
        assert_eq!(err, "[eventing] cursor-interval = \"2h\": must be between 10ms and 1m");
    }

    #[test]
    fn the_defaults_are_in_range() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[instances]\nbogus = 1\n").unwrap_err();
        assert!(err.contains("bogus"), "{err}");
        assert!(Config::parse("[instances]\ncrash-backoff = \"fast\"\n").is_err());
        let err = Config::parse("[autoscaler]\nmax-scale-down-rate = 0.5\n").unwrap_err();
        assert!(err.contains("max-scale-down-rate"), "{err}");
    }
}
