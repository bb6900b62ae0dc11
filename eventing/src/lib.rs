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
//! - `log`: the [`EventLog`] trait, the seam for NATS JetStream or Kafka later.
//! - `redb_log`: the embedded implementation, with group commit.
//! - `ingress`: brokers, and the HTTP endpoint that stores events in them.
//! - `respond`: every response a sender can get from the ingress.
//! - `sink`: the [`Resolve`] seam through which the daemon addresses sinks.
//! - `delivery`: pure decisions: what is retried, backoff, dead-letter extensions.
//! - `dispatcher`: one task per trigger: filter, deliver, reply, move the cursor.
//! - `ping`: ping source schedules (cron, time zones) and the events they send.
//! - `metrics`: what eventing counts, for Prometheus.
//! - `error`: the log's errors, and the reasons a sender's event is refused.

#![forbid(unsafe_code)]

mod cloudevent;
mod config;
mod delivery;
mod dispatcher;
mod error;
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
