//! Errors of the eventing crate.

/// What went wrong with the event log, naming the broker or subscriber concerned.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EventLogError {
    /// The store failed (disk full, corrupt file, ...).
    #[error("event log: {0}")]
    Store(String),
    /// The log is closed (the daemon is shutting down).
    #[error("the event log is closed")]
    Closed,
}
