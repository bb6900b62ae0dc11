//! Brokers end to end, in process: the ingress router on 127.0.0.1:0 over a redb log in a
//! temporary directory, the dispatcher, and subscribers that are real local HTTP servers.
//! Waiting is bounded polling (`eventually`), never a fixed sleep.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use chrono::Utc;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus_client::registry::Registry;
use rouse_api::eventing::{BackoffPolicy, Delivery, Filter, Sink, Trigger};
use rouse_eventing::Event;
use rouse_eventing::{
    BrokerIngress, Dispatcher, EventLog, EventingConfig, EventingMetrics, RedbLog, Resolve, Target, ingress_router,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

// === harness ===

/// How long a test waits for something before failing.
const PATIENCE: Duration = Duration::from_secs(10);

/// Polls `check` every 5 ms until it holds, for at most [`PATIENCE`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Resolves `service:NAME` to a registered subscriber (with Host `NAME.localhost`, as the
/// daemon does), `broker:NAME` to the test's ingress, URLs to themselves.
struct Sinks {
    ingress: SocketAddr,
    services: Mutex<HashMap<String, Uri>>,
}

impl Resolve for Sinks {
    fn resolve(&self, sink: &Sink) -> Result<Target, String> {
        match sink {
            Sink::Service(name) => {
                let services = self.services.lock().unwrap();
                let uri = services
                    .get(name)
                    .ok_or_else(|| format!("service '{name}' does not exist"))?;
                Ok(Target::with_host(uri.clone(), format!("{name}.localhost")))
            }
            Sink::Broker(name) => Ok(Target::new(
                format!("http://{}/default/{name}", self.ingress).parse().unwrap(),
            )),
            Sink::Url(url) => url.parse().map(Target::new).map_err(|e| format!("bad URL {url}: {e}")),
        }
    }
}

/// The daemon's eventing half: log, ingress (HTTP) and dispatcher.
struct Harness {
    ingress: Arc<BrokerIngress>,
    dispatcher: Dispatcher,
    sinks: Arc<Sinks>,
    registry: Registry,
    addr: SocketAddr,
    cancel: CancellationToken,
    server: JoinHandle<()>,
}

fn fast_config() -> EventingConfig {
    EventingConfig {
        cursor_interval: Duration::from_millis(20),
        trim_interval: Duration::from_millis(50),
        drain_timeout: Duration::from_millis(500),
        ..EventingConfig::default()
    }
}

impl Harness {
    async fn start(dir: &Path) -> Self {
        Self::with_config(dir, fast_config()).await
    }

    async fn with_config(dir: &Path, config: EventingConfig) -> Self {
        let log: Arc<dyn EventLog> = Arc::new(RedbLog::open(&dir.join("events.redb")).unwrap());
        let mut registry = Registry::default();
        let metrics = EventingMetrics::register(&mut registry);
        let ingress = Arc::new(BrokerIngress::new(log, config, metrics.clone()));
        ingress.add_broker("default").await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let shutdown = cancel.clone();
        let router = ingress_router(ingress.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
                .unwrap();
        });
        let sinks = Arc::new(Sinks {
            ingress: addr,
            services: Mutex::new(HashMap::new()),
        });
        let dispatcher = Dispatcher::new(ingress.clone(), sinks.clone(), metrics, cancel.child_token());
        Self {
            ingress,
            dispatcher,
            sinks,
            registry,
            addr,
            cancel,
            server,
        }
    }

    /// Stops everything and waits until the log is closed (so it can be reopened).
    async fn stop(self) {
        self.dispatcher.shutdown().await;
        self.cancel.cancel();
        self.server.await.unwrap();
        let log = self.ingress.log().clone();
        drop(self.dispatcher);
        drop(self.ingress);
        assert_eq!(Arc::strong_count(&log), 1, "something still holds the event log");
    }

    fn service(&self, name: &str, subscriber: &Subscriber) -> Sink {
        self.sinks
            .services
            .lock()
            .unwrap()
            .insert(name.to_string(), subscriber.uri());
        Sink::Service(name.to_string())
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs to the broker `default` in binary mode.
    async fn send(&self, event: &Event) -> StatusCode {
        let request = rouse_eventing::binary::to_request(event, self.url("/default/default").parse().unwrap()).unwrap();
        let (parts, body) = request.into_parts();
        post(&self.url("/default/default"), parts.headers, body).await.0
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text
    }

    /// The value of one series (exact line prefix, labels included).
    fn metric(&self, series: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    async fn wait_settled(&self, trigger: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let progress = self.dispatcher.progress(trigger).await.unwrap();
            if progress.cursor == progress.head {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "trigger {trigger} never caught up: {progress:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn trigger(name: &str, subscriber: Sink) -> Trigger {
    Trigger {
        name: name.to_string(),
        broker: "default".to_string(),
        created_at: Utc::now(),
        labels: Vec::new(),
        filters: Vec::new(),
        subscriber,
        delivery: Delivery::default(),
    }
}

fn event(id: &str, ty: &str) -> Event {
    let mut event = Event::new(id, "/tests", ty);
    event.datacontenttype = Some("text/plain".to_string());
    event.data = Some(Bytes::from(format!("data of {id}")));
    event
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn request(method: &str, url: &str, headers: HeaderMap, body: Bytes) -> (StatusCode, HeaderMap, String) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(body))
        .unwrap();
    *request.headers_mut() = headers;
    let response = client().request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned())
}

async fn post(url: &str, headers: HeaderMap, body: Bytes) -> (StatusCode, HeaderMap, String) {
    request("POST", url, headers, body).await
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// One request a subscriber got.
#[derive(Clone, Debug)]
struct Received {
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What a subscriber answers.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    delay: Duration,
}

impl Reply {
    fn status(status: u16) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            delay: Duration::ZERO,
        }
    }

    fn body(mut self, body: &str) -> Self {
        self.body = Bytes::copy_from_slice(body.as_bytes());
        self
    }
}

type Respond = dyn Fn(&Received) -> Reply + Send + Sync;

/// A local HTTP server that records requests and answers as told.
struct Subscriber {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    _server: JoinHandle<()>,
}

impl Subscriber {
    async fn start(respond: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Self {
        let respond: Arc<Respond> = Arc::new(respond);
        let received = Arc::new(Mutex::new(Vec::new()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = received.clone();
        let handler = move |request: Request| {
            let (respond, log) = (respond.clone(), log.clone());
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let got = Received {
                    at: Instant::now(),
                    headers: parts.headers,
                    body,
                };
                let reply = respond(&got);
                log.lock().unwrap().push(got);
                tokio::time::sleep(reply.delay).await;
                let mut response = Response::new(Body::from(reply.body));
                *response.status_mut() = reply.status;
                *response.headers_mut() = reply.headers;
                response
            }
        };
        let router = axum::Router::new().fallback(handler);
        let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            addr,
            received,
            _server: server,
        }
    }

    async fn accepting() -> Self {
        Self::start(|_| Reply::status(202)).await
    }

    fn uri(&self) -> Uri {
        format!("http://{}/", self.addr).parse().unwrap()
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn ids(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|r| r.header("ce-id").unwrap_or_default().to_string())
            .collect()
    }

    async fn wait_for(&self, count: usize) -> Vec<Received> {
        eventually(&format!("the subscriber got {count} requests"), || {
            self.received.lock().unwrap().len() >= count
        })
        .await;
        self.received()
    }
}

// === ingress: content modes ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_events_are_stored_then_delivered_with_their_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Harness::start(dir.path()).await;
    let subscriber = Subscriber::accepting().await;
    let sink = broker.service("display", &subscriber);
    broker.dispatcher.upsert(trigger("all", sink)).await.unwrap();

    let sent = post(
        &broker.url("/default/default"),
        headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "b-1"),
            ("ce-source", "/tests/binary"),
            ("ce-type", "dev.rouse.binary"),
            ("ce-subject", "caf%C3%A9%20au%20lait"),
            ("ce-color", "blue"),
            ("content-type", "text/plain; charset=utf-8"),
        ]),
        Bytes::from_static(b"hello"),
    )
    .await;
    assert_eq!(sent.0, StatusCode::ACCEPTED, "{}", sent.2);

    let got = subscriber.wait_for(1).await;
    let got = &got[0];
    assert_eq!(
        got.header("host"),
        Some("display.localhost"),
        "addressed through the service's host"
    );
    assert_eq!(got.header("ce-id"), Some("b-1"));
    assert_eq!(got.header("ce-specversion"), Some("1.0"));
    assert_eq!(
        got.header("ce-subject"),
        Some("caf%C3%A9%20au%20lait"),
        "re-encoded on the way out"
    );
    assert_eq!(got.header("ce-color"), Some("blue"));
    assert_eq!(
        got.header("ce-knativebrokerttl"),
        Some("255"),
        "the ingress set the default TTL"
    );
    assert_eq!(got.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(got.header("prefer"), Some("reply"));
    assert_eq!(&got.body[..], b"hello");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_events_are_delivered_in_binary_mode_with_their_json_data() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Harness::start(dir.path()).await;
    let subscriber = Subscriber::accepting().await;
    let sink = broker.service("display", &subscriber);
    broker.dispatcher.upsert(trigger("all", sink)).await.unwrap();

    let body = r#"{"specversion":"1.0","id":"s-1","source":"/tests","type":"dev.rouse.structured",
                   "knativebrokerttl":9,"data":{"answer": 42}}"#;
    let sent = post(
        &broker.url("/default/default"),
        headers(&[("content-type", "Application/CloudEvents+JSON; charset=UTF-8")]),
        Bytes::from_static(body.as_bytes()),
    )
    .await;
    assert_eq!(sent.0, StatusCode::ACCEPTED, "{}", sent.2);

    let got = subscriber.wait_for(1).await;
    assert_eq!(got[0].header("ce-id"), Some("s-1"));
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(
        got[0].header("ce-knativebrokerttl"),
        Some("9"),
        "a sender's TTL is kept"
    );
    assert_eq!(&got[0].body[..], br#"{"answer": 42}"#);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_stored_whole_and_each_event_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Harness::start(dir.path()).await;
    let subscriber = Subscriber::accepting().await;
    let sink = broker.service("display", &subscriber);
    broker.dispatcher.upsert(trigger("all", sink)).await.unwrap();

    let body = r#"[
        {"specversion":"1.0","id":"1","source":"/b","type":"t","data_base64":"AAEC"},
        {"specversion":"1.0","id":"2","source":"/b","type":"t","datacontenttype":"text/plain","data":"two"},
        {"specversion":"1.0","id":"3","source":"/b","type":"t"}
    ]"#;
    let sent = post(
        &broker.url("/default/default"),
        headers(&[("content-type", "application/cloudevents-batch+json")]),
        Bytes::from_static(body.as_bytes()),
    )
    .await;
    assert_eq!(sent.0, StatusCode::ACCEPTED, "{}", sent.2);

    subscriber.wait_for(3).await;
    let mut by_id: HashMap<String, Received> = HashMap::new();
    for got in subscriber.received() {
        by_id.insert(got.header("ce-id").unwrap().to_string(), got);
    }
    assert_eq!(&by_id["1"].body[..], &[0, 1, 2]);
    assert_eq!(&by_id["2"].body[..], b"two");
    assert!(by_id["3"].body.is_empty());
    assert_eq!(
        broker.metric(r#"rouse_broker_events_accepted_total{broker="default"}"#),
        3.0
    );
    broker.stop().await;
}

// === ingress: errors ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_get_400_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Harness::start(dir.path()).await;
    let url = broker.url("/default/default");
    let binary = |extra: &[(&'static str, &'static str)], skip: &str| {
        let mut pairs: Vec<(&str, &str)> = vec![
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ];
        pairs.retain(|(name, _)| *name != skip);
        pairs.extend_from_slice(extra);
        headers(&pairs)
    };
    let structured = headers(&[("content-type", "application/cloudevents+json")]);
    let batch = headers(&[("content-type", "application/cloudevents-batch+json")]);
    let cases: Vec<(HeaderMap, &str, &str)> = vec![
        (binary(&[], "ce-id"), "", "missing required attribute 'id'"),
        (binary(&[], "ce-source"), "", "missing required attribute 'source'"),
        (binary(&[], "ce-type"), "", "missing required attribute 'type'"),
        (
            binary(&[("ce-specversion", "0.3")], "ce-specversion"),
            "",
            "specversion '0.3'",
        ),
        (binary(&[("ce-my_ext", "x")], ""), "", "invalid attribute name 'my_ext'"),
        (binary(&[("ce-time", "noon")], ""), "", "RFC 3339"),
        (binary(&[("ce-knativebrokerttl", "many")], ""), "", "knativebrokerttl"),
        (
            structured.clone(),
            "{\n  \"id\": \"1\",\n  oops\n}",
            "malformed JSON: key must be a string at line 3 column 3",
        ),
        (
            structured.clone(),
            r#"{"specversion":"1.0","id":"1","type":"t"}"#,
            "missing required attribute 'source'",
        ),
        (batch.clone(), "[]", "empty batch"),
        (
            batch,
            r#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"id":"2"}]"#,
            "event 1 of the batch",
        ),
        (headers(&[("content-type", "text/plain")]), "hi", "not a CloudEvent"),
    ];
    for (headers, body, reason) in cases {
        let (status, _, text) = post(&url, headers.clone(), Bytes::from_static(body.as_bytes())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{headers:?} {body}: {text}");
        assert!(text.contains(reason), "expected '{reason}' in: {text}");
    }
    assert_eq!(
        broker.metric(r#"rouse_broker_events_rejected_total{broker="default",code="400",reason="invalid"}"#),
        12.0
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_brokers_paths_and_methods_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Harness::start(dir.path()).await;
    let ok = || {
        headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ])
    };
    let (status, _, text) = post(&broker.url("/default/nope"), ok(), Bytes::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text.contains("broker 'nope' not found"), "{text}");
    let (status, _, text) = post(&broker.url("/team/default"), ok(), Bytes::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text.contains("one namespace, 'default'"), "{text}");
    let (status, _, text) = post(&broker.url("/default"), ok(), Bytes::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text.contains("/default/BROKER"), "{text}");
    for method in ["GET", "PUT", "DELETE"] {
        let (status, headers, text) = request(method, &broker.url("/default/default"), ok(), Bytes::new()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(headers.get("allow").unwrap(), "POST");
        assert!(text.contains("POST"), "{text}");
    }
    // A broker removed stops accepting; added back, it accepts again.
    broker.ingress.remove_broker("default").await.unwrap();
    assert_eq!(
        post(&broker.url("/default/default"), ok(), Bytes::new()).await.0,
        StatusCode::NOT_FOUND
    );
    broker.ingress.add_broker("default").await.unwrap();
    assert_eq!(
        post(&broker.url("/default/default"), ok(), Bytes::new()).await.0,
        StatusCode::ACCEPTED
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_over_the_size_limit_get_413() {
    let dir = tempfile::tempdir().unwrap();
    let config = EventingConfig {
        max_event_bytes: 1000,
        max_batch_bytes: 5000,
        ..fast_config()
    };
    let broker = Harness::with_config(dir.path(), config).await;
    let url = broker.url("/default/default");
    let binary = headers(&[
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "/s"),
        ("ce-type", "t"),
    ]);
    let (status, _, text) = post(&url, binary.clone(), Bytes::from(vec![b'x'; 1001])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(text.contains("limit of 1000 bytes"), "{text}");
    assert_eq!(
        post(&url, binary, Bytes::from(vec![b'x'; 900])).await.0,
        StatusCode::ACCEPTED
    );

    // A batch within its limit, with one event over the per-event limit.
    let small = r#"{"specversion":"1.0","id":"a","source":"/s","type":"t"}"#;
    let big = format!(
        r#"{{"specversion":"1.0","id":"big","source":"/s","type":"t","data":"{}"}}"#,
        "y".repeat(1500)
    );
    let body = format!("[{small},{big}]");
    let batch = headers(&[("content-type", "application/cloudevents-batch+json")]);
    let (status, _, text) = post(&url, batch.clone(), Bytes::from(body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(text.contains("event 1 of the batch (id 'big')"), "{text}");
    // A batch over the batch limit.
    let body = format!("[{}]", vec![small; 100].join(","));
    assert_eq!(
        post(&url, batch, Bytes::from(body)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        broker.ingress.log().head("default").await.unwrap(),
        1,
        "nothing refused was stored"
    );
    broker.stop().await;
}

// === triggers: filters, start, cursor ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_pick_events_and_filtered_ones_do_not_hold_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Harness::start(dir.path()).await;
    let orders = Subscriber::accepting().await;
    let everything = Subscriber::accepting().await;
    let mut only_orders = trigger("orders", broker.service("orders", &orders));
    only_orders.filters = vec![
        Filter::Prefix {
            attribute: "type".into(),
            value: "com.shop.order.".into(),
        },
        Filter::Not(Box::new(Filter::Exact {
            attribute: "region".into(),
            value: "test".into(),
        })),
    ];
    broker.dispatcher.upsert(only_orders).await.unwrap();
    let everything_sink = broker.service("everything", &everything);
    broker
        .dispatcher
        .upsert(trigger("everything", everything_sink))
        .await
        .unwrap();

    let mut in_test = event("3", "com.shop.order.created");
    in_test.extensions.insert("region".into(), "test".into());
    for event in [
        event("1", "com.shop.order.created"),
        event("2", "com.shop.cart.updated"),
        in_test,
        event("4", "com.shop.order.paid"),
    ] {
        assert_eq!(broker.send(&event).await, StatusCode::ACCEPTED);
    }
    everything.wait_for(4).await;
    broker.wait_settled("orders").await;
    let mut ids = orders.ids();
    ids.sort();
    assert_eq!(ids, ["1", "4"]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_trigger_starts_at_the_head_and_a_removed_one_stops() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Harness::start(dir.path()).await;
    let subscriber = Subscriber::accepting().await;
    assert_eq!(broker.send(&event("before", "t")).await, StatusCode::ACCEPTED);
    let sink = broker.service("s", &subscriber);
    broker.dispatcher.upsert(trigger("late", sink.clone())).await.unwrap();
    assert_eq!(broker.send(&event("after", "t")).await, StatusCode::ACCEPTED);
    subscriber.wait_for(1).await;
    broker.wait_settled("late").await;
    assert_eq!(
        subscriber.ids(),
        ["after"],
        "events sent before the trigger existed are not delivered"
    );

    // Upserting the same trigger again changes nothing (no redelivery).
    broker.dispatcher.upsert(trigger("late", sink)).await.unwrap();
    broker.dispatcher.remove("late").await.unwrap();
    assert!(broker.dispatcher.triggers().await.is_empty());
    assert_eq!(broker.ingress.log().cursor("trigger/default/late").await.unwrap(), None);
    assert_eq!(broker.send(&event("gone", "t")).await, StatusCode::ACCEPTED);
    // Trimming runs every 50 ms: once the broker has no trigger its log empties, which also
    // shows the trigger task is gone (nothing else would let it).
    let log = broker.ingress.log().clone();
    let deadline = Instant::now() + PATIENCE;
    while !log.read("default", 0, 10).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the log was never trimmed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(log);
    assert_eq!(subscriber.ids(), ["after"]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_survives_a_restart_and_delivery_is_at_least_once() {
    let dir = tempfile::tempdir().unwrap();
    // Run 1: two events delivered, then the subscriber goes down and a third keeps failing.
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let subscriber = {
        let down = down.clone();
        Subscriber::start(move |_| {
            if down.load(std::sync::atomic::Ordering::SeqCst) {
                Reply::status(503)
            } else {
                Reply::status(202)
            }
        })
        .await
    };
    let mut durable = trigger("durable", Sink::Url(subscriber.uri().to_string()));
    durable.delivery = Delivery {
        retry: 1000,
        backoff_policy: BackoffPolicy::Linear,
        backoff_delay: Some(Duration::from_millis(10)),
        ..Delivery::default()
    };
    {
        let broker = Harness::start(dir.path()).await;
        broker.dispatcher.upsert(durable.clone()).await.unwrap();
        broker.send(&event("1", "t")).await;
        broker.send(&event("2", "t")).await;
        subscriber.wait_for(2).await;
        broker.wait_settled("durable").await;
        down.store(true, std::sync::atomic::Ordering::SeqCst);
        broker.send(&event("3", "t")).await;
        subscriber.wait_for(4).await; // at least one failed attempt at "3"
        broker.stop().await;
    }
    // While the daemon is down, another event arrives in the log (e.g. sent just before).
    {
        let log = RedbLog::open(&dir.path().join("events.redb")).unwrap();
        assert_eq!(log.cursor("trigger/default/durable").await.unwrap(), Some(2));
        assert_eq!(log.head("default").await.unwrap(), 3);
    }
    // Run 2: the subscriber is back; "3" is delivered again, and nothing before it.
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    let before = subscriber.received().len();
    let broker = Harness::start(dir.path()).await;
    broker.dispatcher.upsert(durable).await.unwrap();
    broker.send(&event("4", "t")).await;
    subscriber.wait_for(before + 2).await;
    broker.wait_settled("durable").await;
    let redelivered: Vec<String> = subscriber.ids()[before..].to_vec();
    let mut sorted = redelivered.clone();
    sorted.sort();
    assert_eq!(sorted, ["3", "4"], "resumed at the cursor: {redelivered:?}");
    broker.stop().await;
}

// === delivery: retries, backoff, timeouts, dead letters ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_backoff_schedule_then_dead_letter_with_knative_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Harness::start(dir.path()).await;
    let failing = Subscriber::start(|_| Reply::status(503).body("overloaded, try later")).await;
    let dead_letters = Subscriber::accepting().await;
    let mut retried = trigger("retried", broker.service("failing", &failing));
    retried.delivery = Delivery {
        retry: 3,
        backoff_policy: BackoffPolicy::Linear,
        backoff_delay: Some(Duration::from_millis(40)),
        timeout: None,
        dead_letter_sink: Some(Sink::Url(dead_letters.uri().to_string())),
    };
    broker.dispatcher.upsert(retried).await.unwrap();
    broker.send(&event("r-1", "t")).await;

    let letters = dead_letters.wait_for(1).await;
    let attempts = failing.received();
    assert_eq!(attempts.len(), 4, "one attempt and three retries");
    for (retry, pair) in attempts.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let expected = Duration::from_millis(40 * (retry as u64 + 1));
        assert!(
            gap >= expected,
            "retry {}: waited {gap:?}, expected {expected:?}",
            retry + 1
        );
        assert!(
            gap < expected + Duration::from_millis(500),
            "retry {}: waited {gap:?}",
            retry + 1
        );
    }
    let letter = &letters[0];
    assert_eq!(letter.header("ce-id"), Some("r-1"));
    assert_eq!(letter.header("ce-knativeerrordest"), Some("http://failing.localhost/"));
    assert_eq!(letter.header("ce-knativeerrorcode"), Some("503"));
    let data = base64::engine::general_purpose::STANDARD
        .decode(letter.header("ce-knativeerrordata").unwrap())
        .unwrap();
    assert_eq!(data, b"overloaded, try later");
    assert_eq!(
        &letter.body[..],
        b"data of r-1",
        "the dead letter is the original event"
    );
    assert_eq!(letter.header("prefer"), None, "no reply is asked of a dead-letter sink");

    broker.wait_settled("retried").await;
    assert_eq!(
        broker.metric(r#"rouse_trigger_attempts_failed_total{trigger="retried",code="503"}"#),
        4.0
    );
    assert_eq!(
        broker.metric(r#"rouse_trigger_events_dead_lettered_total{trigger="retried"}"#),
        1.0
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exponential_backoff_doubles() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Harness::start(dir.path()).await;
    let failing = Subscriber::start(|_| Reply::status(500)).await;
    let mut retried = trigger("exp", broker.service("failing", &failing));
    retried.delivery = Delivery {
        retry: 3,
        backoff_policy: BackoffPolicy::Exponential,
        backoff_delay: Some(Duration::from_millis(20)),
        ..Delivery::default()
    };
    broker.dispatcher.upsert(retried).await.unwrap();
    broker.send(&event("e-1", "t")).await;
    let attempts = failing.wait_for(4).await;
    broker.wait_settled("exp").await;
    for (retry, pair) in attempts.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let expected = Duration::from_millis(20 << (retry + 1));
        assert!(
            gap >= expected,
            "retry {}: waited {gap:?}, expected {expected:?}",
            retry + 1
        );
        assert!(
            gap < expected + Duration::from_millis(500),
            "retry {}: waited {gap:?}",
            retry + 1
        );
    }
    assert_eq!(
        broker.metric(r#"rouse_trigger_events_dropped_total{trigger="exp"}"#),
        1.0
    );
    assert_eq!(failing.received().len(), 4);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_not_retried_and_timeouts_and_unknown_sinks_are() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Harness::start(dir.path()).await;
    let refusing = Subscriber::start(|_| Reply::status(400).body("bad payload")).await;
    let slow = Subscriber::start(|_| Reply {
        delay: Duration::from_secs(5),
        ..Reply::status(200)
    })
    .await;
    let dead_letters = Subscriber::accepting().await;
    let dls = Some(Sink::Url(dead_letters.uri().to_string()));
    let retry_fast = |sink: Option<Sink>| Delivery {
        retry: 2,
        backoff_policy: BackoffPolicy::Linear,
        backoff_delay: Some(Duration::from_millis(5)),
        timeout: Some(Duration::from_millis(100)),
        dead_letter_sink: sink,
    };
    let mut refused = trigger("refused", broker.service("refusing", &refusing));
    refused.filters = vec![Filter::Exact {
        attribute: "type".into(),
        value: "refused".into(),
    }];
    refused.delivery = retry_fast(dls.clone());
    let mut timed_out = trigger("timed-out", broker.service("slow", &slow));
    timed_out.filters = vec![Filter::Exact {
        attribute: "type".into(),
        value: "slow".into(),
    }];
    timed_out.delivery = retry_fast(dls.clone());
    let mut missing = trigger("missing", Sink::Service("nowhere".into()));
    missing.filters = vec![Filter::Exact {
        attribute: "type".into(),
        value: "missing".into(),
    }];
    missing.delivery = retry_fast(dls);
    for t in [refused, timed_out, missing] {
        broker.dispatcher.upsert(t).await.unwrap();
    }
    for (id, ty) in [("1", "refused"), ("2", "slow"), ("3", "missing")] {
        broker.send(&event(id, ty)).await;
    }
    dead_letters.wait_for(3).await;
    let letters: HashMap<String, Received> = dead_letters
        .received()
        .into_iter()
        .map(|r| (r.header("ce-id").unwrap().to_string(), r))
        .collect();
    let data = |id: &str| {
        let encoded = letters[id].header("ce-knativeerrordata").unwrap();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap()
    };
    assert_eq!(refusing.received().len(), 1, "a 400 is final");
    assert_eq!(letters["1"].header("ce-knativeerrorcode"), Some("400"));
    assert_eq!(data("1"), "bad payload");
    assert_eq!(slow.received().len(), 3, "timeouts are retried");
    assert_eq!(letters["2"].header("ce-knativeerrorcode"), Some("500"));
    assert!(data("2").contains("no response within 100 ms"), "{}", data("2"));
    assert_eq!(letters["3"].header("ce-knativeerrorcode"), Some("500"));
    assert_eq!(letters["3"].header("ce-knativeerrordest"), Some("service:nowhere"));
    assert!(data("3").contains("service 'nowhere' does not exist"), "{}", data("3"));
    assert_eq!(
        broker.metric(r#"rouse_trigger_attempts_failed_total{trigger="missing",code="unresolvable"}"#),
        3.0
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_event_does_not_hold_up_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Harness::start(dir.path()).await;
    let subscriber = Subscriber::start(|got| {
        if got.header("ce-id") == Some("stuck") {
            Reply::status(503)
        } else {
            Reply::status(202)
        }
    })
    .await;
    let mut t = trigger("mixed", broker.service("s", &subscriber));
    t.delivery = Delivery {
        retry: 1000,
        backoff_policy: BackoffPolicy::Linear,
        backoff_delay: Some(Duration::from_millis(50)),
        ..Delivery::default()
    };
    broker.dispatcher.upsert(t).await.unwrap();
    broker.send(&event("stuck", "t")).await;
    for i in 0..20 {
        broker.send(&event(&format!("ok-{i}"), "t")).await;
    }
    eventually("the 20 others are delivered", || {
        subscriber.ids().iter().filter(|id| id.starts_with("ok-")).count() == 20
    })
    .await;
    // The cursor stays at the stuck event: a restart would deliver it again.
    let progress = broker.dispatcher.progress("mixed").await.unwrap();
    assert_eq!(progress.cursor, 0);
    assert_eq!(progress.head, 21);
    assert!(broker.metric(r#"rouse_trigger_backlog_events{trigger="mixed"}"#) > 0.0);
    broker.stop().await;
}

// === replies ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_ingested_one_hop_closer_to_their_ttl_and_dropped_when_it_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Harness::start(dir.path()).await;
    let replier = Subscriber::start(|got| {
        let id = got.header("ce-id").unwrap_or_default();
        Reply {
            headers: headers(&[
                ("ce-specversion", "1.0"),
                ("ce-id", &format!("reply-to-{id}")),
                ("ce-source", "/replier"),
                ("ce-type", "reply"),
                ("content-type", "text/plain"),
            ]),
            ..Reply::status(200).body("pong")
        }
    })
    .await;
    let replies = Subscriber::accepting().await;
    let mut asks = trigger("asks", broker.service("replier", &replier));
    asks.filters = vec![Filter::Exact {
        attribute: "type".into(),
        value: "ask".into(),
    }];
    let mut answers = trigger("answers", broker.service("replies", &replies));
    answers.filters = vec![Filter::Exact {
        attribute: "type".into(),
        value: "reply".into(),
    }];
    broker.dispatcher.upsert(asks).await.unwrap();
    broker.dispatcher.upsert(answers).await.unwrap();

    broker.send(&event("a", "ask")).await;
    let got = replies.wait_for(1).await;
    assert_eq!(got[0].header("ce-id"), Some("reply-to-a"));
    assert_eq!(got[0].header("ce-knativebrokerttl"), Some("254"));
    assert_eq!(&got[0].body[..], b"pong");

    let mut last_hop = event("b", "ask");
    last_hop.extensions.insert("knativebrokerttl".into(), "1".into());
    broker.send(&last_hop).await;
    eventually("the reply is dropped for its TTL", || {
        broker.metric(r#"rouse_trigger_replies_dropped_ttl_total{trigger="asks"}"#) == 1.0
    })
    .await;
    broker.wait_settled("asks").await;
    broker.wait_settled("answers").await;
    assert_eq!(replies.ids(), ["reply-to-a"]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_replies_and_dead_letters_to_a_broker_work_too() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Harness::start(dir.path()).await;
    broker.ingress.add_broker("dead").await.unwrap();
    let replier = Subscriber::start(|_| Reply {
        headers: headers(&[("content-type", "application/cloudevents+json")]),
        ..Reply::status(200).body(r#"{"specversion":"1.0","id":"r","source":"/x","type":"done","data":[1]}"#)
    })
    .await;
    let failing = Subscriber::start(|_| Reply::status(500)).await;
    let sink = Subscriber::accepting().await;
    let mut asks = trigger("asks", broker.service("replier", &replier));
    asks.filters = vec![Filter::Exact {
        attribute: "type".into(),
        value: "ask".into(),
    }];
    let mut done = trigger("done", broker.service("failing", &failing));
    done.filters = vec![Filter::Exact {
        attribute: "type".into(),
        value: "done".into(),
    }];
    done.delivery.dead_letter_sink = Some(Sink::Broker("dead".into()));
    let mut graveyard = trigger("graveyard", broker.service("sink", &sink));
    graveyard.broker = "dead".into();
    for t in [asks, done, graveyard] {
        broker.dispatcher.upsert(t).await.unwrap();
    }
    broker.send(&event("q", "ask")).await;
    let got = sink.wait_for(1).await;
    assert_eq!(got[0].header("ce-id"), Some("r"));
    assert_eq!(got[0].header("ce-knativeerrorcode"), Some("500"));
    assert_eq!(&got[0].body[..], b"[1]");
    broker.stop().await;
}

// === throughput ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_sanity() {
    let dir = tempfile::tempdir().unwrap();
    let config = EventingConfig {
        trim_interval: Duration::from_secs(3600),
        ..fast_config()
    };
    let broker = Harness::with_config(dir.path(), config).await;
    let subscriber = Subscriber::accepting().await;
    let sink = broker.service("s", &subscriber);
    broker.dispatcher.upsert(trigger("all", sink)).await.unwrap();

    // In process: many senders of one event each, as concurrent HTTP requests would be.
    const SENDERS: usize = 200;
    const EACH: usize = 50;
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..SENDERS {
        let ingress = broker.ingress.clone();
        senders.spawn(async move {
            for i in 0..EACH {
                let mut event = Event::new(format!("{sender}-{i}"), "/bench", "dev.rouse.bench");
                event.datacontenttype = Some("application/json".into());
                event.data = Some(Bytes::from_static(br#"{"n":1,"text":"a small payload of some bytes"}"#));
                ingress.ingest("default", vec![event]).await.unwrap();
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    let total = SENDERS * EACH;
    let ingest = started.elapsed();
    let per_second = total as f64 / ingest.as_secs_f64();
    subscriber.wait_for(total).await;
    broker.wait_settled("all").await;
    let delivered = started.elapsed();
    println!(
        "ingested {total} events in {ingest:?} ({per_second:.0}/s); all delivered after {delivered:?} ({:.0}/s)",
        total as f64 / delivered.as_secs_f64()
    );
    assert!(per_second > 1000.0, "ingest at {per_second:.0} events/s");
    let mut ids = subscriber.ids();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "every event delivered (at least) once");
    broker.stop().await;
}
