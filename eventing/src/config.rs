//! Limits of the broker ingress and the pace of dispatch (`[eventing]` in `rouse.toml`).

use std::time::Duration;

use rouse_api::duration::deserialize_duration;
use serde::Deserialize;

/// Default of [`EventingConfig::max_event_bytes`].
pub(crate) const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Default of [`EventingConfig::max_batch_bytes`].
pub(crate) const DEFAULT_MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Default of [`EventingConfig::max_batch_events`].
pub(crate) const DEFAULT_MAX_BATCH_EVENTS: usize = 10_000;
/// Default of [`EventingConfig::max_extensions`].
pub(crate) const DEFAULT_MAX_EXTENSIONS: usize = 80;
/// Default of [`EventingConfig::max_attribute_bytes`].
pub(crate) const DEFAULT_MAX_ATTRIBUTE_BYTES: usize = 16 * 1024;
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
    /// Most events in one batched request; more gets 413. Each event is checked as the batch
    /// is read, so a batch costs memory for its events, never for what it claims to hold.
    pub max_batch_events: usize,
    /// Most extension attributes one event may carry; more gets 400. Deliveries carry each
    /// extension as a `ce-` header, and receivers limit headers: hyper's servers (Rouse's
    /// ingress among them) take at most 100. 80 leaves room for the context attributes, the
    /// TTL, the dead-letter extensions and the HTTP headers of a delivery, so an event
    /// accepted stays deliverable to a service and to its dead-letter sink.
    pub max_extensions: usize,
    /// Most bytes of attribute names and values (all but `data`) in one event; more gets
    /// 413. The same reason: attributes become headers, percent-encoded (up to three bytes
    /// each), and Rouse's ingress takes 64 KiB of headers.
    pub max_attribute_bytes: usize,
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
            max_batch_events: DEFAULT_MAX_BATCH_EVENTS,
            max_extensions: DEFAULT_MAX_EXTENSIONS,
            max_attribute_bytes: DEFAULT_MAX_ATTRIBUTE_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            cursor_interval: DEFAULT_CURSOR_INTERVAL,
            trim_interval: DEFAULT_TRIM_INTERVAL,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

impl EventingConfig {
    /// The limits on an event's shape that the parsers enforce as they read.
    pub(crate) fn shape(&self) -> crate::cloudevent::Limits {
        crate::cloudevent::Limits {
            batch_events: self.max_batch_events,
            extensions: self.max_extensions,
            attribute_bytes: self.max_attribute_bytes,
        }
    }
}
