//! Delivering one event: attempts with backoff, then the dead-letter sink, and the reply.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rouse_api::error_chain;
use rouse_api::eventing::Sink;
use tokio_util::sync::CancellationToken;

use super::{Shared, TriggerRun};
use crate::cloudevent::record::Record;
use crate::cloudevent::{self, DEFAULT_TTL, Event, MAX_TTL, TTL_EXTENSION, binary};
use crate::delivery::{self, DeliveryOutcome, Next, RetryPolicy};
use crate::feed::Verdict;
use crate::sink::Target;

/// The pooled client deliveries go through: keep-alive, no connection per event.
pub(super) type HttpClient = Client<HttpConnector, Full<Bytes>>;

static PREFER: HeaderName = HeaderName::from_static("prefer");

/// How long an idle keep-alive connection to a subscriber is kept.
const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// The pooled client, whose idle connections close after [`POOL_IDLE_TIMEOUT`] (the pool
/// needs a timer for that: without one, the connections a burst of deliveries opened, up to
/// `max_idle_per_host` per subscriber, stayed open for good, each with its task and file).
pub(super) fn http_client(max_idle_per_host: usize) -> HttpClient {
    pooled_client(max_idle_per_host, POOL_IDLE_TIMEOUT)
}

fn pooled_client(max_idle_per_host: usize, idle_timeout: std::time::Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle_per_host)
        .pool_idle_timeout(idle_timeout)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// How one attempt ended, with what a reply or a dead letter needs.
pub(super) struct Answer {
    pub(super) outcome: DeliveryOutcome,
    headers: HeaderMap,
    /// The response body, or the reason there was none ("dispatch error: ...").
    body: Bytes,
    /// The body was over the limit and is not here.
    truncated: bool,
}

impl Answer {
    /// No answer: the error, as the body a dead letter carries.
    fn failed(error: &SendError) -> Self {
        Self {
            outcome: error.outcome(),
            headers: HeaderMap::new(),
            body: Bytes::from(error.to_string()),
            truncated: false,
        }
    }
}

/// Why a delivery attempt got no answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    /// The sink names nothing that can be reached now (a service or broker that is gone).
    #[error("dispatch error: {0}")]
    Unresolvable(String),
    /// The request could not be sent, or the connection failed before the response.
    #[error("dispatch error: {}", error_chain(.0))]
    Request(#[source] hyper_util::client::legacy::Error),
    /// The response's body failed midway.
    #[error("dispatch error: response body failed: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The event does not fit in an HTTP request's headers.
    #[error("dispatch error: the event has more attributes than HTTP headers can carry ({0})")]
    Unsendable(#[source] http::header::MaxSizeReached),
    /// No complete response within the delivery timeout.
    #[error("dispatch error: no response within {} ms", .0.as_millis())]
    Timeout(Duration),
}

impl SendError {
    /// How the retry policy and the metrics see it.
    fn outcome(&self) -> DeliveryOutcome {
        match self {
            SendError::Unresolvable(_) => DeliveryOutcome::Unresolvable,
            SendError::Request(_) | SendError::Body(_) | SendError::Unsendable(_) => DeliveryOutcome::Connection,
            SendError::Timeout(_) => DeliveryOutcome::Timeout,
        }
    }
}

/// The last attempt of a series, and where it went.
pub(super) struct Final {
    pub(super) answer: Answer,
    /// The URL tried (or the sink, when it did not resolve).
    pub(super) destination: String,
    pub(super) attempts: u32,
}

/// One attempt to deliver `record` to the trigger's subscriber, its `attempt`th: done when it
/// was delivered (and its reply taken) or, after the last attempt, dead-lettered or dropped;
/// else when to try again, as the delivery options say. `None` when `stop` interrupted a dead
/// letter's sending: the event stays unfinished and is delivered again.
pub(super) async fn deliver(
    shared: &Shared,
    run: &TriggerRun,
    record: Record,
    attempt: u32,
    stop: &CancellationToken,
) -> Option<Verdict> {
    let event = &record.event;
    let (answer, destination) = attempt_once(shared, &run.trigger.subscriber, event, &run.policy, true).await;
    let next = run.policy.next(attempt, &answer.outcome);
    if next != Next::Delivered {
        run.metrics.failed.inc(&answer.outcome.label());
    }
    match next {
        Next::Delivered => {
            run.metrics.delivered.inc(&answer.outcome.label());
            let latency = SystemTime::now().duration_since(record.accepted_at).unwrap_or_default();
            run.metrics.latency.observe(latency.as_secs_f64());
            reply(shared, run, event, answer).await;
            Some(Verdict::Done)
        }
        Next::RetryAfter(wait) => {
            tracing::debug!(attempt, outcome = %answer.outcome.label(), %destination, ?wait, "delivery failed, retrying");
            Some(Verdict::Retry(wait))
        }
        Next::GiveUp => {
            let last = Final {
                answer,
                destination,
                attempts: attempt,
            };
            dead_letter(shared, run, event, last, stop)
                .await
                .then_some(Verdict::Done)
        }
    }
}

/// One attempt to send `event` to `sink`: its answer, and where it went.
async fn attempt_once(
    shared: &Shared,
    sink: &Sink,
    event: &Event,
    policy: &RetryPolicy,
    prefer_reply: bool,
) -> (Answer, String) {
    match shared.resolver.resolve(sink) {
        Ok(target) => {
            let answer = send(shared, &target, event, policy.timeout, prefer_reply).await;
            (answer, target.url())
        }
        Err(reason) => (
            Answer::failed(&SendError::Unresolvable(reason.to_string())),
            sink_name(sink),
        ),
    }
}

/// Sends to `sink` until success, a final failure or the last attempt, waiting out the
/// backoff here: a source's event and a dead letter, which no feed holds and which ask for no
/// reply.
pub(super) async fn attempts(
    shared: &Shared,
    sink: &Sink,
    event: &Event,
    policy: &RetryPolicy,
    stop: &CancellationToken,
) -> Option<Final> {
    let mut attempt = 1;
    loop {
        let (answer, destination) = attempt_once(shared, sink, event, policy, false).await;
        match policy.next(attempt, &answer.outcome) {
            Next::Delivered | Next::GiveUp => {
                return Some(Final {
                    answer,
                    destination,
                    attempts: attempt,
                });
            }
            Next::RetryAfter(wait) => {
                tracing::debug!(attempt, outcome = %answer.outcome.label(), %destination, ?wait, "delivery failed, retrying");
                tokio::select! {
                    () = stop.cancelled() => return None,
                    () = tokio::time::sleep(wait) => {}
                }
                attempt += 1;
            }
        }
    }
}

/// One POST in binary mode, bounded by `timeout` from connect to the end of the body.
async fn send(shared: &Shared, target: &Target, event: &Event, timeout: Duration, prefer_reply: bool) -> Answer {
    let mut request = match binary::to_request(event, target.uri.clone()) {
        Ok(request) => request.map(Full::new),
        Err(error) => return Answer::failed(&SendError::Unsendable(error)),
    };
    if let Some(host) = &target.host
        && let Ok(host) = HeaderValue::from_str(host)
    {
        request.headers_mut().insert(header::HOST, host);
    }
    if prefer_reply {
        request
            .headers_mut()
            .insert(PREFER.clone(), HeaderValue::from_static("reply"));
    }
    let max_body = shared.max_body_bytes;
    let exchange = async {
        let response = shared.client.request(request).await.map_err(SendError::Request)?;
        let (parts, body) = response.into_parts();
        let (body, truncated) = match Limited::new(body, max_body).collect().await {
            Ok(collected) => (collected.to_bytes(), false),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => (Bytes::new(), true),
            Err(e) => return Err(SendError::Body(e)),
        };
        Ok(Answer {
            outcome: DeliveryOutcome::Status(parts.status.as_u16()),
            headers: parts.headers,
            body,
            truncated,
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => Answer::failed(&error),
        Err(_) => Answer::failed(&SendError::Timeout(timeout)),
    }
}

/// Ingests the subscriber's reply, if it sent a CloudEvent, into the trigger's broker, one hop
/// closer to its TTL.
async fn reply(shared: &Shared, run: &TriggerRun, event: &Event, answer: Answer) {
    let trigger = &run.trigger.name;
    if answer.truncated {
        tracing::warn!(%trigger, id = %event.id, limit = shared.max_body_bytes, "reply larger than the event limit; dropped");
        return;
    }
    let mut reply = match cloudevent::from_response(&answer.headers, answer.body, shared.ingress.config().shape()) {
        Ok(Some(reply)) => reply,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%trigger, id = %event.id, %error, "subscriber replied with an invalid CloudEvent; dropped");
            return;
        }
    };
    let ttl = event.ttl().unwrap_or(DEFAULT_TTL).min(MAX_TTL);
    if ttl <= 1 {
        // The event has gone around as often as it may: most likely a loop of replies.
        run.metrics.replies_dropped.inc();
        tracing::debug!(%trigger, id = %event.id, "reply dropped: TTL ran out");
        return;
    }
    reply.set_extension(TTL_EXTENSION, (ttl - 1).to_string());
    if let Err(error) = shared.ingress.ingest(&run.trigger.broker, vec![reply]).await {
        tracing::warn!(%trigger, id = %event.id, %error, "reply not stored; dropped");
    }
}

/// After the last failed attempt: to the dead-letter sink (with the same retries), or dropped.
async fn dead_letter(shared: &Shared, run: &TriggerRun, event: &Event, last: Final, stop: &CancellationToken) -> bool {
    let trigger = &run.trigger.name;
    let outcome = last.answer.outcome.label();
    let Some(sink) = &run.trigger.delivery.dead_letter_sink else {
        run.metrics.dropped.inc();
        tracing::warn!(
            %trigger, id = %event.id, attempts = last.attempts, %outcome, destination = %last.destination,
            "event undeliverable and the trigger has no dead-letter sink; dropped (set delivery.deadLetterSink to keep such events)"
        );
        return true;
    };
    let letter = delivery::dead_letter(event, &last.destination, &last.answer.outcome, &last.answer.body);
    let Some(sent) = attempts(shared, sink, &letter, &run.policy, stop).await else {
        return false;
    };
    if sent.answer.outcome.is_success() {
        run.metrics.dead_lettered.inc();
        tracing::debug!(%trigger, id = %event.id, %outcome, "event dead-lettered");
    } else {
        run.metrics.dropped.inc();
        tracing::warn!(
            %trigger, id = %event.id, %outcome, dead_letter_sink = %sent.destination,
            dead_letter_outcome = %sent.answer.outcome.label(),
            "event undeliverable and its dead-letter sink failed too; dropped"
        );
    }
    true
}

/// A sink as the user wrote it, for messages about sinks that did not resolve.
fn sink_name(sink: &Sink) -> String {
    match sink {
        Sink::Service(name) => format!("service:{name}"),
        Sink::Broker(name) => format!("broker:{name}"),
        Sink::Url(url) => url.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;

    use super::*;

    /// A subscriber that answers 202 after `delay` and counts its open connections.
    async fn subscriber(delay: Duration) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let counted = open.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let open = counted.clone();
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| async move {
                        tokio::time::sleep(delay).await;
                        let mut response = http::Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = http::StatusCode::ACCEPTED;
                        Ok::<_, std::convert::Infallible>(response)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (addr, open)
    }

    #[tokio::test]
    async fn idle_connections_a_burst_opened_are_closed_after_the_idle_timeout() {
        let (addr, open) = subscriber(Duration::from_millis(100)).await;
        let client = pooled_client(256, Duration::from_millis(300));
        let burst: Vec<_> = (0..20)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    let request = http::Request::post(format!("http://{addr}/"))
                        .body(Full::new(Bytes::from_static(b"{}")))
                        .unwrap();
                    let response = client.request(request).await.unwrap();
                    response.into_body().collect().await.unwrap();
                })
            })
            .collect();
        for request in burst {
            request.await.unwrap();
        }
        assert!(open.load(Ordering::SeqCst) >= 10, "the burst opened connections");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while open.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(open.load(Ordering::SeqCst), 0, "idle connections were closed");
    }
}
