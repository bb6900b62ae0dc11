//! Probe attempts shared by backends (an HTTP GET, a TCP connect, the gRPC health protocol),
//! and probing until an instance passes.
//!
//! The default readiness check sends a real `GET /` and counts any complete HTTP status line,
//! since the question is "is the app serving", not "is this path healthy"; a TCP connect
//! alone proves nothing where Docker's userland proxy accepts connections on a published port
//! before the app listens ([`tcp_once`] looks for the proxy closing them).
//!
//! Probing until ready is on the cold-start path, so it is aggressive: attempts start
//! [`MIN_DELAY`] apart and the gap grows with the time already spent ([`next_delay`]), so that
//! detection adds at most about a tenth of the app's own start time. Attempts overlap (up to
//! [`MAX_IN_FLIGHT`]): one that hangs, say on an app that listens before it accepts, never
//! delays the next, yet an app that answers slowly still gets its attempt timeout to do so.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};

use crate::instance::Answer;

/// Shortest gap between the starts of two attempts.
pub(crate) const MIN_DELAY: Duration = Duration::from_millis(1);

/// Longest gap between the starts of two attempts, reached after [`MAX_DELAY`] × 10 of probing.
pub(crate) const MAX_DELAY: Duration = Duration::from_millis(10);

/// How long one attempt may take by default, like Knative's default probe `timeoutSeconds: 1`.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Attempts allowed to be in flight at once; more would only load an app that is busy starting.
pub(crate) const MAX_IN_FLIGHT: usize = 4;

/// The user agent of probe requests, so apps can tell them apart in their logs.
pub(crate) const USER_AGENT: &str = "rouse-probe";

/// How long a TCP probe behind a port proxy waits for the proxy to close a connection it
/// could not pass on: Docker's closes at once when nothing listens behind it.
const PROXY_CLOSE_WAIT: Duration = Duration::from_millis(50);

/// Gap before the next attempt, given how long probing has gone on: a tenth of `elapsed`,
/// kept within [`MIN_DELAY`]..=[`MAX_DELAY`].
///
/// An app that takes 50 ms to listen is found at most ~5 ms late, one that takes 2 s at most
/// 10 ms late, and a slow app costs at most 100 attempts a second.
pub(crate) fn next_delay(elapsed: Duration) -> Duration {
    (elapsed / 10).clamp(MIN_DELAY, MAX_DELAY)
}

/// Connects to `addr`, noting a failure of the host's own in `local`.
async fn connect(addr: SocketAddr, local: &LocalFailure) -> Result<TcpStream, Answer> {
    match TcpStream::connect(addr).await {
        Ok(stream) => {
            // The instance was reached: whatever happens next is its own doing.
            local.take();
            // Small writes then a read: Nagle could only add delay here.
            stream.set_nodelay(true).ok();
            Ok(stream)
        }
        Err(error) => {
            let answer = if is_local_exhaustion(&error) {
                Answer::Unchecked(format!("this host cannot connect: {error}"))
            } else {
                Answer::Failed(format!("cannot connect: {error}"))
            };
            local.note(error);
            Err(answer)
        }
    }
}

/// One HTTP attempt: connects to `addr`, sends `GET uri` with `headers` and returns the
/// response's status, or why no complete status line came back (refused, closed, malformed).
///
/// `uri` is a path with an optional query, e.g. `/healthz`. Has no timeout of its own.
pub(crate) async fn http_once(
    addr: SocketAddr,
    uri: &Uri,
    headers: &[(String, String)],
    local: &LocalFailure,
) -> Result<StatusCode, Answer> {
    let stream = connect(addr, local).await?;
    let failed = |e: hyper::Error| Answer::Failed(format!("no HTTP answer: {e}"));
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(failed)?;
    let mut request = Request::get(uri.clone())
        .header(header::HOST, "localhost")
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::CONNECTION, "close");
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Empty::new())
        .map_err(|e| Answer::Failed(format!("cannot send the probe request: {e}")))?;
    // The connection is driven right here rather than on a spawned task: it only has to live
    // until the response head arrives, and dropping it then closes the socket.
    let response = sender.send_request(request);
    tokio::pin!(connection, response);
    let response = tokio::select! {
        response = &mut response => response,
        // The connection ended first (e.g. the proxy closed it): still let the response
        // future report whatever was parsed, which is an error in practice.
        _ = &mut connection => response.await,
    };
    response.map(|r| r.status()).map_err(failed)
}

/// One HTTP attempt, judged: see [`http_once`] and [`judge_http`].
pub(crate) async fn http_check(
    addr: SocketAddr,
    uri: &Uri,
    headers: &[(String, String)],
    any_status: bool,
    local: &LocalFailure,
) -> Answer {
    match http_once(addr, uri, headers, local).await {
        Ok(status) => judge_http(status, any_status),
        Err(answer) => answer,
    }
}

/// How an HTTP status counts: 2xx and 3xx pass, anything else does only when `any_status`.
pub(crate) fn judge_http(status: StatusCode, any_status: bool) -> Answer {
    let text = format!("HTTP {status}");
    if any_status || status.is_success() || status.is_redirection() {
        Answer::Passed(text)
    } else {
        Answer::Failed(text)
    }
}

/// One TCP attempt. `behind_proxy`: `addr` is a port published through a userland proxy,
/// which accepts whether or not the app listens, and closes at once when it does not.
pub(crate) async fn tcp_once(addr: SocketAddr, behind_proxy: bool, local: &LocalFailure) -> Answer {
    let mut stream = match connect(addr, local).await {
        Ok(stream) => stream,
        Err(answer) => return answer,
    };
    if behind_proxy {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) = timeout(PROXY_CLOSE_WAIT, stream.read(&mut byte)).await {
            return Answer::Failed(
                "the connection was closed at once: nothing listens behind the published port".into(),
            );
        }
    }
    Answer::Passed("TCP connection accepted".into())
}

/// One `GET /` over HTTP/2 with prior knowledge: any complete answer passes ("is the h2c
/// server serving yet"), as any HTTP/1 answer does for the default check of an HTTP/1 port.
pub(crate) async fn h2c_once(addr: SocketAddr, local: &LocalFailure) -> Answer {
    let stream = match connect(addr, local).await {
        Ok(stream) => stream,
        Err(answer) => return answer,
    };
    let handshake =
        hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(TokioExecutor::new(), TokioIo::new(stream));
    let (mut sender, connection) = match handshake.await {
        Ok(pair) => pair,
        Err(e) => return Answer::Failed(format!("no HTTP/2 answer: {e}")),
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::get(format!("http://{addr}/"))
        .header(header::USER_AGENT, USER_AGENT)
        .body(Empty::new());
    let request = match request {
        Ok(request) => request,
        Err(e) => return Answer::Failed(format!("cannot send the probe request: {e}")),
    };
    match sender.send_request(request).await {
        Ok(response) => Answer::Passed(format!("HTTP {} over h2c", response.status().as_u16())),
        Err(e) => Answer::Failed(format!("no HTTP/2 answer: {e}")),
    }
}

/// The gRPC health protocol's `ServingStatus` values.
const SERVING: u64 = 1;

/// One gRPC health attempt: `grpc.health.v1.Health/Check` for `service` over HTTP/2 without
/// TLS, as Kubernetes' gRPC probe sends it.
///
/// The two messages have one field each (`HealthCheckRequest.service`, a string, and
/// `HealthCheckResponse.status`, an enum), so they are written and read here by hand rather
/// than through tonic and prost, which would bring code generation into the runtime crate
/// for ten bytes on the wire.
pub(crate) async fn grpc_once(addr: SocketAddr, service: &str, local: &LocalFailure) -> Answer {
    let stream = match connect(addr, local).await {
        Ok(stream) => stream,
        Err(answer) => return answer,
    };
    let failed = |what: &str, e: &dyn std::fmt::Display| Answer::Failed(format!("{what}: {e}"));
    let handshake =
        hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(TokioExecutor::new(), TokioIo::new(stream));
    let (mut sender, connection) = match handshake.await {
        Ok(pair) => pair,
        Err(e) => return failed("no HTTP/2 answer", &e),
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut message = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0); // not compressed
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let request = Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .header(header::USER_AGENT, USER_AGENT)
        .body(Full::new(Bytes::from(frame)));
    let request = match request {
        Ok(request) => request,
        Err(e) => return failed("cannot send the health check", &e),
    };
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        Err(e) => return failed("no gRPC answer", &e),
    };
    if response.status() != StatusCode::OK {
        return Answer::Failed(format!("HTTP {} instead of a gRPC answer", response.status()));
    }
    let (head, body) = response.into_parts();
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(e) => return failed("the gRPC answer broke off", &e),
    };
    // `grpc-status` is in the trailers, or in the headers of a trailers-only answer.
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let grpc = |name: &str| {
        trailers
            .get(name)
            .or_else(|| head.headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match grpc("grpc-status").as_deref() {
        Some("0") => {}
        Some("12") => return Answer::Failed("the server does not implement grpc.health.v1.Health".into()),
        Some(code) => {
            let message = grpc("grpc-message").unwrap_or_default();
            return Answer::Failed(format!("gRPC status {code} {message}").trim_end().to_string());
        }
        None => return Answer::Failed("the gRPC answer has no grpc-status".into()),
    }
    let mut body = collected.to_bytes();
    if body.len() < 5 || body[0] != 0 {
        return Answer::Failed("the gRPC answer has no uncompressed message".into());
    }
    body.advance(5);
    match health_status(&body) {
        Some(SERVING) => Answer::Passed("SERVING".into()),
        Some(status) => Answer::Failed(
            match status {
                0 => "UNKNOWN",
                2 => "NOT_SERVING",
                3 => "SERVICE_UNKNOWN",
                _ => "an unknown serving status",
            }
            .into(),
        ),
        None => Answer::Failed("the gRPC answer is not a HealthCheckResponse".into()),
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        n |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(n);
        }
    }
    None
}

/// `HealthCheckResponse.status` (field 1; 0 when absent, as proto3 leaves defaults out),
/// skipping any other field; `None` for bytes that are not a protobuf message.
fn health_status(mut bytes: &[u8]) -> Option<u64> {
    let mut status = 0;
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = varint(&mut bytes)?,
            (_, 0) => {
                varint(&mut bytes)?;
            }
            (_, 1) => bytes = bytes.get(8..)?,
            (_, 2) => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                bytes = bytes.get(len..)?;
            }
            (_, 5) => bytes = bytes.get(4..)?,
            _ => return None,
        }
    }
    Some(status)
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
pub(crate) struct LocalFailure(Mutex<Option<std::io::Error>>);

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

/// The last failed attempt's answer, for the error at the deadline.
#[derive(Debug, Default)]
pub(crate) struct LastAnswer(Mutex<Option<String>>);

impl LastAnswer {
    fn set(&self, text: &str) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(text.to_string());
    }

    pub(crate) fn get(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| "none yet".to_string())
    }
}

/// How [`until_passed`] schedules attempts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    /// Fixed gap between attempt starts; `None` follows [`next_delay`].
    pub(crate) period: Option<Duration>,
    /// Longest one attempt may take.
    pub(crate) attempt_timeout: Duration,
    /// Attempts allowed in flight at once.
    pub(crate) in_flight: usize,
}

/// Makes attempts until one passes, and returns its answer.
///
/// Never gives up by itself: callers race it against a deadline and against the instance
/// exiting. Each failure's answer is kept in `last`.
pub(crate) async fn until_passed<F, Fut>(mut attempt: F, schedule: Schedule, last: &LastAnswer) -> String
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Answer>,
{
    let started = Instant::now();
    let mut next_start = started;
    let mut in_flight = FuturesUnordered::new();
    let limit = schedule.in_flight.max(1);
    let mut attempts: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= next_start && in_flight.len() < limit {
            attempts += 1;
            in_flight.push(timeout(schedule.attempt_timeout, attempt()));
            next_start = now + schedule.period.unwrap_or_else(|| next_delay(now - started));
        }
        // When the in-flight set is full, only a finishing attempt can make room; waking at
        // `next_start` would then spin.
        let room = in_flight.len() < limit;
        tokio::select! {
            Some(outcome) = in_flight.next() => {
                match outcome {
                    Ok(Answer::Passed(text)) => {
                        tracing::debug!(answer = %text, attempts, waited = ?started.elapsed(), "passed");
                        return text;
                    }
                    Ok(answer) => last.set(answer.text()),
                    Err(_) => last.set(&format!("no answer within {:?}", schedule.attempt_timeout)),
                }
            }
            () = sleep_until(next_start), if room => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::AsyncWriteExt;
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
        // Walk the schedule the way `until_passed` does and count attempt starts.
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

    /// HTTP attempts on [`uri`] until one passes, as a backend makes them.
    async fn http_until(addr: SocketAddr, any_status: bool, period: Option<Duration>) -> String {
        let (local, last) = (LocalFailure::default(), LastAnswer::default());
        let schedule = Schedule {
            period,
            attempt_timeout: ATTEMPT_TIMEOUT,
            in_flight: MAX_IN_FLIGHT,
        };
        let uri = uri();
        until_passed(|| http_check(addr, &uri, &[], any_status, &local), schedule, &last).await
    }

    #[tokio::test]
    async fn a_closed_connection_is_not_ready() {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(serve(listener, |_| None));
        assert_eq!(http_once(addr, &uri(), &[], &LocalFailure::default()).await.ok(), None);
        server.abort();
    }

    #[tokio::test]
    async fn a_refused_connection_is_not_ready() {
        let (listener, addr) = listener().await;
        drop(listener);
        assert_eq!(http_once(addr, &uri(), &[], &LocalFailure::default()).await.ok(), None);
    }

    #[tokio::test]
    async fn garbage_is_not_ready() {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(serve(listener, |_| Some(b"SSH-2.0-OpenSSH\r\n")));
        assert_eq!(http_once(addr, &uri(), &[], &LocalFailure::default()).await.ok(), None);
        server.abort();
    }

    #[tokio::test]
    async fn any_status_is_ready() {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(serve(listener, |_| {
            Some(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
        }));
        assert_eq!(
            http_once(addr, &uri(), &[], &LocalFailure::default()).await.ok(),
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
        let status = timeout(Duration::from_secs(5), http_until(addr, true, None))
            .await
            .unwrap();
        assert_eq!(status, "HTTP 200 OK");
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
        let started = Instant::now();
        let status = timeout(
            Duration::from_secs(5),
            http_until(addr, false, Some(Duration::from_millis(20))),
        )
        .await
        .unwrap();
        assert_eq!(status, "HTTP 200 OK");
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
        let status = timeout(Duration::from_secs(5), http_until(addr, true, None))
            .await
            .unwrap();
        assert_eq!(status, "HTTP 204 No Content");
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

    #[tokio::test]
    async fn tcp_passes_when_something_listens_and_fails_when_nothing_does() {
        let (open, addr) = listener().await;
        assert!(tcp_once(addr, false, &LocalFailure::default()).await.passed());
        // Behind a port proxy, a connection closed at once means nothing listens behind it.
        let closing = tokio::spawn(async move {
            loop {
                let (socket, _) = open.accept().await.unwrap();
                drop(socket);
            }
        });
        let answer = tcp_once(addr, true, &LocalFailure::default()).await;
        assert!(!answer.passed(), "{answer:?}");
        closing.abort();
        let (held, addr) = listener().await;
        let holding = tokio::spawn(async move {
            let (_socket, _) = held.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        assert!(tcp_once(addr, true, &LocalFailure::default()).await.passed());
        holding.abort();
        let (gone, addr) = listener().await;
        drop(gone);
        let answer = tcp_once(addr, false, &LocalFailure::default()).await;
        assert!(answer.text().contains("cannot connect"), "{answer:?}");
    }

    #[test]
    fn health_responses_are_read_as_protobuf() {
        assert_eq!(health_status(&[0x08, 0x01]), Some(1));
        assert_eq!(health_status(&[]), Some(0), "proto3 leaves UNKNOWN out");
        // An unknown string field first, then the status.
        assert_eq!(health_status(&[0x12, 0x02, b'h', b'i', 0x08, 0x02]), Some(2));
        assert_eq!(health_status(&[0x12, 0x05, b'h']), None, "truncated");
        assert_eq!(health_status(&[0x0f]), None, "wire type 7 does not exist");
        let mut encoded = Vec::new();
        put_varint(&mut encoded, 300);
        assert_eq!(encoded, [0xac, 0x02]);
        assert_eq!(varint(&mut encoded.as_slice()), Some(300));
    }

    /// A gRPC server answering every health check with `status` (a `ServingStatus`), or
    /// with `grpc-status: 12` when `None`; it asserts what a health check must send.
    async fn grpc_server(status: Option<u8>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        use http_body_util::StreamBody;
        use hyper::body::Frame;
        let (grpc, addr) = listener().await;
        let server = tokio::spawn(async move {
            loop {
                let (socket, _) = grpc.accept().await.unwrap();
                let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| async move {
                    assert_eq!(request.uri().path(), "/grpc.health.v1.Health/Check");
                    assert_eq!(request.headers()[header::CONTENT_TYPE], "application/grpc");
                    assert_eq!(request.headers()[header::TE], "trailers");
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(&body[..], &[0, 0, 0, 0, 5, 0x0a, 3, b'a', b'p', b'p'][..]);
                    let mut trailers = http::HeaderMap::new();
                    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = match status {
                        Some(status) => {
                            trailers.insert("grpc-status", "0".parse().unwrap());
                            vec![
                                Ok(Frame::data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]))),
                                Ok(Frame::trailers(trailers)),
                            ]
                        }
                        None => {
                            trailers.insert("grpc-status", "12".parse().unwrap());
                            vec![Ok(Frame::trailers(trailers))]
                        }
                    };
                    let response = http::Response::builder()
                        .header(header::CONTENT_TYPE, "application/grpc")
                        .body(StreamBody::new(futures_util::stream::iter(frames)))
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(response)
                });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service),
                );
            }
        });
        (addr, server)
    }

    #[tokio::test]
    async fn grpc_health_checks_pass_only_when_serving() {
        for (status, passes, says) in [
            (Some(1), true, "SERVING"),
            (Some(2), false, "NOT_SERVING"),
            (None, false, "does not implement grpc.health.v1.Health"),
        ] {
            let (addr, server) = grpc_server(status).await;
            let answer = grpc_once(addr, "app", &LocalFailure::default()).await;
            assert_eq!(answer.passed(), passes, "{answer:?}");
            assert!(answer.text().contains(says), "{answer:?}");
            server.abort();
        }
        // An HTTP/1 server is no gRPC server.
        let (http1, addr) = listener().await;
        let server = tokio::spawn(async move {
            loop {
                let (mut socket, _) = http1.accept().await.unwrap();
                let _ = socket
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        assert!(!grpc_once(addr, "app", &LocalFailure::default()).await.passed());
        server.abort();
    }
}
