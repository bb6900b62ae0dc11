//! The broker ingress: CloudEvents in over HTTP (`POST /default/{broker}`), into the event log.
//!
//! A request is answered 202 only once its events are on disk (the log's group commit), so a
//! sender that heard 202 never loses the event. After each append the broker's head moves,
//! which wakes the dispatchers of its triggers; nothing polls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::HttpBody as _;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::routing::any;
use dashmap::DashMap;
use http::Method;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cloudevent::{self, DEFAULT_TTL, Event, MAX_TTL, Mode, TTL_EXTENSION, record};
use crate::config::EventingConfig;
use crate::error::{EventError, EventLogError, IngestError};
use crate::log::EventLog;
use crate::metrics::{BrokerMetrics, EventingMetrics};
use crate::respond;

// The only namespace (Knative's URL shape keeps it in the path).
use rouse_api::manifest::NAMESPACE;

/// The brokers of this daemon and the way into their logs.
pub struct BrokerIngress {
    log: Arc<dyn EventLog>,
    config: EventingConfig,
    /// Every broker anyone asked about: registered ones, and ones a trigger waits for.
    brokers: DashMap<String, Arc<BrokerEntry>>,
    metrics: EventingMetrics,
}

/// One broker's shared state.
pub(crate) struct BrokerEntry {
    /// Whether the broker exists; a trigger may watch a broker before it is (re)created.
    registered: AtomicBool,
    /// The offset the next event will get. Raised after every append; dispatchers wait on it.
    head: watch::Sender<u64>,
    metrics: BrokerMetrics,
}

impl BrokerEntry {
    /// Raises the head to `head` (never lowers it: appends may finish out of order).
    fn advance(&self, head: u64) {
        self.head.send_if_modified(|current| {
            let moved = head > *current;
            if moved {
                *current = head;
            }
            moved
        });
    }
}

impl BrokerIngress {
    pub fn new(log: Arc<dyn EventLog>, config: EventingConfig, metrics: EventingMetrics) -> Self {
        Self {
            log,
            config,
            brokers: DashMap::new(),
            metrics,
        }
    }

    /// The event log brokers write to.
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    pub fn config(&self) -> &EventingConfig {
        &self.config
    }

    /// Registers a broker so it accepts events (idempotent).
    /// The broker is registered even when its head cannot be read (the log is unavailable):
    /// its requests then get the log's 503, not a 404 that says it does not exist.
    pub async fn add_broker(&self, name: &str) -> Result<(), EventLogError> {
        let entry = self.entry(name);
        entry.registered.store(true, Ordering::Release);
        entry.advance(self.log.head(name).await?);
        Ok(())
    }

    /// Unregisters a broker and deletes its events. Its offsets keep counting, so triggers left
    /// on it (until the daemon removes them) never skip or repeat an event if it comes back.
    pub async fn remove_broker(&self, name: &str) -> Result<(), EventLogError> {
        if let Some(entry) = self.brokers.get(name) {
            entry.registered.store(false, Ordering::Release);
        }
        self.log.delete_broker(name).await
    }

    /// Whether `name` is a registered broker.
    pub fn has_broker(&self, name: &str) -> bool {
        self.brokers
            .get(name)
            .is_some_and(|entry| entry.registered.load(Ordering::Acquire))
    }

    /// Names of the registered brokers.
    pub fn brokers(&self) -> Vec<String> {
        self.brokers
            .iter()
            .filter(|entry| entry.registered.load(Ordering::Acquire))
            .map(|entry| entry.key().clone())
            .collect()
    }

    /// Stores events in `broker` (one append: all or none) and wakes its triggers; returns
    /// their offsets. Events without a TTL get Knative's default. This is the way in for
    /// replies, sources and anything else inside the daemon; HTTP requests end here too.
    pub async fn ingest(&self, broker: &str, mut events: Vec<Event>) -> Result<Vec<u64>, IngestError> {
        let entry = match self.brokers.get(broker) {
            Some(entry) if entry.registered.load(Ordering::Acquire) => entry.clone(),
            _ => return Err(IngestError::UnknownBroker(broker.to_string())),
        };
        let accepted_at = SystemTime::now();
        let records = events
            .iter_mut()
            .map(|event| {
                match event.ttl() {
                    Some(ttl) if ttl <= MAX_TTL => {}
                    Some(_) => event.set_extension(TTL_EXTENSION, MAX_TTL.to_string()),
                    None => event.set_extension(TTL_EXTENSION, DEFAULT_TTL.to_string()),
                }
                record::encode(event, accepted_at)
            })
            .collect();
        let offsets = self.log.append(broker, records).await?;
        // Counted before the triggers wake, so a scrape never sees more delivered than accepted.
        entry.metrics.accepted.inc_by(offsets.len() as u64);
        if let Some(last) = offsets.last() {
            entry.advance(last + 1);
        }
        Ok(offsets)
    }

    /// A receiver of `broker`'s head, current as of the log. Works for brokers not (yet)
    /// registered: a trigger can wait for its broker.
    pub(crate) async fn watch_head(&self, broker: &str) -> Result<watch::Receiver<u64>, EventLogError> {
        let entry = self.entry(broker);
        let receiver = entry.head.subscribe();
        entry.advance(self.log.head(broker).await?);
        Ok(receiver)
    }

    /// The current head of `broker` as the ingress knows it.
    pub(crate) fn head(&self, broker: &str) -> Option<u64> {
        self.brokers.get(broker).map(|entry| *entry.head.borrow())
    }

    fn entry(&self, name: &str) -> Arc<BrokerEntry> {
        if let Some(entry) = self.brokers.get(name) {
            return entry.clone();
        }
        self.brokers
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(BrokerEntry {
                    registered: AtomicBool::new(false),
                    head: watch::Sender::new(0),
                    metrics: self.metrics.broker(name),
                })
            })
            .clone()
    }
}

/// The broker ingress's HTTP routes: `/{namespace}/{broker}`, everything else 404.
pub fn ingress_router(ingress: Arc<BrokerIngress>) -> Router {
    Router::new()
        .route("/{namespace}/{broker}", any(receive))
        .fallback(|request: Request| async move { respond::unknown_path(request.uri().path()) })
        .with_state(ingress)
}

/// One request to a broker, from method check to 202.
async fn receive(
    State(ingress): State<Arc<BrokerIngress>>,
    Path((namespace, broker)): Path<(String, String)>,
    request: Request,
) -> Response {
    let config = &ingress.config;
    let metrics = &ingress.metrics;
    if request.method() != Method::POST {
        metrics.rejected("", 405, "method");
        return respond::method_not_allowed(request.method());
    }
    if namespace != NAMESPACE || !ingress.has_broker(&broker) {
        metrics.rejected("", 404, "unknown_broker");
        return respond::unknown_broker(&namespace, &broker);
    }
    let reject_invalid = |error: &EventError| {
        let status = error.status();
        let reason = if status == http::StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "invalid"
        };
        metrics.rejected(&broker, status.as_u16(), reason);
        respond::invalid_event(error)
    };
    let reject_large = |what: &str, limit: usize| {
        metrics.rejected(&broker, 413, "too_large");
        respond::too_large(what, limit)
    };
    let mode = match cloudevent::mode(request.headers()) {
        Ok(mode) => mode,
        Err(error) => return reject_invalid(&error),
    };
    let (what, limit) = match mode {
        Mode::Batch => ("batch", config.max_batch_bytes),
        Mode::Binary | Mode::Structured => ("event", config.max_event_bytes),
    };
    // A declared length is the body's exact size hint: reject before reading any of it.
    if request.body().size_hint().lower() > limit as u64 {
        return reject_large(what, limit);
    }
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => return reject_large(what, limit),
        Err(error) => {
            metrics.rejected(&broker, 400, "invalid");
            return respond::unreadable_body(&error.to_string());
        }
    };
    let events = match cloudevent::from_request(mode, &parts.headers, body, config.shape()) {
        Ok(events) => events,
        Err(error) => return reject_invalid(&error),
    };
    for (index, event) in events.iter().enumerate() {
        if event.size() > config.max_event_bytes {
            let what = match mode {
                Mode::Batch => format!("event {index} of the batch (id '{}')", event.id),
                Mode::Binary | Mode::Structured => "event".to_string(),
            };
            return reject_large(&what, config.max_event_bytes);
        }
        if event.extension(TTL_EXTENSION).is_some() && event.ttl().is_none() {
            return reject_invalid(&EventError::AttributeValue {
                name: TTL_EXTENSION.to_string(),
                reason: format!(
                    "must be a whole number of hops (0 to {MAX_TTL}, larger is lowered to {MAX_TTL}); \
                     leave it out for the default {DEFAULT_TTL}"
                ),
            });
        }
    }
    match ingress.ingest(&broker, events).await {
        Ok(_) => respond::accepted(),
        Err(IngestError::UnknownBroker(_)) => {
            metrics.rejected("", 404, "unknown_broker");
            respond::unknown_broker(&namespace, &broker)
        }
        Err(IngestError::Log(error)) => {
            if let Some(suppressed) = NOT_STORED.allow() {
                tracing::warn!(%broker, %error, suppressed, "events not stored (suppressed: refusals not logged since the last line)");
            }
            metrics.rejected(&broker, 503, "store");
            respond::store_failed(&error)
        }
    }
}

/// At most one line per second about events not stored: while the disk is full every request
/// fails alike, and a line per request would fill the log (and the disk) faster than the events
/// did. `rouse_broker_events_rejected_total{reason="store"}` counts every refusal.
static NOT_STORED: Throttle = Throttle::new(Duration::from_secs(1));

/// Lets one log line through per period and counts the ones it held back.
struct Throttle {
    every: Duration,
    /// When the last line went out, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    const fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last line)` when a line may go out now.
    fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if state.0.is_some_and(|at| now.duration_since(at) < self.every) {
            state.1 += 1;
            return None;
        }
        let held_back = state.1;
        *state = (Some(now), 0);
        Some(held_back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_throttle_lets_one_line_per_period_and_counts_the_rest() {
        let throttle = Throttle::new(Duration::from_secs(1));
        assert_eq!(throttle.allow(), Some(0));
        for _ in 0..5 {
            assert_eq!(throttle.allow(), None);
        }
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(throttle.allow(), Some(5));
        assert_eq!(throttle.allow(), None);
    }
}
