//! Triggers at work: one task per trigger delivers its broker's events to its subscriber.
//!
//! The daemon calls [`Dispatcher::upsert`] for every trigger it has (at start and on every
//! change) and [`Dispatcher::remove`] when one is deleted. Each trigger keeps a durable cursor
//! in the event log, so after a restart delivery resumes where it stopped: an event is
//! delivered at least once. A new trigger starts at its broker's head, as in Knative: it sees
//! the events sent after it exists.
//!
//! - `trigger`: the task of one trigger (take from its feed, filter, deliver in parallel, give
//!   each a verdict); the feed (`crate::feed`) holds the cursor, the window and the retries.
//! - `send`: one attempt of an event's delivery (then a verdict: done, or retry after the
//!   backoff), dead letters and replies.

mod send;
mod trigger;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rouse_api::eventing::{Delivery, Sink, Trigger};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cloudevent::Event;
use crate::delivery::RetryPolicy;
use crate::error::EventLogError;
use crate::feed::FeedProgress;
use crate::ingress::BrokerIngress;
use crate::metrics::{EventingMetrics, TriggerMetrics};
use crate::sink::Resolve;

/// What every trigger task shares.
struct Shared {
    ingress: Arc<BrokerIngress>,
    resolver: Arc<dyn Resolve>,
    client: send::HttpClient,
    metrics: EventingMetrics,
    /// Largest response body read (a reply is an event: the event limit).
    max_body_bytes: usize,
}

/// One running trigger, as its task sees it.
struct TriggerRun {
    trigger: Trigger,
    policy: RetryPolicy,
    /// Where its cursor lives in the log: `trigger/{broker}/{name}`.
    cursor_key: String,
    metrics: Arc<TriggerMetrics>,
    /// Where its feed stands, for status.
    progress: Arc<FeedProgress>,
}

/// A trigger's task, as the dispatcher holds it.
struct Running {
    run: Arc<TriggerRun>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops the task and waits for it (it drains and writes its cursor).
    async fn stop(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(trigger = %self.run.trigger.name, %error, "trigger task failed");
        }
    }
}

/// A trigger's progress through its broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TriggerProgress {
    /// Everything before this offset is handled (as last written to the log).
    pub cursor: u64,
    /// The offset the broker's next event gets.
    pub head: u64,
}

/// Runs the triggers: the daemon's handle on delivery.
pub struct Dispatcher {
    shared: Arc<Shared>,
    /// Running triggers by name. Also held while trimming, so a trigger being added cannot
    /// lose events to a trim that did not see it yet.
    triggers: Arc<Mutex<HashMap<String, Running>>>,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl Dispatcher {
    /// Creates the dispatcher and starts its log trimming; it stops when `cancel` is cancelled
    /// (then await [`Dispatcher::shutdown`]). Must be called inside a Tokio runtime.
    pub fn new(
        ingress: Arc<BrokerIngress>,
        resolver: Arc<dyn Resolve>,
        metrics: EventingMetrics,
        cancel: CancellationToken,
    ) -> Self {
        let config = ingress.config().clone();
        let shared = Arc::new(Shared {
            client: send::http_client(config.max_in_flight),
            max_body_bytes: config.max_event_bytes,
            ingress,
            resolver,
            metrics,
        });
        let triggers = Arc::new(Mutex::new(HashMap::new()));
        // Our own token: `shutdown` must not cancel the daemon's.
        let cancel = cancel.child_token();
        let tasks = TaskTracker::new();
        tasks.spawn(trim_loop(shared.clone(), triggers.clone(), cancel.clone()));
        Self {
            shared,
            triggers,
            tasks,
            cancel,
        }
    }

    /// Starts `trigger`, or applies a change to it (idempotent: an unchanged trigger keeps
    /// running untouched). A changed trigger restarts from its cursor; one moved to another
    /// broker starts at that broker's head.
    pub async fn upsert(&self, trigger: Trigger) -> Result<(), EventLogError> {
        let mut triggers = self.triggers.lock().await;
        if triggers
            .get(&trigger.name)
            .is_some_and(|r| same_delivery(&r.run.trigger, &trigger))
        {
            return Ok(());
        }
        let log = self.shared.ingress.log();
        let cursor_key = cursor_key(&trigger.broker, &trigger.name);
        let previous = triggers.remove(&trigger.name);
        let metrics = match previous {
            Some(previous) => {
                let metrics = previous.run.metrics.clone();
                let old_key = previous.run.cursor_key.clone();
                previous.stop().await;
                if old_key != cursor_key {
                    log.delete_cursor(&old_key).await?;
                }
                metrics
            }
            None => Arc::new(self.shared.metrics.trigger(&trigger.name)),
        };
        let start = match log.cursor(&cursor_key).await? {
            Some(cursor) => cursor,
            None => {
                let head = log.head(&trigger.broker).await?;
                log.set_cursor(&cursor_key, head).await?;
                head
            }
        };
        tracing::debug!(trigger = %trigger.name, broker = %trigger.broker, start, "trigger starting");
        let head = self.shared.ingress.watch_head(&trigger.broker).await?;
        let feed = crate::feed::open_embedded(
            log.clone(),
            self.shared.ingress.config().clone(),
            trigger.broker.clone(),
            cursor_key.clone(),
            start,
            head,
        );
        let name = trigger.name.clone();
        let run = Arc::new(TriggerRun {
            policy: RetryPolicy::from_delivery(&trigger.delivery),
            trigger,
            cursor_key,
            metrics,
            progress: feed.progress.clone(),
        });
        let stop = self.cancel.child_token();
        let task = self
            .tasks
            .spawn(trigger::run(self.shared.clone(), run.clone(), feed, stop.clone()));
        triggers.insert(name, Running { run, stop, task });
        Ok(())
    }

    /// Stops trigger `name` and forgets its cursor (a no-op for an unknown name).
    pub async fn remove(&self, name: &str) -> Result<(), EventLogError> {
        let mut triggers = self.triggers.lock().await;
        let Some(running) = triggers.remove(name) else {
            return Ok(());
        };
        let run = running.run.clone();
        running.stop().await;
        self.shared.metrics.remove_trigger(&run.metrics, name);
        self.shared.ingress.log().delete_cursor(&run.cursor_key).await
    }

    /// Sends one event to `sink` outside any trigger (a source's event), with the retries and
    /// backoff of `delivery`; no reply is asked for. Returns why it failed, after the last try.
    pub async fn send(&self, sink: &Sink, event: &Event, delivery: &Delivery) -> Result<(), String> {
        let policy = RetryPolicy::from_delivery(delivery);
        match send::attempts(&self.shared, sink, event, &policy, &self.cancel).await {
            None => Err("the daemon is shutting down".to_string()),
            Some(last) if last.answer.outcome.is_success() => Ok(()),
            Some(last) => Err(format!(
                "{} answered {} after {} attempts",
                last.destination,
                last.answer.outcome.label(),
                last.attempts
            )),
        }
    }

    /// Names of the running triggers.
    pub async fn triggers(&self) -> Vec<String> {
        self.triggers.lock().await.keys().cloned().collect()
    }

    /// How far trigger `name` is through its broker.
    pub async fn progress(&self, name: &str) -> Option<TriggerProgress> {
        let triggers = self.triggers.lock().await;
        let run = &triggers.get(name)?.run;
        Some(TriggerProgress {
            cursor: run.progress.persisted.load(Ordering::Relaxed),
            head: self.shared.ingress.head(&run.trigger.broker).unwrap_or(0),
        })
    }

    /// Stops every trigger (each drains, up to the drain timeout, and writes its cursor) and
    /// the trimming, and waits for all of them.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.triggers.lock().await.clear();
    }
}

/// Whether two versions of a trigger deliver the same way (labels and times do not matter).
fn same_delivery(a: &Trigger, b: &Trigger) -> bool {
    a.broker == b.broker && a.filters == b.filters && a.subscriber == b.subscriber && a.delivery == b.delivery
}

fn cursor_prefix(broker: &str) -> String {
    format!("trigger/{broker}/")
}

fn cursor_key(broker: &str, trigger: &str) -> String {
    format!("{}{trigger}", cursor_prefix(broker))
}

/// Deletes events every trigger of their broker has handled, every trim interval. A broker's
/// trim point is the lowest cursor recorded for it (running or not: a trigger not yet
/// restarted after a daemon restart still holds its events); with no trigger at all, its head,
/// since a trigger created later starts there anyway.
async fn trim_loop(shared: Arc<Shared>, triggers: Arc<Mutex<HashMap<String, Running>>>, cancel: CancellationToken) {
    let log = shared.ingress.log().clone();
    let mut ticks = tokio::time::interval(shared.ingress.config().trim_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the daemon is still upserting its triggers then.
    ticks.tick().await;
    let mut trimmed: HashMap<String, u64> = HashMap::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let _triggers = triggers.lock().await;
        for broker in shared.ingress.brokers() {
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
