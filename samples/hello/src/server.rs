//! Serve a hyper service on a listener until a shutdown signal, then drain.

use std::{error::Error, future::Future, io, pin::pin, time::Duration};

use hyper::{Request, Response, body::Body, body::Incoming, service::Service};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    task::JoinSet,
};

/// How long in-flight requests get to finish once shutdown starts. Rouse sends SIGKILL only after
/// its own grace period, so a sample that drains within this bound exits on its own, with status 0.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed `accept` (out of file descriptors, say), so the loop does not spin on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections accepted since start; the sleeper reports it at `/conns`, so tests can see
/// whether a proxy reuses its connections.
pub static ACCEPTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How the drain after the shutdown signal ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Every connection finished its in-flight requests and closed.
    Complete,
    /// [`DRAIN_TIMEOUT`] passed; this many connections were cut off.
    TimedOut { connections: usize },
}

/// The port named by the environment variable `var`, 8080 when it is unset (the Knative default).
pub fn port_from_env(var: &str) -> io::Result<u16> {
    match std::env::var(var) {
        Err(std::env::VarError::NotPresent) => Ok(8080),
        Ok(value) => value.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{var}={value:?} is not a port number: set it to 0-65535 or unset it"),
            )
        }),
        Err(err) => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{var}: {err}"))),
    }
}

/// Registers SIGTERM and SIGINT handlers now, and returns a future that resolves with the name of
/// the first of them to arrive.
///
/// Registering before the future is polled matters: a sample runs as PID 1 in its container, and
/// PID 1 ignores SIGTERM while it has no handler, so a signal sent during startup would otherwise
/// be lost and the container would only die by SIGKILL.
pub fn shutdown_signal() -> io::Result<impl Future<Output = &'static str>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        }
    })
}

/// Serves `service` on every connection `listener` accepts, HTTP/1.1 (keep-alive) and HTTP/2 with
/// prior knowledge alike (only the latter when `H2C_ONLY=1`, as a gRPC server), until `shutdown`
/// resolves. Then it stops accepting, lets each connection
/// finish the requests it has in flight (HTTP/2 clients get a GOAWAY), and returns when all have
/// closed or [`DRAIN_TIMEOUT`] has passed, whichever comes first.
pub async fn serve<S, B>(listener: TcpListener, service: S, shutdown: impl Future) -> Drain
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    // The auto builder's `http2_only` does nothing for connections with upgrades: HTTP/2 alone
    // takes hyper's own HTTP/2 server.
    let h2c_only = std::env::var("H2C_ONLY").is_ok_and(|v| v == "1");
    let h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    ACCEPTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // Small answers should leave at once rather than wait for Nagle's algorithm.
                    let _ = stream.set_nodelay(true);
                    if h2c_only {
                        let connection = h2.serve_connection(TokioIo::new(stream), service.clone());
                        let watched = graceful.watch(connection);
                        connections.spawn(async move {
                            let _ = watched.await;
                        });
                    } else {
                        let connection = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service.clone())
                            .into_owned();
                        let watched = graceful.watch(connection);
                        connections.spawn(async move {
                            let _ = watched.await;
                        });
                    }
                }
                Err(err) => {
                    eprintln!("accept failed: {err}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap closed connections as they go, so the set holds only live ones. A connection's
            // own error (a client that hung up mid-request) concerns nobody else.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let drain = async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
    };
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_ok();
    if drained {
        Drain::Complete
    } else {
        let cut_off = connections.len();
        connections.shutdown().await;
        Drain::TimedOut { connections: cut_off }
    }
}
