//! The event log: append-only per broker, read from any offset, one cursor per subscriber.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::EventLogError;

/// Durable, ordered storage of events. The embedded store implements it today; a NATS
/// JetStream or Kafka backend implements the same trait to grow past one machine.
///
/// Offsets of a broker start at 0 and only grow: trimming or deleting events never hands an
/// offset out twice, so a subscriber's cursor stays meaningful whatever happened to the log.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends events to `broker`'s log; returns their offsets once they are on disk.
    async fn append(&self, broker: &str, events: Vec<Bytes>) -> Result<Vec<u64>, EventLogError>;

    /// Up to `limit` events of `broker` from offset `from` on, in order.
    async fn read(&self, broker: &str, from: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, EventLogError>;

    /// The offset the next event appended to `broker` will get (0 for a broker never written).
    async fn head(&self, broker: &str) -> Result<u64, EventLogError>;

    /// The next offset `subscriber` has to handle; `None` when it never recorded one.
    async fn cursor(&self, subscriber: &str) -> Result<Option<u64>, EventLogError>;

    /// Every recorded cursor whose subscriber name starts with `prefix`.
    async fn cursors(&self, prefix: &str) -> Result<Vec<(String, u64)>, EventLogError>;

    /// Records that `subscriber` handled everything before `next`.
    async fn set_cursor(&self, subscriber: &str, next: u64) -> Result<(), EventLogError>;

    /// Forgets `subscriber`'s cursor (the subscriber was deleted).
    async fn delete_cursor(&self, subscriber: &str) -> Result<(), EventLogError>;

    /// Deletes `broker`'s events before offset `before` (every subscriber has handled them).
    async fn trim(&self, broker: &str, before: u64) -> Result<(), EventLogError>;

    /// Deletes all of `broker`'s events; its offsets keep counting from where they were.
    async fn delete_broker(&self, broker: &str) -> Result<(), EventLogError>;

    /// Whether writes work: `Err` with the last failure while they do not (a full disk). A
    /// backend that recovers on its own checks here whether it has.
    async fn health(&self) -> Result<(), EventLogError> {
        Ok(())
    }
}

/// The log of a daemon whose event log could not be opened (a damaged file): every call
/// fails with why, so brokers answer 503 and `/healthz` names the file, while serving, which
/// needs no event log, goes on.
pub struct UnavailableLog {
    error: EventLogError,
}

impl UnavailableLog {
    pub fn new(error: EventLogError) -> Self {
        Self { error }
    }

    fn fail<T>(&self) -> Result<T, EventLogError> {
        Err(self.error.clone())
    }
}

#[async_trait]
impl EventLog for UnavailableLog {
    async fn append(&self, _: &str, _: Vec<Bytes>) -> Result<Vec<u64>, EventLogError> {
        self.fail()
    }

    async fn read(&self, _: &str, _: u64, _: usize) -> Result<Vec<(u64, Bytes)>, EventLogError> {
        self.fail()
    }

    async fn head(&self, _: &str) -> Result<u64, EventLogError> {
        self.fail()
    }

    async fn cursor(&self, _: &str) -> Result<Option<u64>, EventLogError> {
        self.fail()
    }

    async fn cursors(&self, _: &str) -> Result<Vec<(String, u64)>, EventLogError> {
        self.fail()
    }

    async fn set_cursor(&self, _: &str, _: u64) -> Result<(), EventLogError> {
        self.fail()
    }

    async fn delete_cursor(&self, _: &str) -> Result<(), EventLogError> {
        self.fail()
    }

    async fn trim(&self, _: &str, _: u64) -> Result<(), EventLogError> {
        self.fail()
    }

    async fn delete_broker(&self, _: &str) -> Result<(), EventLogError> {
        self.fail()
    }

    async fn health(&self) -> Result<(), EventLogError> {
        self.fail()
    }
}
