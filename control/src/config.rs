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
pub const DEFAULT_STOP_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// How long a new instance may take to answer HTTP before it counts as failed (Knative's
/// progress deadline).
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(600);
/// First delay before restarting a crashed instance; doubles per failure in a row.
pub const DEFAULT_CRASH_BACKOFF: Duration = Duration::from_secs(1);
/// Longest delay between restarts of a crashing instance.
pub const DEFAULT_CRASH_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often the reconciler compares desired and actual state even when nothing changed.
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(2);

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
pub const DEFAULT_MAX_NON_ACTIVE_REVISIONS: usize = 20;

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
        Ok(config)
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
    fn unknown_keys_are_named() {
        let err = Config::parse("[instances]\nbogus = 1\n").unwrap_err();
        assert!(err.contains("bogus"), "{err}");
        assert!(Config::parse("[instances]\ncrash-backoff = \"fast\"\n").is_err());
        let err = Config::parse("[autoscaler]\nmax-scale-down-rate = 0.5\n").unwrap_err();
        assert!(err.contains("max-scale-down-rate"), "{err}");
    }
}
