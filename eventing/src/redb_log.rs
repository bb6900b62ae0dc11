//! The event log in an embedded redb database, with group commit.
//!
//! One fsync per event would cap ingest at the disk's sync rate (a few hundred to a few
//! thousand per second). Appends instead go to one writer thread that takes every append
//! waiting at that moment into a single write transaction, commits it (one fsync), and only
//! then answers each caller: a caller hears "stored" only once its events are on disk, and
//! under load one fsync covers many events.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use crate::error::EventLogError;
use crate::log::EventLog;

/// Events by (broker, offset).
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
/// Next offset per broker.
const HEADS: TableDefinition<&str, u64> = TableDefinition::new("heads");
/// Next offset to handle, per subscriber.
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");

/// Most appends folded into one transaction: bounds the latency of the first one in a batch.
const MAX_BATCH: usize = 4096;
/// Appends waiting for the writer before callers wait for room.
const QUEUE: usize = 16 * 1024;

fn store_error(e: impl std::fmt::Display) -> EventLogError {
    EventLogError::Store(e.to_string())
}

struct Append {
    broker: String,
    events: Vec<Bytes>,
    done: oneshot::Sender<Result<Vec<u64>, EventLogError>>,
}

/// The embedded event log.
pub struct RedbLog {
    db: Arc<Database>,
    appends: Option<mpsc::Sender<Append>>,
    writer: Option<JoinHandle<()>>,
    /// Write transactions committed, for tests and metrics.
    commits: Arc<AtomicU64>,
}

impl RedbLog {
    /// Opens (or creates) the log at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, EventLogError> {
        let db =
            Database::create(path).map_err(|e| EventLogError::Store(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(store_error)?;
        txn.open_table(EVENTS).map_err(store_error)?;
        txn.open_table(HEADS).map_err(store_error)?;
        txn.open_table(CURSORS).map_err(store_error)?;
        txn.commit().map_err(store_error)?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let writer = {
            let db = db.clone();
            let commits = commits.clone();
            std::thread::Builder::new()
                .name("rouse-event-log".to_string())
                .spawn(move || write_loop(&db, rx, &commits))
                .map_err(store_error)?
        };
        Ok(Self {
            db,
            appends: Some(tx),
            writer: Some(writer),
            commits,
        })
    }

    /// Write transactions committed so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

impl Drop for RedbLog {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and stop.
        self.appends.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread: batch, commit once, answer everyone in the batch.
fn write_loop(db: &Database, mut appends: mpsc::Receiver<Append>, commits: &AtomicU64) {
    let mut heads: HashMap<String, u64> = HashMap::new();
    while let Some(first) = appends.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match appends.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        match commit_batch(db, &batch, &mut heads) {
            Ok(offsets) => {
                commits.fetch_add(1, Ordering::Relaxed);
                for (append, offsets) in batch.into_iter().zip(offsets) {
                    let _ = append.done.send(Ok(offsets));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, events = batch.len(), "event log commit failed");
                // Offsets handed out in the failed transaction are not kept.
                heads.clear();
                for append in batch {
                    let _ = append.done.send(Err(e.clone()));
                }
            }
        }
    }
}

fn commit_batch(
    db: &Database,
    batch: &[Append],
    heads: &mut HashMap<String, u64>,
) -> Result<Vec<Vec<u64>>, EventLogError> {
    let txn = db.begin_write().map_err(store_error)?;
    let mut all = Vec::with_capacity(batch.len());
    {
        let mut events = txn.open_table(EVENTS).map_err(store_error)?;
        let mut stored_heads = txn.open_table(HEADS).map_err(store_error)?;
        for append in batch {
            let next = match heads.get(&append.broker) {
                Some(next) => *next,
                None => stored_heads
                    .get(append.broker.as_str())
                    .map_err(store_error)?
                    .map_or(0, |v| v.value()),
            };
            let mut offsets = Vec::with_capacity(append.events.len());
            for (i, event) in append.events.iter().enumerate() {
                let offset = next + i as u64;
                events
                    .insert((append.broker.as_str(), offset), event.as_ref())
                    .map_err(store_error)?;
                offsets.push(offset);
            }
            let head = next + append.events.len() as u64;
            stored_heads.insert(append.broker.as_str(), head).map_err(store_error)?;
            heads.insert(append.broker.clone(), head);
            all.push(offsets);
        }
    }
    txn.commit().map_err(store_error)?;
    Ok(all)
}

#[async_trait]
impl EventLog for RedbLog {
    async fn append(&self, broker: &str, events: Vec<Bytes>) -> Result<Vec<u64>, EventLogError> {
        let (done, stored) = oneshot::channel();
        let append = Append {
            broker: broker.to_string(),
            events,
            done,
        };
        self.appends
            .as_ref()
            .ok_or(EventLogError::Closed)?
            .send(append)
            .await
            .map_err(|_| EventLogError::Closed)?;
        stored.await.map_err(|_| EventLogError::Closed)?
    }

    async fn read(&self, broker: &str, from: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, EventLogError> {
        let db = self.db.clone();
        let broker = broker.to_string();
        // redb reads are blocking; keep them off the async workers.
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(store_error)?;
            let events = txn.open_table(EVENTS).map_err(store_error)?;
            let mut out = Vec::new();
            for entry in events
                .range((broker.as_str(), from)..=(broker.as_str(), u64::MAX))
                .map_err(store_error)?
            {
                if out.len() == limit {
                    break;
                }
                let (key, value) = entry.map_err(store_error)?;
                out.push((key.value().1, Bytes::copy_from_slice(value.value())));
            }
            Ok(out)
        })
        .await
        .map_err(store_error)?
    }

    async fn cursor(&self, subscriber: &str) -> Result<u64, EventLogError> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let cursors = txn.open_table(CURSORS).map_err(store_error)?;
        Ok(cursors.get(subscriber).map_err(store_error)?.map_or(0, |v| v.value()))
    }

    async fn set_cursor(&self, subscriber: &str, next: u64) -> Result<(), EventLogError> {
        let txn = self.db.begin_write().map_err(store_error)?;
        {
            let mut cursors = txn.open_table(CURSORS).map_err(store_error)?;
            cursors.insert(subscriber, next).map_err(store_error)?;
        }
        txn.commit().map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize) -> Bytes {
        Bytes::from(format!("{{\"id\":\"{i}\"}}"))
    }

    #[tokio::test]
    async fn appends_get_ordered_offsets_per_broker_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = RedbLog::open(&dir.path().join("events.redb")).unwrap();
        assert_eq!(log.append("default", vec![event(0), event(1)]).await.unwrap(), [0, 1]);
        assert_eq!(log.append("other", vec![event(9)]).await.unwrap(), [0]);
        assert_eq!(log.append("default", vec![event(2)]).await.unwrap(), [2]);
        let read = log.read("default", 1, 10).await.unwrap();
        assert_eq!(read, [(1, event(1)), (2, event(2))]);
        assert_eq!(log.read("default", 0, 1).await.unwrap().len(), 1);
        assert!(log.read("default", 3, 10).await.unwrap().is_empty());
        assert_eq!(log.read("other", 0, 10).await.unwrap(), [(0, event(9))]);
    }

    #[tokio::test]
    async fn events_and_cursors_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.redb");
        {
            let log = RedbLog::open(&path).unwrap();
            log.append("b", vec![event(0), event(1), event(2)]).await.unwrap();
            log.set_cursor("b/trigger", 2).await.unwrap();
        }
        let log = RedbLog::open(&path).unwrap();
        assert_eq!(log.cursor("b/trigger").await.unwrap(), 2);
        assert_eq!(log.cursor("b/unknown").await.unwrap(), 0);
        assert_eq!(log.read("b", 0, 10).await.unwrap().len(), 3);
        // Offsets continue where they were.
        assert_eq!(log.append("b", vec![event(3)]).await.unwrap(), [3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(RedbLog::open(&dir.path().join("events.redb")).unwrap());
        let mut senders = tokio::task::JoinSet::new();
        for sender in 0..64 {
            let log = log.clone();
            senders.spawn(async move {
                for i in 0..20 {
                    log.append("default", vec![event(sender * 100 + i)]).await.unwrap();
                }
            });
        }
        while let Some(done) = senders.join_next().await {
            done.unwrap();
        }
        let all = log.read("default", 0, 10_000).await.unwrap();
        assert_eq!(all.len(), 64 * 20);
        let offsets: Vec<u64> = all.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, (0..1280).collect::<Vec<u64>>(), "no gap, no duplicate");
        assert!(
            log.commits() < 1280,
            "{} commits for 1280 appends: group commit must batch",
            log.commits()
        );
    }
}
