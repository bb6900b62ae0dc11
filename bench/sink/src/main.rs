//! bench/events.py's helper, two commands:
//!
//! `rouse-bench-sink [ADDR]` answers 202 (empty body) to every POST, prints its port on stdout,
//! and serves until killed. It is both sides of the benchmark that are not Rouse: the ceiling
//! (what wrk gets from a trivial HTTP/1.1 server on this machine) and the warm subscriber. For
//! every request with a `ce-time` header it records `arrival - ce-time`, which `GET /stats`
//! lists as `id microseconds` lines and `GET /reset` forgets.
//!
//! `rouse-bench-sink send ADDR PATH RATE SECONDS CONNECTIONS PREFIX DATA` POSTs binary-mode
//! CloudEvents at a fixed RATE (open loop: event n is due at start + n / RATE, spread over
//! CONNECTIONS keep-alive connections) with `time` set just before each request. Prints one
//! `id status microseconds-to-answer` line per event, then `lag MICROS elapsed MICROS` (how late
//! the latest event left, and the sending time).
//!
//! `rouse-bench-sink get ADDR HOST PATH RATE SECONDS CONNECTIONS` sends GETs at a fixed RATE
//! (open loop, as `send`), each connection reconnecting after an error, and prints one
//! `due-ms outcome microseconds` line per request (after a first `start EPOCH-MICROS` line, the
//! wall-clock time of the start): due-ms is when it was due since the start,
//! outcome the status code or `connect`, `io` or `timeout`, and the time is counted from when
//! the request was due, so a stalled server shows as the latency it costs (no coordinated
//! omission). bench/soak.py's serving load.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

type Samples = Arc<Mutex<Vec<(String, i64)>>>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("send") => return send(&args[1..]).await,
        Some("get") => return get(&args[1..]).await,
        _ => {}
    }
    let addr = args.first().cloned().unwrap_or_else(|| "127.0.0.1:0".to_string());
    let listener = TcpListener::bind(&addr).await.expect("bind");
    println!("{}", listener.local_addr().expect("local addr").port());
    let samples: Samples = Arc::default();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let samples = samples.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, samples.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The fixed-rate sender (see the crate's comment).
async fn send(args: &[String]) {
    let [addr, path, rate, seconds, connections, prefix, data] = args else {
        eprintln!("usage: rouse-bench-sink send ADDR PATH RATE SECONDS CONNECTIONS PREFIX DATA");
        std::process::exit(2);
    };
    let rate: f64 = rate.parse().expect("RATE");
    let total = (rate * seconds.parse::<f64>().expect("SECONDS")) as u64;
    let connections: u64 = connections.parse().expect("CONNECTIONS");
    let data = Bytes::from(data.clone());
    let start = Instant::now() + Duration::from_millis(100);
    let mut senders = Vec::new();
    for first in 0..connections {
        let (addr, path, prefix, data) = (addr.clone(), path.clone(), prefix.clone(), data.clone());
        senders.push(tokio::spawn(async move {
            // A broker that is down (bench/soak.py kills it) sends nothing on this connection.
            let Ok(stream) = TcpStream::connect(&addr).await else {
                return (Vec::new(), Duration::ZERO);
            };
            stream.set_nodelay(true).expect("nodelay");
            let Ok((mut client, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
                return (Vec::new(), Duration::ZERO);
            };
            tokio::spawn(connection);
            let mut lines = Vec::new();
            let mut lag = Duration::ZERO;
            for seq in (first..total).step_by(connections as usize) {
                let due = start + Duration::from_secs_f64(seq as f64 / rate);
                let now = Instant::now();
                if due > now {
                    tokio::time::sleep_until(due).await;
                } else {
                    lag = lag.max(now - due);
                }
                let id = format!("{prefix}-{seq}");
                let sent = Instant::now();
                let request = Request::post(&path)
                    .header("host", &addr)
                    .header("content-type", "application/json")
                    .header("ce-specversion", "1.0")
                    .header("ce-id", &id)
                    .header("ce-source", "/bench/sender")
                    .header("ce-type", "dev.rouse.bench")
                    .header("ce-time", rfc3339(SystemTime::now()))
                    .body(Full::new(data.clone()))
                    .expect("request");
                let status = match client.send_request(request).await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.into_body().collect().await;
                        status
                    }
                    Err(_) => 0,
                };
                lines.push(format!("{id} {status} {}\n", sent.elapsed().as_micros()));
                if status == 0 {
                    break;
                }
            }
            (lines, lag)
        }));
    }
    let mut out = String::new();
    let mut lag = Duration::ZERO;
    for sender in senders {
        let (lines, late) = sender.await.expect("sender");
        out.extend(lines);
        lag = lag.max(late);
    }
    println!(
        "{out}lag {} elapsed {}",
        lag.as_micros(),
        (Instant::now() - start).as_micros()
    );
}

/// The fixed-rate GET load (see the crate's comment).
async fn get(args: &[String]) {
    let [addr, host, path, rate, seconds, connections] = args else {
        eprintln!("usage: rouse-bench-sink get ADDR HOST PATH RATE SECONDS CONNECTIONS");
        std::process::exit(2);
    };
    let rate: f64 = rate.parse().expect("RATE");
    let total = (rate * seconds.parse::<f64>().expect("SECONDS")) as u64;
    let connections: u64 = connections.parse().expect("CONNECTIONS");
    let start = Instant::now() + Duration::from_millis(100);
    let start_wall = SystemTime::now() + Duration::from_millis(100);
    let mut workers = Vec::new();
    for first in 0..connections {
        let (addr, host, path) = (addr.clone(), host.clone(), path.clone());
        workers.push(tokio::spawn(async move {
            let mut client = None;
            let mut lines = String::new();
            for seq in (first..total).step_by(connections as usize) {
                let due = start + Duration::from_secs_f64(seq as f64 / rate);
                tokio::time::sleep_until(due).await;
                let outcome = one_get(&mut client, &addr, &host, &path).await;
                let due_ms = (due - start).as_millis();
                let micros = due.elapsed().as_micros();
                lines.push_str(&format!("{due_ms} {outcome} {micros}\n"));
            }
            lines
        }));
    }
    let since_epoch = start_wall.duration_since(UNIX_EPOCH).expect("after 1970");
    let mut out = format!("start {}\n", since_epoch.as_micros());
    for worker in workers {
        out.push_str(&worker.await.expect("worker"));
    }
    print!("{out}");
}

/// One GET on `client`'s connection (connecting first if there is none): the status code, or
/// what failed. A connection that failed is dropped, so the next request reconnects.
async fn one_get(
    client: &mut Option<hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>>,
    addr: &str,
    host: &str,
    path: &str,
) -> String {
    const TIMEOUT: Duration = Duration::from_secs(10);
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        let connected = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await;
        let Ok(Ok(stream)) = connected else {
            *client = None;
            return "connect".to_string();
        };
        let _ = stream.set_nodelay(true);
        let Ok((sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
            return "connect".to_string();
        };
        tokio::spawn(connection);
        *client = Some(sender);
    }
    let sender = client.as_mut().expect("connected above");
    let request = Request::get(path)
        .header("host", host)
        .body(http_body_util::Empty::new())
        .expect("request");
    let exchange = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok::<_, hyper::Error>(status)
    };
    match tokio::time::timeout(TIMEOUT, exchange).await {
        Ok(Ok(status)) => status.to_string(),
        Ok(Err(e)) => {
            // The cause on stderr; the outcome's one word on stdout.
            eprintln!("get: {e:?}");
            *client = None;
            "io".to_string()
        }
        Err(_) => {
            *client = None;
            "timeout".to_string()
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn rfc3339(at: SystemTime) -> String {
    let micros = at.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64;
    let (secs, frac) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

async fn handle(request: Request<Incoming>, samples: Samples) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() == Method::GET {
        let mut samples = samples.lock().unwrap();
        let body = match request.uri().path() {
            "/stats" => samples
                .iter()
                .map(|(id, us)| format!("{id} {us}\n"))
                .collect::<String>(),
            "/reset" => {
                samples.clear();
                String::new()
            }
            _ => String::new(),
        };
        return Ok(Response::new(Full::new(Bytes::from(body))));
    }
    let sent = request
        .headers()
        .get("ce-time")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_rfc3339_micros);
    let id = request
        .headers()
        .get("ce-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Read the whole body, as a real subscriber would.
    let _ = request.into_body().collect().await;
    if let (Some(sent), Some(id)) = (sent, id) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64;
        samples.lock().unwrap().push((id, now - sent));
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::ACCEPTED;
    Ok(response)
}

/// Microseconds since the Unix epoch of `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (UTC only: the
/// benchmark's sender writes exactly that).
fn parse_rfc3339_micros(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &s[19..];
    let rest = rest.strip_suffix('Z')?;
    let micros = match rest.strip_prefix('.') {
        Some(frac) if !frac.is_empty() && frac.bytes().all(|c| c.is_ascii_digit()) => {
            let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
            digits.parse::<i64>().ok()?
        }
        None if rest.is_empty() => 0,
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + micros)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_utc_timestamps() {
        assert_eq!(super::parse_rfc3339_micros("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            super::parse_rfc3339_micros("2026-01-01T00:00:01.5Z"),
            Some(1_767_225_601_500_000)
        );
        assert_eq!(super::parse_rfc3339_micros("2026-01-01T00:00:00+01:00"), None);
        for micros in [0i64, 951_782_400_123_456, 1_767_225_601_500_000, 4_107_542_399_999_999] {
            let at = super::UNIX_EPOCH + std::time::Duration::from_micros(micros as u64);
            assert_eq!(super::parse_rfc3339_micros(&super::rfc3339(at)), Some(micros));
        }
        assert_eq!(super::rfc3339(super::UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }
}
