//! Eventing: CloudEvents from sources, through brokers, to subscribers.
//!
//! This crate owns the broker ingress (CloudEvents over HTTP in binary, structured and batched
//! mode), the durable event log, triggers and their filters, delivery with retries, backoff and
//! dead letters, replies, and sources. An event is on disk before its sender hears 202, and
//! each trigger reads the log at its own durable cursor. It must not reach services around the
//! activator: sinks are resolved by the daemon through [`Resolve`].
//!
//! Start with [`BrokerIngress`] and [`ingress_router`] (events in), then [`Dispatcher`] (events out).
//!
//! Layout, in reading order:
//! - `config`: size limits and the pace of dispatch (`[eventing]`).
//! - `cloudevent`: the event, its validation, its HTTP binding and its log record.
//! - `log`: the [`EventLog`] trait: the embedded log's storage (append, read, cursors, trim).
//! - `redb_log`: the embedded implementation, with group commit.
//! - `feed`: a trigger's feed, the seam a trigger's task sees: deliveries out, verdicts (done,
//!   retry after a delay) in; the embedded feed keeps cursor, window and retries over the log.
//! - `ingress`: brokers, and the HTTP endpoint that stores events in them.
//! - `respond`: every response a sender can get from the ingress.
//! - `sink`: the [`Resolve`] seam through which the daemon addresses sinks.
//! - `delivery`: pure decisions: what is retried, backoff, dead-letter extensions.
//! - `dispatcher`: one task per trigger: take from its feed, filter, deliver, reply.
//! - `ping`: ping source schedules (cron, time zones) and the events they send.
//! - `metrics`: what eventing counts, for Prometheus.
//! - `error`: the log's errors, and the reasons a sender's event is refused.
//! - `fuzzing` (hidden): the parsers and the record codec, for the fuzz targets in `fuzz/`.

#![forbid(unsafe_code)]

mod cloudevent;
mod config;
mod delivery;
mod dispatcher;
mod error;
mod feed;
mod ingress;
mod log;
mod metrics;
mod ping;
mod redb_log;
mod respond;
mod sink;

pub use cloudevent::{Event, binary, is_extension_name};
pub use config::EventingConfig;
pub use dispatcher::{Dispatcher, TriggerProgress};
pub use error::{EventError, EventLogError, IngestError, StoreError};
pub use ingress::{BrokerIngress, ingress_router};
pub use log::{EventLog, UnavailableLog};
pub use metrics::EventingMetrics;
pub use ping::{Schedule, ping_event_parts};
pub use redb_log::RedbLog;
pub use sink::{Resolve, Target};

/// The crate-private parsers and the log's record codec, for the fuzz targets in `fuzz/` (a
/// crate outside the workspace) and for nothing else: not an API, hidden from the docs.
///
/// Compiled always rather than behind a cargo feature: it is a few forwarding functions, and a
/// feature would be one more configuration of the crate to keep building. Each takes the
/// [`EventingConfig`] whose limits the ingress would enforce.
#[doc(hidden)]
pub mod fuzzing {
    use std::time::SystemTime;

    use bytes::Bytes;
    use http::HeaderMap;

    use crate::cloudevent::{binary, record, structured};
    use crate::{Event, EventError, EventLogError, EventingConfig};

    /// One structured event (`application/cloudevents+json`).
    pub fn parse_structured(body: &Bytes, config: &EventingConfig) -> Result<Event, EventError> {
        structured::parse(body, config.shape())
    }

    /// A batch (`application/cloudevents-batch+json`).
    pub fn parse_batch(body: &Bytes, config: &EventingConfig) -> Result<Vec<Event>, EventError> {
        structured::parse_batch(body, config.shape())
    }

    /// A binary-mode event.
    pub fn parse_binary(headers: &HeaderMap, body: Bytes, config: &EventingConfig) -> Result<Event, EventError> {
        binary::parse_limited(headers, body, config.shape())
    }

    /// An event as the log stores it.
    pub fn encode_record(event: &Event, accepted_at: SystemTime) -> Bytes {
        record::encode(event, accepted_at)
    }

    /// A stored event read back, with when it was accepted.
    pub fn decode_record(stored: Bytes) -> Result<(Event, SystemTime), EventLogError> {
        record::decode(stored).map(|r| (r.event, r.accepted_at))
    }
}
