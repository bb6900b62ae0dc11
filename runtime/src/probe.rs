//! The HTTP readiness probe: does something answer HTTP at an instance's endpoint yet?
//!
//! A TCP connect proves nothing with Docker: its userland proxy accepts connections on the
//! published port before the app listens, then closes them. So each attempt sends a real
//! `GET <path>` and only a complete HTTP status line counts; any status code does, since the
//! question is "is the app serving", not "is this path healthy".
//!
//! This is on the cold-start path, so the probe is aggressive: attempts start [`MIN_DELAY`]
//! apart and the gap grows with the time already spent ([`next_delay`]), so that detection
//! adds at most about a tenth of the app's own start time. Attempts overlap (up to
//! [`MAX_IN_FLIGHT`]): one that hangs, say on an app that listens before it accepts, never
//! delays the next, yet an app that answers slowly still gets [`ATTEMPT_TIMEOUT`] to do so.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::{Request, StatusCode, Uri, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};

use crate::instance::Readiness;

/// Shortest gap between the starts of two attempts.
pub(crate) const MIN_DELAY: Duration = Duration::from_millis(1);

/// Longest gap between the starts of two attempts, reached after [`MAX_DELAY`] × 10 of probing.
pub(crate) const MAX_DELAY: Duration = Duration::from_millis(10);

/// How long one attempt may take, like Knative's default probe `timeoutSeconds: 1`.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Attempts allowed to be in flight at once; more would only load an app that is busy starting.
pub(crate) const MAX_IN_FLIGHT: usize = 4;

/// The user agent of probe requests, so apps can tell them apart in their logs.
pub(crate) const USER_AGENT: &str = "rouse-probe";

/// Gap before the next attempt, given how long probing has gone on: a tenth of `elapsed`,
/// kept within [`MIN_DELAY`]..=[`MAX_DELAY`].
///
/// An app that takes 50 ms to listen is found at most ~5 ms late, one that takes 2 s at most
/// 10 ms late, and a slow app costs at most 100 attempts a second.
pub(crate) fn next_delay(elapsed: Duration) -> Duration {
    (elapsed / 10).clamp(MIN_DELAY, MAX_DELAY)
}

/// One attempt: connects to `addr`, sends `GET uri` and returns the response's status, or
/// `None` if no complete status line came back (refused, closed, malformed).
///
/// `uri` is a path with an optional query, e.g. `/healthz`. Has no timeout of its own.
pub(crate) async fn probe_once(addr: SocketAddr, uri: &Uri, local: &LocalFailure) -> Option<StatusCode> {
    let stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(error) => {
            local.note(error);
            return None;
        }
    };
    // The instance was reached: whatever happens next is its own doing.
    local.take();
    // One small write then a read: Nagle could only add delay here.
    stream.set_nodelay(true).ok()?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .ok()?;
    let request = Request::get(uri.clone())
        .header(header::HOST, "localhost")
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::CONNECTION, "close")
        .body(Empty::new())
        .ok()?;
    // The connection is driven right here rather than on a spawned task: it only has to live
    // until the response head arrives, and dropping it then closes the socket.
    let response = sender.send_request(request);
    tokio::pin!(connection, response);
    tokio::select! {
        response = &mut response => response.ok().map(|r| r.status()),
        // The connection ended first (e.g. the proxy closed it): still let the response
        // future report whatever was parsed, which is an error in practice.
        _ = &mut connection => response.await.ok().map(|r| r.status()),
    }
}

/// Whether an error is this host running out of something (file descriptors, ports,
/// memory), which says nothing about the instance.
pub(crate) fn is_local_exhaustion(error: &std::io::Error) -> bool {
    use rustix::io::Errno;
    Errno::from_io_error(error).is_some_and(|e| {
        [
            Errno::MFILE,
            Errno::NFILE,
            Errno::NOBUFS,
            Errno::NOMEM,
            Errno::ADDRNOTAVAIL,
        ]
        .contains(&e)
    })
}

/// The last attempt's failure when it was the host's own (see [`is_local_exhaustion`]),
/// cleared by a failure of any other kind: a probe that timed out only for want of file
/// descriptors must not count against the instance.
#[derive(Debug, Default)]
pub(crate) struct LocalFailure(std::sync::Mutex<Option<std::io::Error>>);

impl LocalFailure {
    fn note(&self, error: std::io::Error) {
        let mut last = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *last = is_local_exhaustion(&error).then_some(error);
    }

    /// The host's error, if the last failed attempt failed for it.
    pub(crate) fn take(&self) -> Option<std::io::Error> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

/// Probes `addr` until an attempt gets a status line, and returns that status.
///
/// Never gives up by itself: callers race it against a deadline and against the instance
/// exiting. Uses the schedule of [`next_delay`]; each attempt is bounded by
/// [`ATTEMPT_TIMEOUT`], at most [`MAX_IN_FLIGHT`] at once.
pub(crate) async fn until_ready(
    addr: SocketAddr,
    uri: &Uri,
    readiness: &Readiness,
    local: &LocalFailure,
) -> StatusCode {
    let started = Instant::now();
    let accepts = |status: StatusCode| !readiness.success_only || status.is_success() || status.is_redirection();
    let mut next_start = started;
    let mut in_flight = FuturesUnordered::new();
    let mut attempts: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= next_start && in_flight.len() < MAX_IN_FLIGHT {
            attempts += 1;
            in_flight.push(timeout(ATTEMPT_TIMEOUT, probe_once(addr, uri, local)));
            next_start = now + readiness.period.unwrap_or_else(|| next_delay(now - started));
        }
        // When the in-flight set is full, only a finishing attempt can make room; waking at
        // `next_start` would then spin.
        let room = in_flight.len() < MAX_IN_FLIGHT;
        tokio::select! {
            Some(outcome) = in_flight.next() => {
                if let Ok(Some(status)) = outcome
                    && accepts(status)
                {
                    tracing::debug!(%addr, %status, attempts, waited = ?started.elapsed(), "ready");
                    return status;
                }
            }
            () = sleep_until(next_start), if room => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delay_starts_at_the_minimum() {
        assert_eq!(next_delay(Duration::ZERO), MIN_DELAY);
        assert_eq!(next_delay(ms(5)), MIN_DELAY);
        assert_eq!(next_delay(ms(10)), MIN_DELAY);
    }

    #[test]
    fn delay_is_a_tenth_of_the_time_spent() {
        assert_eq!(next_delay(ms(20)), ms(2));
        assert_eq!(next_delay(ms(55)), Duration::from_micros(5_500));
        assert_eq!(next_delay(ms(100)), MAX_DELAY);
    }

    #[test]
    fn delay_is_capped() {
        assert_eq!(next_delay(ms(101)), MAX_DELAY);
        assert_eq!(next_delay(Duration::from_secs(3600)), MAX_DELAY);
    }

    #[test]
    fn delay_never_shrinks_and_stays_in_bounds() {
        let mut previous = Duration::ZERO;
        for micros in (0..2_000_000u64).step_by(997) {
            let delay = next_delay(Duration::from_micros(micros));
            assert!(delay >= previous, "delay shrank at {micros} µs");
            assert!((MIN_DELAY..=MAX_DELAY).contains(&delay));
            previous = delay;
        }
    }

    #[test]
    fn attempts_in_the_first_100_ms_are_frequent() {
        // Walk the schedule the way `until_ready` does and count attempt starts.
        let mut elapsed = Duration::ZERO;
        let mut starts = 0;
        while elapsed < ms(100) {
            starts += 1;
            elapsed += next_delay(elapsed);
        }
        assert!((20..=40).contains(&starts), "{starts} attempts in the first 100 ms");
    }

    /// Serves `connections` with `answer`, closing each after writing.
    async fn serve(listener: TcpListener, answer: impl Fn(usize) -> Option<&'static [u8]>) {
        for n in 0.. {
            let (mut socket, _) = listener.accept().await.unwrap();
            match answer(n) {
                None => drop(socket),
                Some(bytes) => {
                    let mut buf = [0u8; 1024];
                    let read = socket.read(&mut buf).await.unwrap();
                    let request = String::from_utf8_lossy(&buf[..read]).to_string();
                    assert!(request.starts_with("GET /ready?x=1 HTTP/1.1\r\n"), "{request}");
                    assert!(request.to_ascii_lowercase().contains("host: localhost\r\n"));
                    socket.write_all(bytes).await.unwrap();
                }
            }
        }
    }

    async fn listener() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    fn uri() -> Uri {
        Uri::from_static("/ready?x=1")
    }

    #[tokio::test]
    async fn a_closed_connection_is_not_ready() {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(serve(listener, |_| None));
        assert_eq!(probe_once(addr, &uri(), &LocalFailure::default()).await, None);
        server.abort();
    }

    #[tokio::test]
    async fn a_refused_connection_is_not_ready() {
        let (listener, addr) = listener().await;
        drop(listener);
        assert_eq!(probe_once(addr, &uri(), &LocalFailure::default()).await, None);
    }

    #[tokio::test]
    async fn garbage_is_not_ready() {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(serve(listener, |_| Some(b"SSH-2.0-OpenSSH\r\n")));
        assert_eq!(probe_once(addr, &uri(), &LocalFailure::default()).await, None);
        server.abort();
    }

    #[tokio::test]
    async fn any_status_is_ready() {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(serve(listener, |_| {
            Some(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
        }));
        assert_eq!(
            probe_once(addr, &uri(), &LocalFailure::default()).await,
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        server.abort();
    }

    #[tokio::test]
    async fn retries_until_the_app_answers() {
        let (listener, addr) = listener().await;
        // Like docker-proxy before the app listens: the first connections are closed at once.
        let server = tokio::spawn(serve(listener, |n| {
            (n >= 5).then_some(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".as_slice())
        }));
        let status = timeout(
            Duration::from_secs(5),
            until_ready(addr, &uri(), &Readiness::default(), &LocalFailure::default()),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK);
        server.abort();
    }

    #[tokio::test]
    async fn a_probe_the_user_asked_for_waits_for_success() {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(serve(listener, |n| {
            Some(if n < 3 {
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".as_slice()
            } else {
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".as_slice()
            })
        }));
        let readiness = Readiness {
            path: "/ready?x=1".to_string(),
            period: Some(Duration::from_millis(20)),
            success_only: true,
        };
        let started = Instant::now();
        let status = timeout(
            Duration::from_secs(5),
            until_ready(addr, &uri(), &readiness, &LocalFailure::default()),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK);
        // Four attempts, a period apart.
        assert!(
            started.elapsed() >= Duration::from_millis(60),
            "{:?}",
            started.elapsed()
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_hung_attempt_does_not_hold_up_the_next() {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(async move {
            // The first connection is accepted and never answered.
            let (hung, _) = listener.accept().await.unwrap();
            serve(listener, |_| Some(b"HTTP/1.1 204 No Content\r\n\r\n")).await;
            drop(hung);
        });
        let started = Instant::now();
        let status = timeout(
            Duration::from_secs(5),
            until_ready(addr, &uri(), &Readiness::default(), &LocalFailure::default()),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(
            started.elapsed() < ATTEMPT_TIMEOUT / 2,
            "waited {:?}",
            started.elapsed()
        );
        server.abort();
    }

    #[test]
    fn only_the_hosts_own_exhaustion_is_local() {
        use std::io::{Error, ErrorKind};
        assert!(is_local_exhaustion(&Error::from_raw_os_error(
            rustix::io::Errno::MFILE.raw_os_error()
        )));
        assert!(is_local_exhaustion(&Error::from_raw_os_error(
            rustix::io::Errno::ADDRNOTAVAIL.raw_os_error()
        )));
        assert!(!is_local_exhaustion(&Error::from(ErrorKind::ConnectionRefused)));
        let local = LocalFailure::default();
        local.note(Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error()));
        local.note(Error::from(ErrorKind::ConnectionRefused));
        assert!(local.take().is_none(), "a later refusal is the instance's");
        local.note(Error::from_raw_os_error(rustix::io::Errno::NFILE.raw_os_error()));
        assert!(local.take().is_some());
    }
}
