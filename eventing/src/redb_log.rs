//! The event log in an embedded redb database, with group commit.
//!
//! One fsync per event would cap ingest at the disk's sync rate (a few hundred to a few
//! thousand per second). Writes instead go to one writer thread that takes every write
//! waiting at that moment (appends, cursor moves, trims) into a single write transaction,
//! commits it (one fsync), and only then answers each caller: a caller hears "stored" only
//! once its write is on disk, and under load one fsync covers many events and cursors.
//! Cursor writes go through the same thread because redb allows one write transaction at a
//! time: a cursor committed on its own would make appends wait for its fsync.
//!
//! A failed commit (a full disk, an I/O error) makes redb refuse every later write until the
//! database is opened again, which repairs it. So the writer drops the database after a
//! failure and opens it anew before the next write: writes fail (the broker answers 503)
//! while the disk is full, and work again as soon as there is room, without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
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

/// Events deleted per transaction by a trim: a trim of a long backlog is many short writes.
const TRIM_CHUNK: u64 = 8192;
/// Most writes folded into one transaction: bounds the latency of the first one in a batch.
const MAX_BATCH: usize = 4096;
/// The key a health probe writes in the heads table.
const PROBE_KEY: &str = "_probe";
/// Writes waiting for the writer before callers wait for room.
const QUEUE: usize = 16 * 1024;

fn store_error(e: impl Into<redb::Error>) -> EventLogError {
    EventLogError::Store(std::sync::Arc::new(e.into()))
}

/// One write waiting for the writer thread.
enum Write {
    Append {
        broker: String,
        events: Vec<Bytes>,
        done: oneshot::Sender<Result<Vec<u64>, EventLogError>>,
    },
    /// Sets (`Some`) or deletes (`None`) a cursor.
    Cursor {
        subscriber: String,
        next: Option<u64>,
        done: oneshot::Sender<Result<(), EventLogError>>,
    },
    /// Deletes a broker's events from `from` up to `before` (`None`: all of them).
    Trim {
        broker: String,
        from: u64,
        before: Option<u64>,
        done: oneshot::Sender<Result<(), EventLogError>>,
    },
    /// Writes nothing: checks that a transaction commits (reopening the database first if a
    /// failure closed it).
    Probe {
        done: oneshot::Sender<Result<(), EventLogError>>,
    },
}

/// The database, closed after a failed commit and opened again by the writer.
struct Handle {
    path: PathBuf,
    db: RwLock<Option<Arc<Database>>>,
    /// The last commit's failure, while it has not been followed by a success.
    failing: Mutex<Option<EventLogError>>,
}

impl Handle {
    fn open(path: &Path) -> Result<Database, EventLogError> {
        let db = Database::create(path).map_err(|e| EventLogError::Open {
            path: path.display().to_string(),
            source: std::sync::Arc::new(redb::Error::from(e)),
        })?;
        let txn = db.begin_write().map_err(store_error)?;
        txn.open_table(EVENTS).map_err(store_error)?;
        txn.open_table(HEADS).map_err(store_error)?;
        txn.open_table(CURSORS).map_err(store_error)?;
        txn.commit().map_err(store_error)?;
        Ok(db)
    }

    /// The open database, for a read or a write.
    fn get(&self) -> Result<Arc<Database>, EventLogError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        match &*db {
            Some(db) => Ok(db.clone()),
            None => Err(self.failing().unwrap_or(EventLogError::Closed)),
        }
    }

    fn failing(&self) -> Option<EventLogError> {
        self.failing.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_failing(&self, error: Option<EventLogError>) {
        *self.failing.lock().unwrap_or_else(PoisonError::into_inner) = error;
    }

    /// After a failed commit: closes the database, so the next write opens (and repairs) it.
    fn close(&self, error: EventLogError) {
        self.set_failing(Some(error));
        self.db.write().unwrap_or_else(PoisonError::into_inner).take();
    }

    /// The database for the writer, opened again if a failure closed it. A read still holding
    /// the old one keeps its file lock a moment: then the next write tries again.
    fn for_writing(&self) -> Result<Arc<Database>, EventLogError> {
        if let Ok(db) = self.get() {
            return Ok(db);
        }
        let db = Arc::new(Self::open(&self.path)?);
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = Some(db.clone());
        tracing::info!(path = %self.path.display(), "event log reopened after a write failure");
        Ok(db)
    }
}

impl Write {
    /// Answers the caller: offsets for an append, nothing for the others.
    fn answer(self, result: Result<Vec<u64>, EventLogError>) {
        // A caller that stopped waiting (its task was cancelled) is no error: the write is
        // committed (or failed) either way.
        match self {
            Write::Append { done, .. } => {
                let _ = done.send(result);
            }
            Write::Cursor { done, .. } | Write::Trim { done, .. } | Write::Probe { done } => {
                let _ = done.send(result.map(drop));
            }
        }
    }
}

/// The embedded event log.
pub struct RedbLog {
    handle: Arc<Handle>,
    writes: Option<mpsc::Sender<Write>>,
    writer: Option<JoinHandle<()>>,
    /// Write transactions committed, for tests and metrics.
    commits: Arc<AtomicU64>,
}

impl RedbLog {
    /// Opens (or creates) the log at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, EventLogError> {
        let db = Handle::open(path)?;
        let handle = Arc::new(Handle {
            path: path.to_path_buf(),
            db: RwLock::new(Some(Arc::new(db))),
            failing: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let writer = {
            let handle = handle.clone();
            let commits = commits.clone();
            std::thread::Builder::new()
                .name("rouse-event-log".to_string())
                .spawn(move || write_loop(&handle, rx, &commits))
                .map_err(|e| EventLogError::Store(Arc::new(e)))?
        };
        Ok(Self {
            handle,
            writes: Some(tx),
            writer: Some(writer),
            commits,
        })
    }

    /// Write transactions committed so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    async fn write<T>(
        &self,
        write: Write,
        answer: oneshot::Receiver<Result<T, EventLogError>>,
    ) -> Result<T, EventLogError> {
        self.writes
            .as_ref()
            .ok_or(EventLogError::Closed)?
            .send(write)
            .await
            .map_err(|_| EventLogError::Closed)?;
        answer.await.map_err(|_| EventLogError::Closed)?
    }
}

impl Drop for RedbLog {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and stop.
        self.writes.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread: batch, commit once, answer everyone in the batch.
fn write_loop(handle: &Handle, mut writes: mpsc::Receiver<Write>, commits: &AtomicU64) {
    let mut heads: HashMap<String, u64> = HashMap::new();
    while let Some(first) = writes.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match writes.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let committed = handle
            .for_writing()
            .and_then(|db| commit_batch(&db, &batch, &mut heads));
        match committed {
            Ok(answers) => {
                commits.fetch_add(1, Ordering::Relaxed);
                if handle.failing().is_some() {
                    handle.set_failing(None);
                    tracing::info!("event log writes work again");
                }
                for (write, answer) in batch.into_iter().zip(answers) {
                    write.answer(Ok(answer));
                }
            }
            Err(e) => {
                // One line when writes start failing (and one when they work again): while the
                // disk stays full every commit fails alike, and the broker counts each refusal.
                if handle.failing().is_none() {
                    tracing::warn!(error = %e, writes = batch.len(), "event log commit failed; it is reopened before each next write until one succeeds");
                } else {
                    tracing::debug!(error = %e, writes = batch.len(), "event log commit failed again");
                }
                // Offsets handed out in the failed transaction are not kept.
                heads.clear();
                handle.close(e.clone());
                for write in batch {
                    write.answer(Err(e.clone()));
                }
            }
        }
    }
}

fn commit_batch(
    db: &Database,
    batch: &[Write],
    heads: &mut HashMap<String, u64>,
) -> Result<Vec<Vec<u64>>, EventLogError> {
    let txn = db.begin_write().map_err(store_error)?;
    let mut answers = Vec::with_capacity(batch.len());
    {
        let mut events = txn.open_table(EVENTS).map_err(store_error)?;
        let mut stored_heads = txn.open_table(HEADS).map_err(store_error)?;
        let mut cursors = txn.open_table(CURSORS).map_err(store_error)?;
        for write in batch {
            match write {
                Write::Append {
                    broker, events: new, ..
                } => {
                    let next = match heads.get(broker) {
                        Some(next) => *next,
                        None => stored_heads
                            .get(broker.as_str())
                            .map_err(store_error)?
                            .map_or(0, |v| v.value()),
                    };
                    let mut offsets = Vec::with_capacity(new.len());
                    for (i, event) in new.iter().enumerate() {
                        let offset = next + i as u64;
                        events
                            .insert((broker.as_str(), offset), event.as_ref())
                            .map_err(store_error)?;
                        offsets.push(offset);
                    }
                    let head = next + new.len() as u64;
                    stored_heads.insert(broker.as_str(), head).map_err(store_error)?;
                    heads.insert(broker.clone(), head);
                    answers.push(offsets);
                }
                Write::Cursor { subscriber, next, .. } => {
                    match next {
                        Some(next) => cursors.insert(subscriber.as_str(), *next).map(drop),
                        None => cursors.remove(subscriber.as_str()).map(drop),
                    }
                    .map_err(store_error)?;
                    answers.push(Vec::new());
                }
                Write::Trim {
                    broker, from, before, ..
                } => {
                    let end = before.unwrap_or(u64::MAX);
                    events
                        .retain_in((broker.as_str(), *from)..(broker.as_str(), end), |_, _| false)
                        .map_err(store_error)?;
                    answers.push(Vec::new());
                }
                Write::Probe { .. } => {
                    // A real write, so that a probe on a full disk fails as an append would.
                    // Broker names are DNS labels: this key is nobody's head.
                    let probes = stored_heads
                        .get(PROBE_KEY)
                        .map_err(store_error)?
                        .map_or(0, |v| v.value());
                    stored_heads.insert(PROBE_KEY, probes + 1).map_err(store_error)?;
                    answers.push(Vec::new());
                }
            }
        }
    }
    txn.commit().map_err(store_error)?;
    Ok(answers)
}

impl RedbLog {
    /// The lowest offset `broker` still holds below `before`, if any.
    fn first_offset(&self, broker: &str, before: u64) -> Result<Option<u64>, EventLogError> {
        let txn = self.handle.get()?.begin_read().map_err(store_error)?;
        let events = txn.open_table(EVENTS).map_err(store_error)?;
        let mut range = events.range((broker, 0)..(broker, before)).map_err(store_error)?;
        match range.next() {
            Some(entry) => Ok(Some(entry.map_err(store_error)?.0.value().1)),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl EventLog for RedbLog {
    async fn append(&self, broker: &str, events: Vec<Bytes>) -> Result<Vec<u64>, EventLogError> {
        let (done, answer) = oneshot::channel();
        let write = Write::Append {
            broker: broker.to_string(),
            events,
            done,
        };
        self.write(write, answer).await
    }

    async fn read(&self, broker: &str, from: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, EventLogError> {
        let db = self.handle.get()?;
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
        .map_err(|e| EventLogError::Store(std::sync::Arc::new(e)))?
    }

    async fn head(&self, broker: &str) -> Result<u64, EventLogError> {
        let txn = self.handle.get()?.begin_read().map_err(store_error)?;
        let heads = txn.open_table(HEADS).map_err(store_error)?;
        Ok(heads.get(broker).map_err(store_error)?.map_or(0, |v| v.value()))
    }

    async fn cursor(&self, subscriber: &str) -> Result<Option<u64>, EventLogError> {
        let txn = self.handle.get()?.begin_read().map_err(store_error)?;
        let cursors = txn.open_table(CURSORS).map_err(store_error)?;
        Ok(cursors.get(subscriber).map_err(store_error)?.map(|v| v.value()))
    }

    async fn cursors(&self, prefix: &str) -> Result<Vec<(String, u64)>, EventLogError> {
        let txn = self.handle.get()?.begin_read().map_err(store_error)?;
        let cursors = txn.open_table(CURSORS).map_err(store_error)?;
        let mut out = Vec::new();
        for entry in cursors.range(prefix..).map_err(store_error)? {
            let (key, value) = entry.map_err(store_error)?;
            if !key.value().starts_with(prefix) {
                break;
            }
            out.push((key.value().to_string(), value.value()));
        }
        Ok(out)
    }

    async fn set_cursor(&self, subscriber: &str, next: u64) -> Result<(), EventLogError> {
        let (done, answer) = oneshot::channel();
        let write = Write::Cursor {
            subscriber: subscriber.to_string(),
            next: Some(next),
            done,
        };
        self.write(write, answer).await
    }

    async fn delete_cursor(&self, subscriber: &str) -> Result<(), EventLogError> {
        let (done, answer) = oneshot::channel();
        let write = Write::Cursor {
            subscriber: subscriber.to_string(),
            next: None,
            done,
        };
        self.write(write, answer).await
    }

    /// Deletes in chunks of `TRIM_CHUNK` events, each its own write: appends queued behind
    /// a trim wait for one chunk, never for all of it.
    async fn trim(&self, broker: &str, before: u64) -> Result<(), EventLogError> {
        let Some(mut from) = self.first_offset(broker, before)? else {
            return Ok(());
        };
        while from < before {
            let end = before.min(from.saturating_add(TRIM_CHUNK));
            let (done, answer) = oneshot::channel();
            let write = Write::Trim {
                broker: broker.to_string(),
                from,
                before: Some(end),
                done,
            };
            self.write(write, answer).await?;
            from = end;
        }
        Ok(())
    }

    async fn health(&self) -> Result<(), EventLogError> {
        if self.handle.failing().is_none() {
            return Ok(());
        }
        // Failing: see whether a write works now (the disk may have room again).
        let (done, answer) = oneshot::channel();
        self.write(Write::Probe { done }, answer).await
    }

    async fn delete_broker(&self, broker: &str) -> Result<(), EventLogError> {
        let (done, answer) = oneshot::channel();
        let write = Write::Trim {
            broker: broker.to_string(),
            from: 0,
            before: None,
            done,
        };
        self.write(write, answer).await
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
        assert_eq!(log.cursor("b/trigger").await.unwrap(), Some(2));
        assert_eq!(log.cursor("b/unknown").await.unwrap(), None);
        assert_eq!(log.head("b").await.unwrap(), 3);
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

    #[tokio::test]
    async fn head_counts_appends_and_unknown_brokers_start_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let log = RedbLog::open(&dir.path().join("events.redb")).unwrap();
        assert_eq!(log.head("b").await.unwrap(), 0);
        log.append("b", vec![event(0), event(1)]).await.unwrap();
        assert_eq!(log.head("b").await.unwrap(), 2);
        assert_eq!(log.head("other").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn trim_deletes_only_older_events_of_that_broker() {
        let dir = tempfile::tempdir().unwrap();
        let log = RedbLog::open(&dir.path().join("events.redb")).unwrap();
        log.append("b", (0..5).map(event).collect()).await.unwrap();
        log.append("c", (0..5).map(event).collect()).await.unwrap();
        log.trim("b", 3).await.unwrap();
        let offsets: Vec<u64> = log.read("b", 0, 10).await.unwrap().iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, [3, 4]);
        // A long backlog goes in chunks, all of it.
        log.append("b", (0..20_000).map(event).collect()).await.unwrap();
        let commits = log.commits.load(Ordering::Relaxed);
        log.trim("b", 20_000).await.unwrap();
        let offsets: Vec<u64> = log.read("b", 0, 10).await.unwrap().iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, [20_000, 20_001, 20_002, 20_003, 20_004]);
        assert_eq!(
            log.commits.load(Ordering::Relaxed) - commits,
            3,
            "20,000 events in chunks of 8192"
        );
        assert_eq!(
            log.read("c", 0, 10).await.unwrap().len(),
            5,
            "another broker is untouched"
        );
        assert_eq!(log.head("b").await.unwrap(), 20_005);
    }

    #[tokio::test]
    async fn deleting_a_broker_keeps_its_offsets_counting() {
        let dir = tempfile::tempdir().unwrap();
        let log = RedbLog::open(&dir.path().join("events.redb")).unwrap();
        log.append("b", vec![event(0), event(1)]).await.unwrap();
        log.delete_broker("b").await.unwrap();
        assert!(log.read("b", 0, 10).await.unwrap().is_empty());
        // A cursor of an old trigger never points at a new event it did not see.
        assert_eq!(log.append("b", vec![event(2)]).await.unwrap(), [2]);
    }

    #[tokio::test]
    async fn cursors_are_listed_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let log = RedbLog::open(&dir.path().join("events.redb")).unwrap();
        for (name, next) in [
            ("trigger/a/x", 1),
            ("trigger/a/y", 2),
            ("trigger/ab/z", 3),
            ("trigger/b/x", 4),
        ] {
            log.set_cursor(name, next).await.unwrap();
        }
        let listed = log.cursors("trigger/a/").await.unwrap();
        assert_eq!(listed, [("trigger/a/x".to_string(), 1), ("trigger/a/y".to_string(), 2)]);
        assert!(log.cursors("nothing/").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn deleted_cursors_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let log = RedbLog::open(&dir.path().join("events.redb")).unwrap();
        log.set_cursor("t", 7).await.unwrap();
        log.delete_cursor("t").await.unwrap();
        assert_eq!(log.cursor("t").await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cursor_writes_share_commits_with_appends() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(RedbLog::open(&dir.path().join("events.redb")).unwrap());
        let mut writers = tokio::task::JoinSet::new();
        for writer in 0..64u64 {
            let log = log.clone();
            writers.spawn(async move {
                for i in 0..10 {
                    log.append("b", vec![event(i)]).await.unwrap();
                    log.set_cursor(&format!("t{writer}"), i as u64).await.unwrap();
                }
            });
        }
        while let Some(done) = writers.join_next().await {
            done.unwrap();
        }
        assert_eq!(log.cursor("t63").await.unwrap(), Some(9));
        assert!(log.commits() < 1280, "{} commits for 1280 writes", log.commits());
    }
}
