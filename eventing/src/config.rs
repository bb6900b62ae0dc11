//! Limits of the broker ingress and the pace of dispatch (`[eventing]` in `rouse.toml`).

use std::time::Duration;

use rouse_api::duration::deserialize_duration;
use serde::Deserialize;

/// Largest event accepted (attributes and data), in bytes; larger gets 413. Knative's
/// ingress has no limit of its own; 1 MiB matches what most CloudEvents transports carry.
pub(crate) const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Largest batched request accepted, in bytes; each event in it must also fit
/// [`DEFAULT_MAX_EVENT_BYTES`]. A batch is one append, so this bounds one transaction too.
pub(crate) const DEFAULT_MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Deliveries a trigger has in flight at once. Enough to keep a fast subscriber busy over
/// keep-alive connections, and the bound on how many events can wait in backoff before the
/// trigger stops reading ahead.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// How often a trigger's cursor is written while it moves; a crash redelivers at most this
/// much (at-least-once), and writes stay few under load.
pub(crate) const DEFAULT_CURSOR_INTERVAL: Duration = Duration::from_millis(200);
/// How often events every trigger of a broker has handled are deleted from the log.
pub(crate) const DEFAULT_TRIM_INTERVAL: Duration = Duration::from_secs(10);
/// How long deliveries in flight may take to finish when a trigger stops (shutdown, update);
/// those still running after it are redelivered on the next start.
pub(crate) const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Eventing settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct EventingConfig {
    /// See [`DEFAULT_MAX_EVENT_BYTES`].
    pub max_event_bytes: usize,
    /// See [`DEFAULT_MAX_BATCH_BYTES`].
    pub max_batch_bytes: usize,
    /// See [`DEFAULT_MAX_IN_FLIGHT`].
    pub max_in_flight: usize,
    /// See [`DEFAULT_CURSOR_INTERVAL`].
    #[serde(deserialize_with = "deserialize_duration")]
    pub cursor_interval: Duration,
    /// See [`DEFAULT_TRIM_INTERVAL`].
    #[serde(deserialize_with = "deserialize_duration")]
    pub trim_interval: Duration,
    /// See [`DEFAULT_DRAIN_TIMEOUT`].
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
