//! Eventing: CloudEvents from sources, through brokers, to subscribers.
//!
//! This crate will own broker ingress, triggers and their filters, delivery with retries and
//! dead letters, replies and sources. It starts with what all of them stand on: the durable
//! event log, where an event is on disk before its sender hears 202, and from which each
//! subscriber reads at its own cursor.
//!
//! Layout, in reading order:
//! - [`log`]: the [`EventLog`] trait, the seam for NATS JetStream or Kafka later.
//! - [`redb_log`]: the embedded implementation, with group commit.
//! - [`error`]: the one error type of this crate.

#![forbid(unsafe_code)]

pub mod error;
pub mod log;
pub mod redb_log;

pub use error::EventLogError;
pub use log::EventLog;
pub use redb_log::RedbLog;
