//! Forwarding one request to one instance.
//!
//! Both bodies stream: the request body goes to the instance as it arrives and the response
//! body comes back as the instance writes it; nothing is buffered whole. Plain HTTP/1.1 goes
//! over each instance's own keep-alive pool ([`crate::upstream`]), whose connections the
//! request's task drives itself; h2c and upgrades go through hyper-util's shared clients.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::config::IngressConfig;
use crate::endpoints::{AcquireError, Endpoint, InFlight, RevisionEndpoints};
use crate::host::service_for_host;
use crate::metrics::IngressMetrics;
use crate::respond::Refusal;
use crate::route::RouteTable;
use crate::server::Peer;
use crate::stall::{BodyIdle, IdleBody};
use crate::upstream::UpstreamBody;
use rouse_api::error_chain;
use tracing::Instrument;

/// Errors carried by bodies that pass through the proxy.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the ingress sends.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

type UpstreamClient = Client<HttpConnector, UpstreamBody>;

/// Headers that describe one hop, not the message; never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The ingress: routes each request by host and proxies it to an instance.
#[derive(Debug)]
pub struct Ingress {
    routes: Arc<RouteTable>,
    config: IngressConfig,
    /// For upgrades (websockets), whose connections outlive the request.
    http1: UpstreamClient,
    /// For instances that speak h2c: one multiplexed connection each.
    h2c: UpstreamClient,
    /// Upgraded connections (websockets) being relayed; owned here, awaited at shutdown.
    tunnels: TaskTracker,
    metrics: IngressMetrics,
    /// The address containers reach the daemon at (the Docker bridge's gateway): a
    /// connection to it comes from a container, and may reach cluster-local services.
    containers_ip: Option<IpAddr>,
}

impl Ingress {
    pub fn new(routes: Arc<RouteTable>, config: IngressConfig, metrics: IngressMetrics) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // Idle connections close after 90 s (hyper-util's default, which needs a timer to
        // take effect): instances come and go, and a pool without one keeps every
        // connection it ever opened.
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .pool_timer(TokioTimer::new());
        let http1 = builder.build(connector.clone());
        let h2c = builder.clone().http2_only(true).build(connector);
        Self {
            routes,
            config,
            http1,
            h2c,
            tunnels: TaskTracker::new(),
            metrics,
            containers_ip: None,
        }
    }

    /// Takes connections to `ip` as coming from containers, which reach cluster-local
    /// services; connections to any other address of the daemon do not.
    pub fn with_containers_at(self, ip: Option<IpAddr>) -> Self {
        Self {
            containers_ip: ip,
            ..self
        }
    }

    pub fn config(&self) -> &IngressConfig {
        &self.config
    }

    /// Handles one client request end to end, and counts it.
    pub async fn handle(&self, request: Request<Incoming>, client: &Peer) -> Response<ProxyBody> {
        let start = Instant::now();
        let mut routed = None;
        let response = match self.route(request, client, start, &mut routed).await {
            Ok(response) => response,
            Err(refusal) => refusal.into_response(),
        };
        let seconds = start.elapsed().as_secs_f64();
        match routed {
            Some(revision) => self.metrics.observe(&revision, response.status().as_u16(), seconds),
            None => self.metrics.observe_unrouted(response.status().as_u16()),
        }
        response
    }

    /// Routes by host; sets `routed` to the revision once it is known.
    async fn route(
        &self,
        request: Request<Incoming>,
        client: &Peer,
        start: Instant,
        routed: &mut Option<Arc<RevisionEndpoints>>,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let Some(host_value) = request_host(&request) else {
            return Err(Refusal::MissingHost);
        };
        let Ok(host) = host_value.to_str() else {
            return Err(Refusal::MissingHost);
        };
        // Hosts are case-insensitive; allocate only when there is something to lower.
        let host: std::borrow::Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            host.to_ascii_lowercase().into()
        } else {
            host.into()
        };
        let roll = rand::random_range(0..100);
        let service = service_for_host(&host, &self.config.domain).map_err(Refusal::BadHost)?;
        let from_containers = self.containers_ip == Some(client.local.ip());
        let Some(revision) = service.and_then(|s| self.routes.lookup(s, roll, from_containers)) else {
            return Err(Refusal::UnknownHost {
                host: host.into_owned(),
                domain: self.config.domain.clone(),
            });
        };
        *routed = Some(revision.clone());
        // A declared length (hyper has checked the header) is the body's exact size hint.
        if request.body().size_hint().lower() > self.config.max_body_bytes {
            return Err(self.too_large());
        }
        let deadline = start + revision.timeout;
        // A free slot is the common case: only a request that has to wait carries (boxed) the
        // state of waiting, so the future of every other request stays small.
        let acquired = match revision.try_acquire_in_turn() {
            Some(slot) => Ok(slot),
            None => Box::pin(revision.acquire(deadline, self.config.max_waiting)).await,
        };
        let name = || revision.revision.clone();
        let slot = acquired.map_err(|e| match e {
            AcquireError::QueueFull => Refusal::QueueFull { revision: name() },
            AcquireError::Timeout => Refusal::NoInstance {
                revision: name(),
                timeout: revision.timeout,
            },
            AcquireError::Closed => Refusal::RevisionGone { revision: name() },
        })?;
        // Disabled unless debug logging is on: then the forward's lines name the request's
        // service, revision and instance.
        let span = tracing::debug_span!(
            "request",
            service = %revision.service,
            revision = %revision.revision,
            instance = %slot.endpoint().name
        );
        self.forward(request, client, &host_value, &revision, slot, deadline)
            .instrument(span)
            .await
    }

    async fn forward(
        &self,
        request: Request<Incoming>,
        client: &Peer,
        host: &HeaderValue,
        revision: &RevisionEndpoints,
        slot: InFlight,
        deadline: Instant,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let endpoint = slot.endpoint().clone();
        let mut request = request;
        // An upgrade (websocket and the like) passes through: the same protocol is asked of the
        // instance, and once both sides switched, bytes are copied both ways until either closes.
        let upgrade = requested_upgrade(request.headers());
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        prepare_headers(&mut parts.headers, host, &client.ip);
        if let Some(protocol) = &upgrade {
            parts.headers.insert(header::UPGRADE, protocol.clone());
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        let body = Limited::new(
            IdleBody::new(body, self.config.body_idle_timeout),
            usize::try_from(self.config.max_body_bytes).unwrap_or(usize::MAX),
        );
        let timed_out = || Refusal::NoAnswer {
            revision: revision.revision.clone(),
            timeout: revision.timeout,
        };
        if !revision.h2c && upgrade.is_none() {
            // Plain HTTP/1.1: on a connection this task drives itself.
            parts.version = Version::HTTP_11;
            parts.uri = Uri::from(path);
            let request = Request::from_parts(parts, body);
            // Boxed: the exchange's state is large, and hyper moves the future of each request.
            let exchange = Box::pin(tokio::time::timeout_at(
                deadline,
                endpoint.connections.send(endpoint.addr, request),
            ));
            return match exchange.await {
                Err(_) => Err(timed_out()),
                Ok(Err(e)) => Err(self.failed(revision, &endpoint, &e)),
                Ok(Ok(response)) => Ok(pass_back(response, slot)),
            };
        }
        // h2c and upgrades: on the shared clients, whose connections run in tasks of their own.
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(endpoint.authority.clone());
        uri.path_and_query = Some(path);
        parts.uri = match Uri::from_parts(uri) {
            Ok(uri) => uri,
            Err(e) => return Err(self.failed(revision, &endpoint, &e)),
        };
        let upstream = if upgrade.is_none() {
            parts.version = Version::HTTP_2;
            &self.h2c
        } else {
            parts.version = Version::HTTP_11;
            &self.http1
        };
        let request = Request::from_parts(parts, body);
        match Box::pin(tokio::time::timeout_at(deadline, upstream.request(request))).await {
            Err(_) => Err(timed_out()),
            Ok(Err(e)) => Err(self.failed(revision, &endpoint, &e)),
            Ok(Ok(response)) => Ok(match client_upgrade {
                Some(client_upgrade) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    self.tunnel(response, client_upgrade, slot)
                }
                _ => pass_back(response, slot),
            }),
        }
    }

    /// Why the instance could not be asked or did not answer.
    fn failed(
        &self,
        revision: &RevisionEndpoints,
        endpoint: &Endpoint,
        error: &(dyn std::error::Error + 'static),
    ) -> Refusal {
        if caused_by::<LengthLimitError>(error) {
            return self.too_large();
        }
        if caused_by::<BodyIdle>(error) {
            return Refusal::BodyIdle {
                timeout: self.config.body_idle_timeout,
            };
        }
        Refusal::InstanceFailed {
            revision: revision.revision.clone(),
            instance: endpoint.name.clone(),
            cause: error_chain(error),
        }
    }

    fn too_large(&self) -> Refusal {
        Refusal::BodyTooLarge {
            limit: self.config.max_body_bytes,
        }
    }
}

/// The instance's response, on its way to the client: hop-by-hop headers dropped, and the
/// request's slot on the instance held until the body has ended.
fn pass_back<B>(response: Response<B>, slot: InFlight) -> Response<ProxyBody>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin + Send + 'static,
{
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = HoldingBody {
        inner: body,
        _held: slot,
    };
    Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
}

impl Ingress {
    /// Answers 101 to the client and copies bytes between client and instance until either
    /// side closes. The tunnel holds the request's slot on the instance for its whole life.
    fn tunnel(&self, mut response: Response<Incoming>, client: OnUpgrade, slot: InFlight) -> Response<ProxyBody> {
        let instance = hyper::upgrade::on(&mut response);
        self.tunnels.spawn(async move {
            let _slot = slot;
            let (Ok(client), Ok(instance)) = tokio::join!(client, instance) else {
                return;
            };
            let (mut client, mut instance) = (TokioIo::new(client), TokioIo::new(instance));
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut instance).await {
                tracing::debug!(error = %e, "upgraded connection ended with an error");
            }
        });
        let (parts, _) = response.into_parts();
        Response::from_parts(parts, Empty::new().map_err(|never| match never {}).boxed_unsync())
    }

    /// Stops taking new tunnels and waits up to `grace` for open ones to close.
    pub async fn close_tunnels(&self, grace: std::time::Duration) {
        self.tunnels.close();
        let _ = tokio::time::timeout(grace, self.tunnels.wait()).await;
    }
}

/// The protocol a request asks to switch to (`Connection: upgrade` with `Upgrade: X`).
fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// The host a request is for: the `Host` header, or the URI authority (HTTP/2).
fn request_host<B>(request: &Request<B>) -> Option<HeaderValue> {
    match request.headers().get(header::HOST) {
        Some(host) => Some(host.clone()),
        None => HeaderValue::from_str(request.uri().authority()?.as_str()).ok(),
    }
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none: one pass over their few names is cheaper than a lookup of each.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Makes the client's headers fit to send on: hop-by-hop ones removed, `Host` kept (HTTP/2
/// clients send it as the authority), and the X-Forwarded-* set.
fn prepare_headers(headers: &mut HeaderMap, host: &HeaderValue, client_ip: &HeaderValue) {
    strip_hop_by_hop(headers);
    if !headers.contains_key(header::HOST) {
        headers.insert(header::HOST, host.clone());
    }
    let forwarded_for = match headers.get(&X_FORWARDED_FOR) {
        Some(previous) => HeaderValue::from_bytes(&[previous.as_bytes(), b", ", client_ip.as_bytes()].concat()).ok(),
        None => Some(client_ip.clone()),
    };
    if let Some(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
    if !headers.contains_key(&X_FORWARDED_HOST) {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
}

fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<E>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// A body that keeps `G` (a request's slot on its instance, its place among a connection's
/// open requests) alive for as long as the body is not done with.
pub(crate) struct HoldingBody<B, G> {
    pub(crate) inner: B,
    pub(crate) _held: G,
}

impl<B: Body + Unpin, G: Unpin> Body for HoldingBody<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_dropped_and_forwarding_headers_set() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-custom", HeaderValue::from_static("kept"));
        headers.insert(X_FORWARDED_FOR.clone(), HeaderValue::from_static("10.0.0.1"));
        let host = HeaderValue::from_static("hello.localhost:8080");
        prepare_headers(&mut headers, &host, &HeaderValue::from_static("127.0.0.1"));
        assert!(headers.get(header::CONNECTION).is_none());
        assert!(headers.get("x-secret").is_none());
        assert!(headers.get("keep-alive").is_none());
        assert_eq!(headers["x-custom"], "kept");
        assert_eq!(headers[header::HOST], "hello.localhost:8080");
        assert_eq!(headers[&X_FORWARDED_FOR], "10.0.0.1, 127.0.0.1");
        assert_eq!(headers[&X_FORWARDED_PROTO], "http");
        assert_eq!(headers[&X_FORWARDED_HOST], "hello.localhost:8080");
    }

    #[test]
    fn hop_by_hop_headers_go_even_without_a_connection_header() {
        let mut headers = HeaderMap::new();
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[header::CONTENT_TYPE], "text/plain");
        let mut plain = headers.clone();
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain, headers, "a message without hop-by-hop headers is left as it is");
    }

    #[test]
    fn host_comes_from_header_or_authority() {
        let r = Request::builder()
            .uri("/")
            .header("host", "a.localhost")
            .body(())
            .unwrap();
        assert_eq!(request_host(&r).unwrap(), "a.localhost");
        let r = Request::builder().uri("http://b.localhost/x").body(()).unwrap();
        assert_eq!(request_host(&r).unwrap(), "b.localhost");
        let r = Request::builder().uri("/").body(()).unwrap();
        assert_eq!(request_host(&r), None);
    }
}
