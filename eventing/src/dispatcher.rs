//! Triggers at work: one task per trigger delivers its broker's events to its subscriber.
//!
//! The daemon calls [`Dispatcher::upsert`] for every trigger it has (at start and on every
//! change) and [`Dispatcher::remove`] when one is deleted. Each trigger's feed keeps its
//! position durable (in the embedded log, a cursor), so after a restart delivery resumes where
//! it stopped: an event is delivered at least once. A new trigger starts at its broker's head,
//! as in Knative: it sees the events sent after it exists.
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
use crate::feed::{EmbeddedFeeds, FeedProgress, Feeds};
use crate::ingress::BrokerIngress;
use crate::metrics::{EventingMetrics, TriggerMetrics};
use crate::sink::Resolve;

/// What every trigger task shares.
struct Shared {
    ingress: Arc<BrokerIngress>,
    /// Where each trigger's feed comes from.
    feeds: Arc<dyn Feeds>,
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
    /// Running triggers by name.
    triggers: Mutex<HashMap<String, Running>>,
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
        let feeds = EmbeddedFeeds::new(ingress.clone());
        // Our own token: `shutdown` must not cancel the daemon's.
        let cancel = cancel.child_token();
        let tasks = TaskTracker::new();
        tasks.spawn(feeds.clone().trim_loop(cancel.clone()));
        let shared = Arc::new(Shared {
            client: send::http_client(config.max_in_flight),
            max_body_bytes: config.max_event_bytes,
            ingress,
            feeds,
            resolver,
            metrics,
        });
        Self {
            shared,
            triggers: Mutex::new(HashMap::new()),
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
        let previous = triggers.remove(&trigger.name);
        let metrics = match previous {
            Some(previous) => {
                let metrics = previous.run.metrics.clone();
                let old_broker = previous.run.trigger.broker.clone();
                previous.stop().await;
                if old_broker != trigger.broker {
                    self.shared.feeds.delete(&old_broker, &trigger.name).await?;
                }
                metrics
            }
            None => Arc::new(self.shared.metrics.trigger(&trigger.name)),
        };
        let feed = self.shared.feeds.open(&trigger.broker, &trigger.name).await?;
        let name = trigger.name.clone();
        let run = Arc::new(TriggerRun {
            policy: RetryPolicy::from_delivery(&trigger.delivery),
            trigger,
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
        self.shared.feeds.delete(&run.trigger.broker, name).await
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
