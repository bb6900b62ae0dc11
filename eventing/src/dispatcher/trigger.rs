//! One trigger's task: take deliveries from its feed, filter, deliver with many events in
//! flight, and tell the feed how each went.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::send::deliver;
use super::{Shared, TriggerRun};
use crate::cloudevent::record;
use crate::feed::{Feed, FeedItem, Verdict};

/// Runs one trigger from `feed` until `stop`; then lets deliveries in flight finish (up to the
/// drain timeout) and closes the feed, which keeps what they finished.
pub(super) async fn run(shared: Arc<Shared>, run: Arc<TriggerRun>, mut feed: Feed, stop: CancellationToken) {
    let broker = run.trigger.broker.clone();
    let drain_timeout = shared.ingress.config().drain_timeout;
    let mut deliveries: JoinSet<Option<Verdict>> = JoinSet::new();
    let mut seqs: HashMap<Id, u64> = HashMap::new();
    loop {
        let backlog = shared
            .ingress
            .head(&broker)
            .unwrap_or(0)
            .saturating_sub(feed.progress.cursor.load(Ordering::Relaxed));
        run.metrics.backlog.set(i64::try_from(backlog).unwrap_or(i64::MAX));
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(done) = deliveries.join_next_with_id() => {
                // This one and every other already finished: one message to the feed.
                let mut verdicts = Vec::new();
                finished(&run, &mut seqs, done, &mut verdicts);
                while let Some(done) = deliveries.try_join_next_with_id() {
                    finished(&run, &mut seqs, done, &mut verdicts);
                }
                feed.verdicts(verdicts);
            }
            items = feed.items.recv() => {
                let Some(items) = items else { break };
                let mut settled = Vec::new();
                for item in items {
                    if let Some((seq, handle)) = start(&shared, &run, &mut deliveries, item, &stop, &mut settled) {
                        seqs.insert(handle, seq);
                    }
                }
                feed.verdicts(settled);
            }
        }
    }
    // Deliveries mid-request may finish; retries not yet due wait for the next start.
    let drain = async {
        while let Some(done) = deliveries.join_next_with_id().await {
            let mut verdicts = Vec::new();
            finished(&run, &mut seqs, done, &mut verdicts);
            feed.verdicts(verdicts);
        }
    };
    if tokio::time::timeout(drain_timeout, drain).await.is_err() {
        tracing::debug!(trigger = %run.trigger.name, "deliveries still running at the drain deadline; they will be redelivered");
    }
    deliveries.shutdown().await;
    feed.close().await;
}

/// Starts the delivery of `item`, or settles it at once (into `settled`) when it is
/// unreadable or filtered out.
fn start(
    shared: &Arc<Shared>,
    run: &Arc<TriggerRun>,
    deliveries: &mut JoinSet<Option<Verdict>>,
    item: FeedItem,
    stop: &CancellationToken,
    settled: &mut Vec<(u64, Verdict)>,
) -> Option<(u64, Id)> {
    let FeedItem { seq, attempt, stored } = item;
    let record = match record::decode(stored) {
        Ok(record) => record,
        Err(error) => {
            run.metrics.dropped.inc();
            tracing::error!(broker = %run.trigger.broker, offset = seq, %error, "an event in the log is unreadable; dropped");
            settled.push((seq, Verdict::Done));
            return None;
        }
    };
    let event = &record.event;
    if !run.trigger.matches(&|name| event.attribute(name).map(str::to_string)) {
        // Counted once, not at each retry: a filtered event is never retried.
        run.metrics.filtered.inc();
        settled.push((seq, Verdict::Done));
        return None;
    }
    let span = tracing::debug_span!("delivery", trigger = %run.trigger.name, offset = seq, attempt, id = %event.id);
    let (shared, run, stop) = (shared.clone(), run.clone(), stop.clone());
    let handle = deliveries.spawn(async move { deliver(&shared, &run, record, attempt, &stop).await }.instrument(span));
    Some((seq, handle.id()))
}

/// A delivery task ended: its verdict, for the feed, into `verdicts`.
fn finished(
    run: &TriggerRun,
    seqs: &mut HashMap<Id, u64>,
    done: Result<(Id, Option<Verdict>), tokio::task::JoinError>,
    verdicts: &mut Vec<(u64, Verdict)>,
) {
    let (id, verdict) = match done {
        Ok((id, verdict)) => (id, verdict),
        Err(error) => {
            // A bug, not a subscriber's failure: do not hold the cursor forever, and count the
            // event as dropped, so the trigger's accounting (accepted = delivered +
            // dead-lettered + dropped + filtered + backlog) holds.
            run.metrics.dropped.inc();
            let offset = seqs.get(&error.id()).copied();
            tracing::error!(trigger = %run.trigger.name, ?offset, %error, "delivery task failed; event dropped");
            (error.id(), Some(Verdict::Done))
        }
    };
    if let Some(seq) = seqs.remove(&id)
        && let Some(verdict) = verdict
    {
        verdicts.push((seq, verdict));
    }
}
