//! HTTP/1.1 connections to one instance, driven by the task of the request that uses them.
//!
//! A pooled client that runs each connection in a task of its own hands every request to that
//! task over a channel and gets the response back over another, so one proxied request wakes
//! two more tasks, often on the other core. Here a request takes an idle connection out of its
//! instance's [`Pool`] (or dials one), polls the connection itself while it waits for the
//! response head and while the response body streams to the client, and puts it back once the
//! body has ended. All the work one client connection causes then stays in that connection's
//! task. h2c and upgrades, which need a connection to outlive any one request, do not come here.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What the proxy sends upstream: the client's body, under the ingress's size limit.
pub(crate) type UpstreamBody = http_body_util::Limited<crate::stall::IdleBody<Incoming>>;

/// Idle connections kept per instance; more than this many idle at once are closed.
const MAX_IDLE: usize = 1024;
/// An idle connection unused for this long is closed rather than reused (the instance may have
/// given up on it already).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a request could not be sent to the instance.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// Idle keep-alive connections to one instance, most recently used last.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<VecDeque<Connection>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("idle", &self.idle_count()).finish()
    }
}

impl Pool {
    /// Sends `request` to `addr` and drives the connection until the response head arrives.
    /// The response body drives the connection from then on, and gives it back to the pool
    /// once it has ended.
    ///
    /// `request` must be in origin form and carry a `Host` header.
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        loop {
            let (mut connection, reused) = match self.checkout().await {
                Some(connection) => (connection, true),
                None => (Connection::dial(addr).await?, false),
            };
            match connection.send(request).await {
                Ok(response) => {
                    return Ok(response.map(|body| PooledBody {
                        inner: body,
                        connection: Some(connection),
                        pool: self.clone(),
                        ended: false,
                    }));
                }
                Err(mut e) => match e.take_message() {
                    // The instance closed a reused connection before the request went out: the
                    // request was not seen, so it goes again (on a new connection if need be).
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// Keeps a connection whose response has ended for the next request to reuse.
    fn put(&self, mut connection: Connection) {
        if connection.driver.is_none() {
            return;
        }
        let now = Instant::now();
        connection.idle_since = now;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        drop_expired(&mut idle, now);
        if idle.len() < MAX_IDLE {
            idle.push_back(connection);
        }
    }

    /// Closes the connections that have been idle too long. Reuse does this too, but a pool
    /// nobody uses any more needs someone to call this now and then.
    pub fn close_expired(&self) {
        drop_expired(&mut self.idle.lock().unwrap_or_else(|e| e.into_inner()), Instant::now());
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The most recently used idle connection that is ready for a request now; those that
    /// closed, expired or are still busy with an earlier exchange are dropped on the way.
    async fn checkout(&self) -> Option<Connection> {
        let now = Instant::now();
        loop {
            let mut connection = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop_back()?;
            if connection.expired(now) {
                continue;
            }
            if poll_fn(|cx| Poll::Ready(connection.poll_ready_now(cx))).await {
                return Some(connection);
            }
        }
    }
}

/// Closes the idle connections that expired by `now`: the oldest, at the front.
fn drop_expired(idle: &mut VecDeque<Connection>, now: Instant) {
    while idle.front().is_some_and(|oldest| oldest.expired(now)) {
        idle.pop_front();
    }
}

/// The state machine of one connection: it reads and writes the socket when polled.
type Driver = http1::Connection<TokioIo<TcpStream>, UpstreamBody>;

/// One HTTP/1.1 connection to an instance: the handle requests go through and the state
/// machine that does the I/O, which whoever uses the connection must poll.
struct Connection {
    sender: http1::SendRequest<UpstreamBody>,
    /// `None` once the connection has ended; it is then never reused. Boxed: it is large,
    /// and the futures of every request that uses the connection would carry it.
    driver: Option<Pin<Box<Driver>>>,
    idle_since: Instant,
}

impl Connection {
    async fn dial(addr: SocketAddr) -> Result<Self, UpstreamError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| UpstreamError::Connect { addr, source })?;
        let _ = stream.set_nodelay(true);
        let (sender, driver) = http1::handshake(TokioIo::new(stream)).await?;
        Ok(Self {
            sender,
            driver: Some(Box::pin(driver)),
            idle_since: Instant::now(),
        })
    }

    /// Whether it has sat idle too long to be trusted with a request.
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.idle_since) > IDLE_TIMEOUT
    }

    /// Does whatever I/O the connection can do now: writing the request, reading the response.
    /// Registers `cx` to be woken when it can do more.
    fn poll_drive(&mut self, cx: &mut Context<'_>) {
        if let Some(driver) = &mut self.driver
            && let Poll::Ready(result) = driver.as_mut().poll(cx)
        {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection to an instance ended with an error");
            }
            self.driver = None;
        }
    }

    /// Whether a new request can go out on this connection right away.
    fn poll_ready_now(&mut self, cx: &mut Context<'_>) -> bool {
        self.poll_drive(cx);
        self.driver.is_some() && matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(())))
    }

    async fn send(
        &mut self,
        request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<UpstreamBody>>> {
        let mut response = pin!(self.sender.try_send_request(request));
        poll_fn(|cx| {
            self.poll_drive(cx);
            response.as_mut().poll(cx)
        })
        .await
    }
}

/// A response body from a pooled connection. Polling it drives the connection; dropping it
/// after its end puts the connection back in the pool, and dropping it before closes the
/// connection (HTTP/1.1 cannot abandon one response and go on with the next).
pub struct PooledBody {
    inner: Incoming,
    connection: Option<Connection>,
    pool: Arc<Pool>,
    ended: bool,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(connection) = &mut this.connection {
            connection.poll_drive(cx);
        }
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.ended = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take()
            && (self.ended || self.inner.is_end_stream())
        {
            self.pool.put(connection);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Limited};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that answers `ok` to every request (or only the first of each connection), and
    /// reports each connection it accepts.
    async fn server(close_after_first: bool) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, accepts) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = accepted.send(());
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let Ok(n) = stream.read(&mut buffer).await else { return };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buffer[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                            if close_after_first {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepts)
    }

    /// A request whose body comes from a real client connection, as the proxy's do.
    async fn exchange(pool: &Arc<Pool>, addr: SocketAddr) -> String {
        let (request_tx, mut request_rx) = tokio::sync::mpsc::unbounded_channel();
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let (stream, _) = front.accept().await.unwrap();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let request_tx = request_tx.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let _ = request_tx.send(Request::from_parts(
                        parts,
                        Limited::new(
                            crate::stall::IdleBody::new(body, std::time::Duration::from_secs(5)),
                            1 << 20,
                        ),
                    ));
                    Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        let mut client = TcpStream::connect(front_addr).await.unwrap();
        client
            .write_all(b"GET /x HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        let request = request_rx.recv().await.unwrap();
        let response = pool.send(addr, request).await.unwrap();
        let text = response.into_body().collect().await.unwrap().to_bytes();
        drop(client);
        accept.abort();
        String::from_utf8(text.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn connections_are_reused_after_the_response_ends() {
        let (addr, mut accepts) = server(false).await;
        let pool = Arc::new(Pool::default());
        for _ in 0..3 {
            assert_eq!(exchange(&pool, addr).await, "ok");
        }
        assert_eq!(pool.idle_count(), 1);
        accepts.recv().await.unwrap();
        assert!(accepts.try_recv().is_err(), "one connection served all three requests");
    }

    #[tokio::test]
    async fn a_connection_the_instance_closed_is_not_reused() {
        let (addr, mut accepts) = server(true).await;
        let pool = Arc::new(Pool::default());
        assert_eq!(exchange(&pool, addr).await, "ok");
        // Give the close time to arrive, as it would between two requests.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(exchange(&pool, addr).await, "ok");
        accepts.recv().await.unwrap();
        accepts.recv().await.unwrap();
    }

    #[tokio::test]
    async fn idle_connections_expire() {
        let (addr, _accepts) = server(false).await;
        let pool = Arc::new(Pool::default());
        assert_eq!(exchange(&pool, addr).await, "ok");
        assert_eq!(pool.idle_count(), 1);
        tokio::time::pause();
        tokio::time::advance(IDLE_TIMEOUT + Duration::from_secs(1)).await;
        pool.close_expired();
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn a_refused_connection_says_where_it_dialled() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let Err(UpstreamError::Connect { addr: dialled, .. }) = Connection::dial(addr).await else {
            panic!("dialling a closed port must fail with Connect");
        };
        assert_eq!(dialled, addr);
    }
}
