//! Serving HTTP on a listener with limits: header size, idle clients, graceful shutdown.
//!
//! Used by the ingress and by the admin API, so both get the same protections.

use std::convert::Infallible;
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::proxy::{BoxError, HoldingBody, Ingress};
use crate::stall::WriteStall;

/// Limits applied to every connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Largest request head, in bytes.
    pub max_header_bytes: usize,
    /// How long a client may wait before sending a request head (first one or next one).
    pub idle_timeout: Duration,
    /// How long a client may leave a response (or its side of a tunnel) unread before the
    /// connection is cut (`[ingress] write-timeout`).
    pub write_timeout: Duration,
    /// How long open requests get to finish once shutdown starts.
    pub shutdown_grace: Duration,
    /// Most connections open at once on the listener (`[ingress] max-connections`).
    pub max_connections: usize,
    /// Most connections open at once from one client IP (`[ingress]
    /// max-connections-per-client`).
    pub max_connections_per_client: usize,
}

/// Open connections of one listener, in all and per client IP. A slot is held by a
/// [`ConnectionSlot`] for the life of its connection (dropped even if the task panics).
#[derive(Default)]
struct OpenConnections {
    total: AtomicUsize,
    per_client: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// Which cap refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cap {
    Listener(usize),
    Client(usize),
}

impl OpenConnections {
    /// A slot for a connection from `ip`, unless a cap is reached.
    fn admit(self: &Arc<Self>, ip: std::net::IpAddr, limits: &ConnectionLimits) -> Result<ConnectionSlot, Cap> {
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.total.load(Ordering::Relaxed) >= limits.max_connections {
            return Err(Cap::Listener(limits.max_connections));
        }
        let mine = per_client.entry(ip).or_default();
        if *mine >= limits.max_connections_per_client {
            return Err(Cap::Client(limits.max_connections_per_client));
        }
        *mine += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionSlot { open: self.clone(), ip })
    }
}

struct ConnectionSlot {
    open: Arc<OpenConnections>,
    ip: std::net::IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_client = self
            .open
            .per_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = per_client.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_client.remove(&self.ip);
            }
        }
        self.open.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers a connection over a cap with a 503 that names the cap, without waiting for the
/// client: one non-blocking write of a short response, then the socket closes.
fn refuse(stream: &TcpStream, cap: Cap) {
    let reason = match cap {
        Cap::Listener(n) => format!("this listener has {n} connections open, its limit ([ingress] max-connections)"),
        Cap::Client(n) => {
            format!("this client has {n} connections open, its limit ([ingress] max-connections-per-client)")
        }
    };
    let body = format!("too many connections: {reason}; close some or retry later\n");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\n\
         retry-after: 1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

/// The client end of a connection, as each of its requests sees it.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The address's IP as a header value (for `X-Forwarded-For`), made once per connection.
    pub ip: HeaderValue,
    /// The address the client connected to: which of the daemon's addresses it used.
    pub local: SocketAddr,
}

impl Peer {
    pub fn new(addr: SocketAddr, local: SocketAddr) -> Self {
        let ip = HeaderValue::try_from(addr.ip().to_string()).expect("an IP address is a valid header value");
        Self { addr, ip, local }
    }
}

/// Serves HTTP/1.1 and h2c on `listener` until `shutdown` is cancelled, then lets open
/// requests finish for up to `limits.shutdown_grace`.
pub async fn serve<H, F, B>(listener: TcpListener, limits: ConnectionLimits, shutdown: CancellationToken, handler: H)
where
    H: Fn(Request<Incoming>, Peer) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No HTTP/1 header-read timer: hyper would arm one per request, which costs the proxy
    // about 5 % of its throughput. `serve_connection` closes idle clients instead.
    builder
        .http1()
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.idle_timeout));
    let builder = Arc::new(builder);
    let mut connections = JoinSet::new();
    let open = Arc::new(OpenConnections::default());
    let mut refused_at: Option<tokio::time::Instant> = None;
    // The address a connection came to: the listener's, unless it listens on every address,
    // where each connection is asked.
    let bound = listener.local_addr().ok();
    let bound = bound.filter(|addr| !addr.ip().is_unspecified());
    loop {
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let slot = match open.admit(remote.ip(), &limits) {
            Ok(slot) => slot,
            Err(cap) => {
                refuse(&stream, cap);
                // One line per second at most: a flood of refusals must not flood the log.
                if refused_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    refused_at = Some(tokio::time::Instant::now());
                    tracing::warn!(client = %remote.ip(), ?cap, "connection refused: a connection cap is reached");
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = bound.or_else(|| stream.local_addr().ok()).unwrap_or(remote);
        let connection = serve_connection(
            WriteStall::new(Lingering::new(stream), limits.write_timeout),
            Peer::new(remote, local),
            builder.clone(),
            limits.idle_timeout,
            shutdown.clone(),
            handler.clone(),
        );
        connections.spawn(async move {
            let _slot = slot;
            connection.await;
        });
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_grace, drained).await.is_err() {
        tracing::warn!("open connections did not finish within the shutdown grace period");
    }
    connections.shutdown().await;
}

/// Serves one connection until the client or the instance ends it, it sits idle, or
/// `shutdown` asks it to finish its open requests and close.
///
/// Idleness is checked once per `idle_timeout` rather than timed per request (a timer per
/// request is what made hyper's header timeout costly): a connection that started no request
/// during a whole period and has none open is asked to close, and dropped a period later if
/// it has not. That also cuts a client that connects and sends nothing, or sends a request
/// head ever so slowly.
async fn serve_connection<H, F, B>(
    stream: WriteStall<Lingering>,
    peer: Peer,
    builder: Arc<auto::Builder<TokioExecutor>>,
    idle_timeout: Duration,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Request<Incoming>, Peer) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let remote = peer.addr;
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = activity.clone();
        service_fn(move |request| {
            let open = activity.start();
            let response = handler(request, peer.clone());
            async move {
                Ok::<_, Infallible>(response.await.map(|body| HoldingBody {
                    inner: body,
                    _held: open,
                }))
            }
        })
    };
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let idle_check = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle_check);
    let mut started_before = 0;
    let mut finishing = false;
    let mut asked_to_close = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
                return;
            }
            () = cancelled.as_mut(), if !finishing => {
                connection.as_mut().graceful_shutdown();
                finishing = true;
            }
            () = idle_check.as_mut() => {
                let started = activity.started.load(Ordering::Relaxed);
                let idle = started == started_before && activity.open.load(Ordering::Relaxed) == 0;
                if !idle {
                    started_before = started;
                } else if !asked_to_close {
                    // An idle connection closes at once; one in the middle of a request head
                    // would wait for the head to complete.
                    connection.as_mut().graceful_shutdown();
                    asked_to_close = true;
                } else {
                    // Still no request a whole period later: a head that never completes.
                    tracing::debug!(%remote, "closing a connection that sent no complete request");
                    return;
                }
                idle_check.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
            }
        }
    }
}

/// How long a closed connection keeps reading what its client still sends (see [`Lingering`]).
const LINGER: Duration = Duration::from_secs(2);

/// A client connection that, once the server has closed its side, reads and discards what the
/// client still sends before the socket is closed: a "lingering close", as nginx and Apache do.
///
/// A server that answers before reading the whole request body (413, or an early answer from
/// an instance) closes the connection with the rest of the body unread. Closing a socket with
/// unread data makes the kernel send a reset, and a client that is still uploading loses the
/// answer it was sent. Draining until the client's own end of stream (or [`LINGER`]) lets it
/// read that answer. A connection that already saw the client's end of stream closes at once.
struct Lingering {
    stream: Option<TcpStream>,
    /// The server shut its side down (sent FIN).
    shut: bool,
    /// The client ended its side (a read returned end of stream).
    client_ended: bool,
}

impl Lingering {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream: Some(stream),
            shut: false,
            client_ended: false,
        }
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.stream.as_mut().expect("the stream is only taken on drop"))
    }
}

impl AsyncRead for Lingering {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let polled = self.stream().poll_read(cx, buf);
        if room && matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() == before {
            self.client_ended = true;
        }
        polled
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(TcpStream::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = self.stream().poll_shutdown(cx);
        if matches!(polled, Poll::Ready(Ok(()))) {
            self.shut = true;
        }
        polled
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        if !self.shut || self.client_ended {
            return;
        }
        let (Some(mut stream), Ok(runtime)) = (self.stream.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        runtime.spawn(async move {
            let mut discard = [0u8; 8192];
            let drain = async {
                while let Ok(read) = stream.read(&mut discard).await {
                    if read == 0 {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER, drain).await;
        });
    }
}

/// What a connection's requests did: how many started, and how many are still open (their
/// response not yet sent in full).
#[derive(Debug, Default)]
struct Activity {
    started: AtomicU64,
    open: AtomicUsize,
}

impl Activity {
    fn start(self: &Arc<Self>) -> OpenRequest {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenRequest(self.clone())
    }
}

/// Counts a request as open until dropped.
struct OpenRequest(Arc<Activity>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves the ingress on `listener`.
pub async fn serve_ingress(listener: TcpListener, ingress: Arc<Ingress>, grace: Duration, shutdown: CancellationToken) {
    let config = ingress.config();
    let limits = ConnectionLimits {
        max_header_bytes: config.max_header_bytes,
        idle_timeout: config.idle_timeout,
        write_timeout: config.write_timeout,
        shutdown_grace: grace,
        max_connections: config.max_connections,
        max_connections_per_client: config.max_connections_per_client,
    };
    let handler_ingress = ingress.clone();
    serve(listener, limits, shutdown, move |request, peer| {
        let ingress = handler_ingress.clone();
        async move { ingress.handle(request, &peer).await }
    })
    .await;
    ingress.close_tunnels(grace).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, max_connections_per_client: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_header_bytes: 1024,
            idle_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(1),
            max_connections,
            max_connections_per_client,
        }
    }

    #[test]
    fn caps_hold_per_client_and_in_all_and_free_on_drop() {
        let open = Arc::new(OpenConnections::default());
        let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
        let (a, b, c) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"));
        let l = limits(3, 2);
        let a1 = open.admit(a, &l).unwrap();
        let a2 = open.admit(a, &l).unwrap();
        assert_eq!(open.admit(a, &l).err(), Some(Cap::Client(2)));
        let b1 = open.admit(b, &l).unwrap();
        assert_eq!(open.admit(c, &l).err(), Some(Cap::Listener(3)));
        drop(a1);
        let c1 = open.admit(c, &l).unwrap();
        assert_eq!(open.total.load(Ordering::Relaxed), 3);
        drop((a2, b1, c1));
        assert_eq!(open.total.load(Ordering::Relaxed), 0);
        assert!(open.per_client.lock().unwrap().is_empty());
    }
}
