//! A trigger's feed: the seam between a trigger's task and the log that holds its broker's
//! events. The feed hands out deliveries, at most the trigger's window unfinished at once, and
//! takes back a verdict on each: done (delivered, dead-lettered, dropped or filtered out), or
//! try again after a delay. Where the trigger stands, what is in flight, when a
//! retry is due and what survives a restart are the feed's business, so that a backend whose
//! engine does that work itself (JetStream's durable consumers) takes the place of the embedded
//! one without the trigger's task changing.
//!
//! The embedded feeds ([`EmbeddedFeeds`]) keep the cursor logic over the [`EventLog`]: a feed reads
//! from the trigger's durable cursor, tracks the window ([`Window`]), writes the cursor at most
//! once per `cursor-interval` (and at close), and holds retries in a timer queue in memory: an
//! event waiting for its retry when the daemon stops is delivered again after the restart, from
//! its first attempt. The log is trimmed below each broker's lowest cursor.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use async_trait::async_trait;

use crate::config::EventingConfig;
use crate::error::EventLogError;
use crate::ingress::BrokerIngress;
use crate::log::EventLog;

/// Wait after a failed log read or cursor write before trying again.
const LOG_RETRY: Duration = Duration::from_secs(1);

/// One event handed to a trigger.
#[derive(Debug)]
pub(crate) struct FeedItem {
    /// Its place in the broker's log; what a verdict names.
    pub(crate) seq: u64,
    /// 1 for the first attempt, then one more for each retry the feed handed it out for.
    pub(crate) attempt: u32,
    /// The event as the log stores it (a record: the event and when it was accepted).
    pub(crate) stored: Bytes,
}

/// How a delivery the feed handed out went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Finished: delivered, dead-lettered, dropped or filtered out. Never handed out again.
    Done,
    /// Hand it out again after this long, as its next attempt.
    Retry(Duration),
}

/// Where a trigger stands, for status and the backlog metric.
#[derive(Debug, Default)]
pub(crate) struct FeedProgress {
    /// Everything before this is finished (in memory, ahead of what is written).
    pub(crate) cursor: AtomicU64,
    /// Everything before this is finished, as last written to the log.
    pub(crate) persisted: AtomicU64,
}

/// A trigger's end of its feed. Dropping it without [`Feed::close`] stops the backend task
/// without the final cursor write.
pub(crate) struct Feed {
    /// Deliveries, a batch at a time (one wake of the trigger's task per batch, not per event).
    pub(crate) items: mpsc::UnboundedReceiver<Vec<FeedItem>>,
    verdicts: mpsc::UnboundedSender<Vec<(u64, Verdict)>>,
    pub(crate) progress: Arc<FeedProgress>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Feed {
    /// Says how the deliveries of `verdicts` went (by their `seq`), all at once: one wake of
    /// the backend's task for them all.
    pub(crate) fn verdicts(&self, verdicts: Vec<(u64, Verdict)>) {
        if !verdicts.is_empty() {
            // The task only goes at close, after every verdict sent before it.
            let _ = self.verdicts.send(verdicts);
        }
    }

    /// Ends the feed: verdicts given so far count, and what the trigger still holds is handed
    /// out again later (after a restart, or by another daemon).
    pub(crate) async fn close(self) {
        self.stop.cancel();
        drop(self.verdicts);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "feed task failed");
        }
    }
}

/// Which offsets a trigger holds, and so where its cursor is: the lowest offset not finished.
/// Offsets before `next_read` that are not in flight are finished.
#[derive(Debug)]
pub(crate) struct Window {
    next_read: u64,
    in_flight: BTreeSet<u64>,
}

impl Window {
    pub(crate) fn new(cursor: u64) -> Self {
        Self {
            next_read: cursor,
            in_flight: BTreeSet::new(),
        }
    }

    /// `offset` was read (offsets come in order; gaps are trimmed events).
    pub(crate) fn read(&mut self, offset: u64) {
        self.next_read = self.next_read.max(offset + 1);
    }

    /// A delivery of `offset` started.
    pub(crate) fn start(&mut self, offset: u64) {
        self.in_flight.insert(offset);
    }

    /// The delivery of `offset` finished.
    pub(crate) fn finish(&mut self, offset: u64) {
        self.in_flight.remove(&offset);
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Everything before this offset is finished.
    pub(crate) fn cursor(&self) -> u64 {
        self.in_flight.first().copied().unwrap_or(self.next_read)
    }
}

/// Where triggers get their feeds: the embedded log today, JetStream's consumers next.
#[async_trait]
pub(crate) trait Feeds: Send + Sync {
    /// The feed of trigger `name` on `broker`: from where it stopped, or, for a trigger new to
    /// the broker, from the broker's head (as Knative's: it sees the events sent after it).
    async fn open(&self, broker: &str, name: &str) -> Result<Feed, EventLogError>;

    /// Forgets trigger `name`'s position on `broker` (deleted, or moved to another broker).
    async fn delete(&self, broker: &str, name: &str) -> Result<(), EventLogError>;
}

/// The embedded log's feeds: each trigger's cursor is a record of the log, and the log is
/// trimmed below the lowest cursor of each broker.
pub(crate) struct EmbeddedFeeds {
    ingress: Arc<BrokerIngress>,
    /// Held while a feed opens and during each trim pass, so that a trigger being added cannot
    /// lose events to a trim that did not see its cursor yet.
    opening: tokio::sync::Mutex<()>,
}

impl EmbeddedFeeds {
    pub(crate) fn new(ingress: Arc<BrokerIngress>) -> Arc<Self> {
        Arc::new(Self {
            ingress,
            opening: tokio::sync::Mutex::new(()),
        })
    }

    /// Deletes events every trigger of their broker has handled, every trim interval, until
    /// `cancel`. A broker's trim point is the lowest cursor recorded for it (running or not: a
    /// trigger not yet restarted after a daemon restart still holds its events); with no
    /// trigger at all, its head, since a trigger created later starts there anyway.
    pub(crate) async fn trim_loop(self: Arc<Self>, cancel: CancellationToken) {
        let log = self.ingress.log().clone();
        let mut ticks = tokio::time::interval(self.ingress.config().trim_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; the daemon is still upserting its triggers then.
        ticks.tick().await;
        let mut trimmed: HashMap<String, u64> = HashMap::new();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let _opening = self.opening.lock().await;
            for broker in self.ingress.brokers() {
                let point = match log.cursors(&cursor_prefix(&broker)).await {
                    Ok(cursors) => match cursors.iter().map(|(_, cursor)| *cursor).min() {
                        Some(lowest) => Ok(lowest),
                        None => log.head(&broker).await,
                    },
                    Err(error) => Err(error),
                };
                let before = match point {
                    Ok(before) => before,
                    Err(error) => {
                        tracing::warn!(%broker, %error, "cannot find what to trim");
                        continue;
                    }
                };
                if trimmed.get(&broker).is_some_and(|done| *done >= before) {
                    continue;
                }
                match log.trim(&broker, before).await {
                    Ok(()) => {
                        trimmed.insert(broker, before);
                    }
                    Err(error) => tracing::warn!(%broker, %error, "cannot trim the event log"),
                }
            }
        }
    }
}

#[async_trait]
impl Feeds for EmbeddedFeeds {
    async fn open(&self, broker: &str, name: &str) -> Result<Feed, EventLogError> {
        let _opening = self.opening.lock().await;
        let log = self.ingress.log().clone();
        let key = cursor_key(broker, name);
        let start = match log.cursor(&key).await? {
            Some(cursor) => cursor,
            None => {
                let head = log.head(broker).await?;
                log.set_cursor(&key, head).await?;
                head
            }
        };
        tracing::debug!(trigger = %name, %broker, start, "trigger starting");
        let head = self.ingress.watch_head(broker).await?;
        Ok(open_embedded(
            log,
            self.ingress.config().clone(),
            broker.to_string(),
            key,
            start,
            head,
        ))
    }

    async fn delete(&self, broker: &str, name: &str) -> Result<(), EventLogError> {
        self.ingress.log().delete_cursor(&cursor_key(broker, name)).await
    }
}

fn cursor_prefix(broker: &str) -> String {
    format!("trigger/{broker}/")
}

/// Where trigger `name`'s cursor on `broker` lives in the log: `trigger/{broker}/{name}`.
fn cursor_key(broker: &str, name: &str) -> String {
    format!("{}{name}", cursor_prefix(broker))
}

/// The embedded feed of the trigger whose cursor is `cursor_key`, over `broker` in `log`,
/// from `start`; `head` wakes it when the broker gets events.
fn open_embedded(
    log: Arc<dyn EventLog>,
    config: EventingConfig,
    broker: String,
    cursor_key: String,
    start: u64,
    head: watch::Receiver<u64>,
) -> Feed {
    let (items_tx, items) = mpsc::unbounded_channel();
    let (verdicts, verdicts_rx) = mpsc::unbounded_channel();
    let progress = Arc::new(FeedProgress {
        cursor: AtomicU64::new(start),
        persisted: AtomicU64::new(start),
    });
    let stop = CancellationToken::new();
    let embedded = Embedded {
        log,
        config,
        broker,
        cursor_key,
        window: Window::new(start),
        held: HashMap::new(),
        due: BinaryHeap::new(),
        progress: progress.clone(),
        items: items_tx,
    };
    let task = tokio::spawn(embedded.run(head, verdicts_rx, stop.clone()));
    Feed {
        items,
        verdicts,
        progress,
        stop,
        task,
    }
}

struct Embedded {
    log: Arc<dyn EventLog>,
    config: EventingConfig,
    broker: String,
    cursor_key: String,
    window: Window,
    /// What each unfinished offset holds: its event and the attempt it was handed out for.
    held: HashMap<u64, (Bytes, u32)>,
    /// Retries, soonest first: (when, offset).
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    progress: Arc<FeedProgress>,
    items: mpsc::UnboundedSender<Vec<FeedItem>>,
}

impl Embedded {
    async fn run(
        mut self,
        mut head: watch::Receiver<u64>,
        mut verdicts: mpsc::UnboundedReceiver<Vec<(u64, Verdict)>>,
        stop: CancellationToken,
    ) {
        let max = self.config.max_in_flight;
        // Refill in chunks, not one read per finished delivery (each read is a trip to the
        // log's blocking pool); a trigger with little in flight reads at once.
        let refill_at = (max / 4).max(1);
        let mut caught_up = false;
        let mut persisted = self.window.cursor();
        // When the cursor, having moved, must be written at the latest.
        let mut flush_at: Option<Instant> = None;
        loop {
            if stop.is_cancelled() {
                break;
            }
            self.hand_out_due();
            let room = max.saturating_sub(self.window.in_flight());
            let refill = room >= refill_at || self.window.in_flight() < refill_at;
            if !caught_up && room > 0 && refill {
                // Mark the head seen before reading: an append after this wakes us again.
                head.borrow_and_update();
                match self.log.read(&self.broker, self.window.next_read, room).await {
                    Ok(batch) if batch.is_empty() => caught_up = true,
                    Ok(batch) => {
                        let mut items = Vec::with_capacity(batch.len());
                        for (offset, stored) in batch {
                            self.window.read(offset);
                            self.window.start(offset);
                            self.held.insert(offset, (stored.clone(), 1));
                            items.push(FeedItem {
                                seq: offset,
                                attempt: 1,
                                stored,
                            });
                        }
                        let _ = self.items.send(items);
                    }
                    Err(error) => {
                        tracing::warn!(broker = %self.broker, %error, "cannot read the event log; retrying");
                        if wait_or_stop(&stop, LOG_RETRY).await {
                            break;
                        }
                    }
                }
                continue;
            }
            let cursor = self.window.cursor();
            self.progress.cursor.store(cursor, Ordering::Relaxed);
            if cursor > persisted {
                // At most one write per interval, however many events finished in it.
                if flush_at.is_some_and(|at| at <= Instant::now()) {
                    flush_at = None;
                    match self.log.set_cursor(&self.cursor_key, cursor).await {
                        Ok(()) => {
                            persisted = cursor;
                            self.progress.persisted.store(cursor, Ordering::Relaxed);
                        }
                        Err(error) => {
                            tracing::warn!(cursor = %self.cursor_key, %error, "cannot write the cursor; retrying");
                            flush_at = Some(Instant::now() + LOG_RETRY);
                        }
                    }
                    continue;
                }
                flush_at.get_or_insert_with(|| Instant::now() + self.config.cursor_interval);
            }
            let next_due = self.due.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                given = verdicts.recv() => match given {
                    Some(given) => {
                        for (seq, verdict) in given {
                            self.apply(seq, verdict);
                        }
                    }
                    None => break,
                },
                changed = head.changed(), if caught_up => {
                    if changed.is_err() {
                        break;
                    }
                    caught_up = false;
                }
                () = sleep_until(flush_at.into_iter().chain(next_due).min()) => {}
            }
        }
        // Verdicts given before the close count.
        while let Ok(given) = verdicts.try_recv() {
            for (seq, verdict) in given {
                self.apply(seq, verdict);
            }
        }
        let cursor = self.window.cursor();
        self.progress.cursor.store(cursor, Ordering::Relaxed);
        if cursor > persisted {
            match self.log.set_cursor(&self.cursor_key, cursor).await {
                Ok(()) => self.progress.persisted.store(cursor, Ordering::Relaxed),
                Err(error) => tracing::warn!(cursor = %self.cursor_key, %error, "cannot write the cursor at stop"),
            }
        }
    }

    fn apply(&mut self, seq: u64, verdict: Verdict) {
        match verdict {
            Verdict::Done => {
                self.window.finish(seq);
                self.held.remove(&seq);
            }
            Verdict::Retry(delay) => {
                if self.held.contains_key(&seq) {
                    self.due.push(Reverse((Instant::now() + delay, seq)));
                }
            }
        }
    }

    /// Hands out again the retries whose time has come, each as its next attempt.
    fn hand_out_due(&mut self) {
        let now = Instant::now();
        let mut items = Vec::new();
        while let Some(Reverse((at, seq))) = self.due.peek().copied() {
            if at > now {
                break;
            }
            self.due.pop();
            if let Some((stored, attempt)) = self.held.get_mut(&seq) {
                *attempt += 1;
                items.push(FeedItem {
                    seq,
                    attempt: *attempt,
                    stored: stored.clone(),
                });
            }
        }
        if !items.is_empty() {
            let _ = self.items.send(items);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits `wait`; `true` when `stop` came first.
async fn wait_or_stop(stop: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(wait) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedbLog;

    /// The next item, however the feed batched them.
    async fn next(feed: &mut Feed, pending: &mut Vec<FeedItem>) -> FeedItem {
        if pending.is_empty() {
            let mut batch = tokio::time::timeout(Duration::from_secs(5), feed.items.recv())
                .await
                .expect("an item within 5 s")
                .expect("the feed goes on");
            batch.reverse();
            *pending = batch;
        }
        pending.pop().expect("a batch is never empty")
    }

    #[tokio::test]
    async fn the_embedded_feed_keeps_the_window_retries_after_the_delay_and_writes_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(RedbLog::open(&dir.path().join("events.redb")).unwrap());
        let events = (0..3).map(|i| Bytes::from(format!("event {i}"))).collect();
        assert_eq!(log.append("b", events).await.unwrap(), [0, 1, 2]);
        let config = EventingConfig {
            max_in_flight: 2,
            cursor_interval: Duration::from_millis(20),
            ..EventingConfig::default()
        };
        let (_head_tx, head) = watch::channel(3);
        let mut feed = open_embedded(log.clone(), config, "b".into(), "trigger/b/t".into(), 0, head);
        let mut pending = Vec::new();
        let (a, b) = (next(&mut feed, &mut pending).await, next(&mut feed, &mut pending).await);
        assert_eq!((a.seq, a.attempt, b.seq), (0, 1, 1));
        assert_eq!(a.stored, "event 0");
        // The window is two: nothing more until one is done.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), feed.items.recv())
                .await
                .is_err()
        );
        feed.verdicts(vec![
            (1, Verdict::Retry(Duration::from_millis(150))),
            (0, Verdict::Done),
        ]);
        let c = next(&mut feed, &mut pending).await;
        assert_eq!(c.seq, 2, "a slot freed: the next event");
        let asked = Instant::now();
        let again = next(&mut feed, &mut pending).await;
        assert_eq!((again.seq, again.attempt), (1, 2), "the retry, as its second attempt");
        assert!(asked.elapsed() >= Duration::from_millis(100), "not before its delay");
        feed.verdicts(vec![(2, Verdict::Done)]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            feed.progress.cursor.load(Ordering::Relaxed),
            1,
            "held by the one still unfinished"
        );
        assert_eq!(log.cursor("trigger/b/t").await.unwrap(), Some(1));
        // Closed with 1 unfinished: the cursor stays there, so it is delivered again.
        let progress = feed.progress.clone();
        feed.close().await;
        assert_eq!(progress.persisted.load(Ordering::Relaxed), 1);
        // Reopened at the cursor, it comes again from its first attempt; done, it is all done.
        let (_head_tx, head) = watch::channel(3);
        let mut feed = open_embedded(
            log.clone(),
            EventingConfig::default(),
            "b".into(),
            "trigger/b/t".into(),
            1,
            head,
        );
        let item = next(&mut feed, &mut pending).await;
        assert_eq!((item.seq, item.attempt), (1, 1));
        let rest = next(&mut feed, &mut pending).await;
        assert_eq!(rest.seq, 2, "read again: the cursor was below it");
        feed.verdicts(vec![(1, Verdict::Done), (2, Verdict::Done)]);
        feed.close().await;
        assert_eq!(log.cursor("trigger/b/t").await.unwrap(), Some(3));
    }

    #[test]
    fn the_cursor_waits_for_the_oldest_unfinished_delivery() {
        let mut window = Window::new(10);
        assert_eq!(window.cursor(), 10);
        for offset in 10..15 {
            window.read(offset);
        }
        window.start(11);
        window.start(13);
        assert_eq!(window.cursor(), 11, "10 was filtered out; 11 is in flight");
        window.finish(13);
        assert_eq!(window.cursor(), 11, "a later delivery finishing does not move it");
        window.finish(11);
        assert_eq!(window.cursor(), 15, "everything read is finished");
        window.read(20);
        assert_eq!(window.cursor(), 21, "a gap of trimmed offsets is skipped");
    }
}
