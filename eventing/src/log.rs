//! The event log: append-only per broker, read from any offset, one cursor per subscriber.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::EventLogError;

/// Durable, ordered storage of events. The embedded store implements it today; a NATS
/// JetStream or Kafka backend implements the same trait to grow past one machine.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends events to `broker`'s log; returns their offsets once they are on disk.
    async fn append(&self, broker: &str, events: Vec<Bytes>) -> Result<Vec<u64>, EventLogError>;

    /// Up to `limit` events of `broker` from offset `from` on, in order.
    async fn read(&self, broker: &str, from: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, EventLogError>;

    /// The next offset `subscriber` has to handle (0 when it has handled none).
    async fn cursor(&self, subscriber: &str) -> Result<u64, EventLogError>;

    /// Records that `subscriber` handled everything before `next`.
    async fn set_cursor(&self, subscriber: &str, next: u64) -> Result<(), EventLogError>;
}
