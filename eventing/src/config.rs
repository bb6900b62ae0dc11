//! Limits of the broker ingress and the pace of dispatch (`[eventing]` in `rouse.toml`).

use std::time::Duration;

use rouse_api::duration::deserialize_duration;
use serde::Deserialize;

/// Default of [`EventingConfig::max_event_bytes`].
pub(crate) const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Default of [`EventingConfig::max_batch_bytes`].
pub(crate) const DEFAULT_MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Default of [`EventingConfig::max_in_flight`].
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Default of [`EventingConfig::cursor_interval`].
pub(crate) const DEFAULT_CURSOR_INTERVAL: Duration = Duration::from_millis(200);
/// Default of [`EventingConfig::trim_interval`].
pub(crate) const DEFAULT_TRIM_INTERVAL: Duration = Duration::from_secs(10);
/// Default of [`EventingConfig::drain_timeout`].
pub(crate) const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Eventing settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct EventingConfig {
    /// Largest event accepted (attributes and data), in bytes; larger gets 413. Knative's
    /// ingress has no limit of its own; 1 MiB matches what most CloudEvents transports carry.
    pub max_event_bytes: usize,
    /// Largest batched request accepted, in bytes; each event in it must also fit
    /// `max_event_bytes`. A batch is one append, so this bounds one transaction too.
    pub max_batch_bytes: usize,
    /// Deliveries a trigger has in flight at once. Enough to keep a fast subscriber busy over
    /// keep-alive connections, and the bound on how many events can wait in backoff before the
    /// trigger stops reading ahead.
    pub max_in_flight: usize,
    /// How often a trigger's cursor is written while it moves; a crash redelivers at most this
    /// much (at-least-once), and writes stay few under load.
    #[serde(deserialize_with = "deserialize_duration")]
    pub cursor_interval: Duration,
    /// How often events every trigger of a broker has handled are deleted from the log.
    #[serde(deserialize_with = "deserialize_duration")]
    pub trim_interval: Duration,
    /// How long deliveries in flight may take to finish when a trigger stops (shutdown, update);
    /// those still running after it are redelivered on the next start.
    #[serde(deserialize_with = "deserialize_duration")]
    pub drain_timeout: Duration,
}

impl Default for EventingConfig {
    fn default() -> Self {
        Self {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            cursor_interval: DEFAULT_CURSOR_INTERVAL,
            trim_interval: DEFAULT_TRIM_INTERVAL,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}
