//! What eventing counts, for Prometheus: events accepted and refused per broker; deliveries,
//! failed attempts, dead letters, drops, latency and backlog per trigger.
//!
//! The hot paths (an accepted event, a delivery) use handles cached per broker and trigger,
//! so counting costs an atomic add, not a label lookup.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a broker's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BrokerLabels {
    pub broker: String,
}

/// Labels of a refused request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RejectedLabels {
    /// The broker named; empty when it does not exist (so unknown names add no series).
    pub broker: String,
    /// HTTP status answered.
    pub code: u16,
    /// Why, as a fixed word: `invalid`, `too_large`, `unknown_broker`, `method`, `store`.
    pub reason: &'static str,
}

/// Labels of a trigger's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TriggerLabels {
    pub trigger: String,
}

/// Labels of a delivery attempt's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub trigger: String,
    /// HTTP status, or `timeout`, `connection`, `unresolvable`.
    pub code: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 105 s: sub-millisecond deliveries get buckets of their own.
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

/// Eventing's metric families; cheap to clone (handles to shared families).
#[derive(Clone, Debug)]
pub struct EventingMetrics {
    accepted: Family<BrokerLabels, Counter>,
    rejected: Family<RejectedLabels, Counter>,
    delivered: Family<OutcomeLabels, Counter>,
    failed: Family<OutcomeLabels, Counter>,
    dead_lettered: Family<TriggerLabels, Counter>,
    dropped: Family<TriggerLabels, Counter>,
    filtered: Family<TriggerLabels, Counter>,
    latency: Family<TriggerLabels, Histogram, fn() -> Histogram>,
    backlog: Family<TriggerLabels, Gauge>,
    replies_dropped: Family<TriggerLabels, Counter>,
}

impl EventingMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::unregistered();
        registry.register(
            "rouse_broker_events_accepted",
            "Events stored by a broker (answered 202)",
            metrics.accepted.clone(),
        );
        registry.register(
            "rouse_broker_events_rejected",
            "Requests to a broker refused, by status and reason",
            metrics.rejected.clone(),
        );
        registry.register(
            "rouse_trigger_events_delivered",
            "Events a trigger's subscriber accepted, by status",
            metrics.delivered.clone(),
        );
        registry.register(
            "rouse_trigger_attempts_failed",
            "Delivery attempts that failed, by status or failure",
            metrics.failed.clone(),
        );
        registry.register(
            "rouse_trigger_events_dead_lettered",
            "Events sent to a trigger's dead-letter sink after their last attempt",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "rouse_trigger_events_dropped",
            "Events given up: no dead-letter sink, a dead-letter sink that failed too, or unreadable in the log",
            metrics.dropped.clone(),
        );
        registry.register(
            "rouse_trigger_events_filtered",
            "Events of the trigger's broker its filter did not pass",
            metrics.filtered.clone(),
        );
        registry.register(
            "rouse_trigger_delivery_latency_seconds",
            "Time from a broker storing an event to its subscriber accepting it",
            metrics.latency.clone(),
        );
        registry.register(
            "rouse_trigger_backlog_events",
            "Events of the broker a trigger has not finished yet (head minus cursor)",
            metrics.backlog.clone(),
        );
        registry.register(
            "rouse_trigger_replies_dropped_ttl",
            "Replies dropped because their TTL (knativebrokerttl) ran out",
            metrics.replies_dropped.clone(),
        );
        metrics
    }

    /// Metrics nobody scrapes (tests, tools).
    pub fn unregistered() -> Self {
        Self {
            accepted: Family::default(),
            rejected: Family::default(),
            delivered: Family::default(),
            failed: Family::default(),
            dead_lettered: Family::default(),
            dropped: Family::default(),
            filtered: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            backlog: Family::default(),
            replies_dropped: Family::default(),
        }
    }

    /// Counts one refused request.
    pub(crate) fn rejected(&self, broker: &str, code: u16, reason: &'static str) {
        let labels = RejectedLabels {
            broker: broker.to_string(),
            code,
            reason,
        };
        self.rejected.get_or_create(&labels).inc();
    }

    /// Handles on one broker's series.
    pub(crate) fn broker(&self, broker: &str) -> BrokerMetrics {
        let labels = BrokerLabels {
            broker: broker.to_string(),
        };
        BrokerMetrics {
            accepted: self.accepted.get_or_create_owned(&labels),
        }
    }

    /// Handles on one trigger's series.
    pub(crate) fn trigger(&self, trigger: &str) -> TriggerMetrics {
        let labels = TriggerLabels {
            trigger: trigger.to_string(),
        };
        TriggerMetrics {
            delivered: OutcomeCounters::new(self.delivered.clone(), trigger),
            failed: OutcomeCounters::new(self.failed.clone(), trigger),
            dead_lettered: self.dead_lettered.get_or_create_owned(&labels),
            dropped: self.dropped.get_or_create_owned(&labels),
            filtered: self.filtered.get_or_create_owned(&labels),
            latency: self.latency.get_or_create_owned(&labels),
            backlog: self.backlog.get_or_create_owned(&labels),
            replies_dropped: self.replies_dropped.get_or_create_owned(&labels),
        }
    }

    /// Removes a deleted trigger's series.
    pub(crate) fn remove_trigger(&self, trigger: &TriggerMetrics, name: &str) {
        let labels = TriggerLabels {
            trigger: name.to_string(),
        };
        self.dead_lettered.remove(&labels);
        self.dropped.remove(&labels);
        self.filtered.remove(&labels);
        self.latency.remove(&labels);
        self.backlog.remove(&labels);
        self.replies_dropped.remove(&labels);
        trigger.delivered.remove_all();
        trigger.failed.remove_all();
    }
}

/// Cached series of one broker.
#[derive(Debug)]
pub(crate) struct BrokerMetrics {
    pub(crate) accepted: Counter,
}

/// Cached series of one trigger.
#[derive(Debug)]
pub(crate) struct TriggerMetrics {
    pub(crate) delivered: OutcomeCounters,
    pub(crate) failed: OutcomeCounters,
    pub(crate) dead_lettered: Counter,
    pub(crate) dropped: Counter,
    /// Events of the broker its filter passed over: with these, every event the broker
    /// accepted since the trigger started is accounted for: delivered + dead-lettered +
    /// dropped + filtered + backlog.
    pub(crate) filtered: Counter,
    pub(crate) latency: Histogram,
    pub(crate) backlog: Gauge,
    pub(crate) replies_dropped: Counter,
}

/// A trigger's counters by outcome, each looked up in the family once.
#[derive(Debug)]
pub(crate) struct OutcomeCounters {
    family: Family<OutcomeLabels, Counter>,
    trigger: String,
    /// Few distinct codes per trigger (200, 202, a 5xx or two): a short list beats a map.
    cache: Mutex<Vec<(String, Counter)>>,
}

impl OutcomeCounters {
    fn new(family: Family<OutcomeLabels, Counter>, trigger: &str) -> Self {
        Self {
            family,
            trigger: trigger.to_string(),
            cache: Mutex::new(Vec::new()),
        }
    }

    /// Counts one outcome labelled `code`.
    pub(crate) fn inc(&self, code: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, counter)) = cache.iter().find(|(c, _)| c == code) {
            counter.inc();
            return;
        }
        let labels = OutcomeLabels {
            trigger: self.trigger.clone(),
            code: code.to_string(),
        };
        let counter = self.family.get_or_create_owned(&labels);
        counter.inc();
        cache.push((code.to_string(), counter));
    }

    fn remove_all(&self) {
        let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (code, _) in cache.iter() {
            self.family.remove(&OutcomeLabels {
                trigger: self.trigger.clone(),
                code: code.clone(),
            });
        }
    }
}
