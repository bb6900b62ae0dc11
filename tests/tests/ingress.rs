//! The ingress: host routing, requests passed through intact, streaming bodies, limits.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use rouse_tests::{HELLO, Rouse, SLEEPER};

#[test]
fn unknown_host_gets_404_naming_it() {
    let rouse = Rouse::start();
    let reply = rouse.get("nobody", "/");
    assert_eq!(reply.status, 404);
    let body = reply.text();
    assert_eq!(body.lines().count(), 1, "{body}");
    assert!(body.contains("nobody.localhost"), "{body}");
    let bare = rouse.request_host(Method::GET, "127.0.0.1", "/", &[], Bytes::new());
    assert_eq!(bare.status, 404);
}

/// CPU seconds the process has used (user and system), from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (in parentheses, which may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// A Host header of 60,000 bytes of `a-a-a-...` once cost 0.33 s of CPU before its 404 (a
/// map lookup per `-`). Now it is a 400 after one scan; twenty of them cost next to nothing.
#[test]
fn hostile_hosts_get_400_at_once() {
    let rouse = Rouse::start();
    rouse.deploy("web", HELLO, &[]);
    let hostile = format!("{}.localhost", "a-".repeat(30_000));
    let before = cpu_seconds(rouse.pid());
    for _ in 0..20 {
        let reply = rouse.request_host(Method::GET, &hostile, "/", &[], Bytes::new());
        assert_eq!(reply.status, 400);
        let body = reply.text();
        assert!(body.contains("invalid Host header") && body.len() < 300, "{body}");
    }
    let spent = cpu_seconds(rouse.pid()) - before;
    assert!(spent < 1.0, "20 hostile hosts cost {spent:.2} s of CPU");
    for (host, status) in [
        (format!("{}.localhost", "b".repeat(64)), 400),
        ("we b.localhost".to_string(), 400),
        ("web..localhost".to_string(), 400),
        (format!("{}.localhost", "b".repeat(63)), 404),
    ] {
        let reply = rouse.request_host(Method::GET, &host, "/", &[], Bytes::new());
        assert_eq!(reply.status, status, "{host}: {}", reply.text());
    }
    assert_eq!(rouse.get("web", "/").status, 200);
}

#[test]
fn requests_reach_the_container_intact() {
    let rouse = Rouse::start();
    rouse.deploy("echo", SLEEPER, &[]);
    let reply = rouse.request(
        Method::DELETE,
        "echo",
        "/headers?q=1&r=two%20words",
        &[("x-custom", "kept"), ("x-forwarded-for", "10.1.2.3")],
        Bytes::new(),
    );
    assert_eq!(reply.status, 200);
    let text = reply.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "DELETE /headers?q=1&r=two%20words HTTP/1.1", "{text}");
    let has = |line: &str| lines.iter().any(|l| l.eq_ignore_ascii_case(line));
    assert!(has(&format!("host: echo.localhost:{}", rouse.ingress.port())), "{text}");
    assert!(has("x-custom: kept"), "{text}");
    assert!(has("x-forwarded-for: 10.1.2.3, 127.0.0.1"), "{text}");
    assert!(has("x-forwarded-proto: http"), "{text}");
    assert!(
        has(&format!("x-forwarded-host: echo.localhost:{}", rouse.ingress.port())),
        "{text}"
    );

    let body = Bytes::from((0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let echoed = rouse.request(Method::POST, "echo", "/echo", &[], body.clone());
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.body, body);
}

fn peak_memory_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn large_bodies_stream_both_ways_without_being_buffered() {
    const SIZE: u64 = 200 * 1024 * 1024;
    const CHUNK: usize = 256 * 1024;
    let rouse = Rouse::start();
    rouse.deploy("bulk", SLEEPER, &[]);

    // Upload 200 MiB as a chunked stream; the app counts the bytes and sums them.
    let chunk = Bytes::from((0..CHUNK).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let chunks = SIZE as usize / CHUNK;
    let expected_sum: u64 = chunk.iter().map(|&b| u64::from(b)).sum::<u64>() * chunks as u64;
    let reply = rouse.block_on(async {
        let stream = futures_stream(chunk.clone(), chunks);
        let request = http::Request::post(format!("http://{}/count", rouse.ingress))
            .header("host", format!("bulk.localhost:{}", rouse.ingress.port()))
            .body(StreamBody::new(stream))
            .unwrap();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let response = client.request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    });
    assert_eq!(reply.0, 200, "{}", reply.1);
    assert_eq!(reply.1.trim(), format!("bytes={SIZE} sum={expected_sum}"));

    // Download 200 MiB, reading it as it arrives.
    let received = rouse.block_on(async {
        let request = http::Request::get(format!("http://{}/bytes?n={SIZE}", rouse.ingress))
            .header("host", format!("bulk.localhost:{}", rouse.ingress.port()))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let mut body = client.request(request).await.unwrap().into_body();
        let mut total = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                total += data.len() as u64;
            }
        }
        total
    });
    assert_eq!(received, SIZE);
    let peak = peak_memory_kib(rouse.pid());
    assert!(
        peak < 100 * 1024,
        "the daemon peaked at {peak} KiB moving 400 MiB: bodies must stream"
    );
}

fn futures_stream(
    chunk: Bytes,
    count: usize,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> {
    futures_util::stream::iter((0..count).map(move |_| Ok(Frame::data(chunk.clone()))))
}

#[test]
fn oversized_headers_and_bodies_are_refused_and_idle_clients_cut() {
    let rouse =
        Rouse::start_with_config("[ingress]\nmax-body-bytes = 1000\nmax-header-bytes = 16384\nidle-timeout = \"1s\"\n");
    rouse.deploy("small", HELLO, &[]);
    assert_eq!(rouse.get("small", "/").status, 200);

    let big_body = rouse.request(Method::POST, "small", "/", &[], Bytes::from(vec![b'x'; 5000]));
    assert_eq!(big_body.status, 413);
    assert!(big_body.text().contains("1000 bytes"), "{}", big_body.text());

    // A head over the limit is refused with 431; the server may also reset the connection
    // before the client has read that answer, but the request never reaches the app.
    let huge = "y".repeat(20 * 1024);
    let mut stream = TcpStream::connect(rouse.ingress).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = write!(
        stream,
        "GET / HTTP/1.1\r\nHost: small.localhost\r\nX-Big: {huge}\r\n\r\n"
    );
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer:.80}");

    // A client that connects and says nothing is disconnected after the idle timeout.
    let mut idle = TcpStream::connect(rouse.ingress).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = idle.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "connection closed without an answer");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
    // So is a keep-alive client that stops asking, and one that sends a head ever so slowly.
    for (what, sent) in [
        (
            "a request, then nothing",
            "GET / HTTP/1.1\r\nHost: small.localhost\r\n\r\n",
        ),
        ("half a head", "GET / HTTP/1.1\r\nHost: small.localhost\r\n"),
    ] {
        let mut client = TcpStream::connect(rouse.ingress).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        client.write_all(sent.as_bytes()).unwrap();
        let started = tokio::time::Instant::now();
        let mut answer = Vec::new();
        client
            .read_to_end(&mut answer)
            .unwrap_or_else(|e| panic!("{what}: the connection must be closed, not left open: {e}"));
        let answer = String::from_utf8_lossy(&answer);
        if sent.ends_with("\r\n\r\n") {
            assert!(answer.starts_with("HTTP/1.1 200"), "{what}: {answer:.80}");
        } else {
            assert!(answer.is_empty(), "{what}: {answer:.80}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: closed after {:?}",
            started.elapsed()
        );
    }
    // The admin API applies the same idle timeout.
    let mut idle_api = TcpStream::connect(rouse.api).unwrap();
    idle_api.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(idle_api.read(&mut buf).unwrap_or(0), 0);
}

#[test]
fn keep_alive_connections_to_instances_are_reused() {
    let rouse = Rouse::start();
    rouse.deploy("pool", SLEEPER, &[]);
    let accepted = || -> u64 { rouse.get("pool", "/conns").text().trim().parse().unwrap() };
    let before = accepted();
    for _ in 0..50 {
        assert_eq!(rouse.get("pool", "/").status, 200);
    }
    // Every new upstream connection counts in the app's /conns.
    let conns = accepted() - before;
    assert!(
        conns <= 1,
        "{conns} new upstream connections for 51 sequential requests"
    );
}
