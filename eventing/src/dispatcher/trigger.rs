//! One trigger's task: read its broker's log from the cursor, filter, deliver with many events
//! in flight, and move the durable cursor past what is finished.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::send::deliver;
use super::{Shared, TriggerRun};
use crate::cloudevent::record;

/// Wait after a failed log read or cursor write before trying again.
const LOG_RETRY: Duration = Duration::from_secs(1);

/// Which offsets a trigger holds, and so where its cursor is: the lowest offset not finished.
/// Offsets before `next_read` that are not in flight are finished (delivered, dead-lettered,
/// dropped or filtered out).
#[derive(Debug)]
pub(super) struct Window {
    next_read: u64,
    in_flight: BTreeSet<u64>,
}

impl Window {
    pub(super) fn new(cursor: u64) -> Self {
        Self {
            next_read: cursor,
            in_flight: BTreeSet::new(),
        }
    }

    /// `offset` was read (offsets come in order; gaps are trimmed events).
    pub(super) fn read(&mut self, offset: u64) {
        self.next_read = self.next_read.max(offset + 1);
    }

    /// A delivery of `offset` started.
    pub(super) fn start(&mut self, offset: u64) {
        self.in_flight.insert(offset);
    }

    /// The delivery of `offset` finished.
    pub(super) fn finish(&mut self, offset: u64) {
        self.in_flight.remove(&offset);
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Everything before this offset is finished.
    pub(super) fn cursor(&self) -> u64 {
        self.in_flight.first().copied().unwrap_or(self.next_read)
    }
}

/// Runs one trigger from `start` until `stop`; then lets deliveries in flight finish (up to the
/// drain timeout) and writes the cursor.
pub(super) async fn run(shared: Arc<Shared>, run: Arc<TriggerRun>, start: u64, stop: CancellationToken) {
    let broker = run.trigger.broker.as_str();
    let log = shared.ingress.log().clone();
    let config = shared.ingress.config().clone();
    let mut head = loop {
        match shared.ingress.watch_head(broker).await {
            Ok(head) => break head,
            Err(error) => {
                tracing::warn!(%broker, %error, "cannot read the broker's head; retrying");
                if wait_or_stop(&stop, LOG_RETRY).await {
                    return;
                }
            }
        }
    };
    let refill_at = (config.max_in_flight / 4).max(1);
    let mut window = Window::new(start);
    let mut persisted = start;
    let mut deliveries: JoinSet<bool> = JoinSet::new();
    let mut offsets: HashMap<Id, u64> = HashMap::new();
    let mut caught_up = false;
    // When the cursor, having moved, must be written at the latest.
    let mut flush_at: Option<Instant> = None;
    loop {
        if stop.is_cancelled() {
            break;
        }
        let room = config.max_in_flight.saturating_sub(window.in_flight());
        // Refill in chunks, not one read per finished delivery (each read is a trip to the
        // log's blocking pool); a trigger with little in flight reads at once.
        let refill = room >= refill_at || window.in_flight() < refill_at;
        if !caught_up && room > 0 && refill {
            // Mark the head seen before reading: an append after this wakes us again.
            head.borrow_and_update();
            match log.read(broker, window.next_read, room).await {
                Ok(batch) if batch.is_empty() => caught_up = true,
                Ok(batch) => {
                    for (offset, stored) in batch {
                        window.read(offset);
                        let record = match record::decode(stored) {
                            Ok(record) => record,
                            Err(error) => {
                                run.metrics.dropped.inc();
                                tracing::error!(%broker, offset, %error, "an event in the log is unreadable; dropped");
                                continue;
                            }
                        };
                        let event = &record.event;
                        if !run.trigger.matches(&|name| event.attribute(name).map(str::to_string)) {
                            run.metrics.filtered.inc();
                            continue;
                        }
                        let span =
                            tracing::debug_span!("delivery", trigger = %run.trigger.name, offset, id = %event.id);
                        let (shared, run, stop) = (shared.clone(), run.clone(), stop.clone());
                        let handle = deliveries
                            .spawn(async move { deliver(&shared, &run, record, &stop).await }.instrument(span));
                        offsets.insert(handle.id(), offset);
                        window.start(offset);
                    }
                }
                Err(error) => {
                    tracing::warn!(%broker, %error, "cannot read the event log; retrying");
                    if wait_or_stop(&stop, LOG_RETRY).await {
                        break;
                    }
                }
            }
            continue;
        }
        let cursor = window.cursor();
        let head_now = *head.borrow();
        run.metrics
            .backlog
            .set(i64::try_from(head_now.saturating_sub(cursor)).unwrap_or(i64::MAX));
        if cursor > persisted {
            // At most one write per interval, however many events finished in it.
            if flush_at.is_some_and(|at| at <= Instant::now()) {
                flush_at = None;
                match log.set_cursor(&run.cursor_key, cursor).await {
                    Ok(()) => {
                        persisted = cursor;
                        run.persisted.store(cursor, Ordering::Relaxed);
                    }
                    Err(error) => {
                        tracing::warn!(trigger = %run.trigger.name, %error, "cannot write the cursor; retrying");
                        flush_at = Some(Instant::now() + LOG_RETRY);
                    }
                }
                continue;
            }
            flush_at.get_or_insert_with(|| Instant::now() + config.cursor_interval);
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(done) = deliveries.join_next_with_id() => {
                let (id, finished) = match done {
                    Ok((id, finished)) => (id, finished),
                    Err(error) => {
                        // A bug, not a subscriber's failure: do not hold the cursor forever,
                        // and count the event as dropped, so the trigger's accounting
                        // (accepted = delivered + dead-lettered + dropped + backlog) holds.
                        run.metrics.dropped.inc();
                        let offset = offsets.get(&error.id()).copied();
                        tracing::error!(trigger = %run.trigger.name, ?offset, %error, "delivery task failed; event dropped");
                        (error.id(), true)
                    }
                };
                if let Some(offset) = offsets.remove(&id)
                    && finished
                {
                    window.finish(offset);
                }
            }
            changed = head.changed(), if caught_up => {
                if changed.is_err() {
                    break;
                }
                caught_up = false;
            }
            () = sleep_until(flush_at), if flush_at.is_some() => {}
        }
    }
    // Deliveries waiting in backoff saw `stop` and gave up; those mid-request may finish.
    let drain = async {
        while let Some(done) = deliveries.join_next_with_id().await {
            if let Ok((id, true)) = done
                && let Some(offset) = offsets.remove(&id)
            {
                window.finish(offset);
            }
        }
    };
    if tokio::time::timeout(config.drain_timeout, drain).await.is_err() {
        tracing::debug!(trigger = %run.trigger.name, "deliveries still running at the drain deadline; they will be redelivered");
    }
    deliveries.shutdown().await;
    let cursor = window.cursor();
    if cursor > persisted {
        match log.set_cursor(&run.cursor_key, cursor).await {
            Ok(()) => run.persisted.store(cursor, Ordering::Relaxed),
            Err(error) => tracing::warn!(trigger = %run.trigger.name, %error, "cannot write the cursor at stop"),
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
