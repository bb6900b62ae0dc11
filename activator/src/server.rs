//! Serving HTTP on a listener with limits: header size, idle clients, graceful shutdown.
//!
//! Used by the ingress and by the admin API, so both get the same protections.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::proxy::{BoxError, Ingress};

/// Limits applied to every connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Largest request head, in bytes.
    pub max_header_bytes: usize,
    /// How long a client may wait before sending a request head (first one or next one).
    pub idle_timeout: Duration,
    /// How long open requests get to finish once shutdown starts.
    pub shutdown_grace: Duration,
}

/// Serves HTTP/1.1 and h2c on `listener` until `shutdown` is cancelled, then lets open
/// requests finish for up to `limits.shutdown_grace`.
pub async fn serve<H, F, B>(listener: TcpListener, limits: ConnectionLimits, shutdown: CancellationToken, handler: H)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.idle_timeout));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
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
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let idle_timeout = limits.idle_timeout;
        connections.spawn(async move {
            if !first_byte_within(&stream, idle_timeout).await {
                return;
            }
            let service = service_fn(move |request| {
                let response = handler(request, remote);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open connections did not finish within the shutdown grace period");
    }
    connections.shutdown().await;
}

/// hyper's header timeout does not cover protocol detection, so a client that connects and
/// sends nothing would hold the connection forever: wait for its first byte here.
async fn first_byte_within(stream: &TcpStream, timeout: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(timeout, stream.peek(&mut byte)).await, Ok(Ok(n)) if n > 0)
}

/// Serves the ingress on `listener`.
pub async fn serve_ingress(listener: TcpListener, ingress: Arc<Ingress>, grace: Duration, shutdown: CancellationToken) {
    let config = ingress.config();
    let limits = ConnectionLimits {
        max_header_bytes: config.max_header_bytes,
        idle_timeout: config.idle_timeout,
        shutdown_grace: grace,
    };
    let handler_ingress = ingress.clone();
    serve(listener, limits, shutdown, move |request, remote| {
        let ingress = handler_ingress.clone();
        async move { ingress.handle(request, remote).await }
    })
    .await;
    ingress.close_tunnels(grace).await;
}
