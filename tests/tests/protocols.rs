//! What passes through the ingress besides plain request/response: h2c, upgrades (the
//! websocket mechanism), streamed responses; and the errors it answers with (503, 504, 502).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use rouse_tests::{HELLO, Rouse, SLEEPER};
use tokio::time::Instant;

#[test]
fn a_server_that_speaks_only_h2c_starts_and_wakes_without_a_probe() {
    // As a gRPC server: no HTTP/1 at all. The default check asks in HTTP/2, at the start and
    // after a thaw.
    let rouse = Rouse::start_with_config(
        "[autoscaler]\nstable-window = \"6s\"\nscale-to-zero-grace-period = \"1s\"\ntick-interval = \"200ms\"\n",
    );
    rouse.deploy("h2only", SLEEPER, &["--port", "h2c:8080", "--env", "H2C_ONLY=1"]);
    let reply = rouse.get("h2only", "/headers");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().starts_with("GET /headers HTTP/2.0"), "{}", reply.text());
    rouse_tests::eventually("h2only frozen at zero", Duration::from_secs(30), || {
        rouse.running("h2only").is_empty().then_some(())
    });
    let woken = rouse.get("h2only", "/");
    assert_eq!(woken.status, 200, "{}", woken.text());
    assert!(!rouse.log().contains("thawed instance is dead"), "{}", rouse.log());
}

#[test]
fn h2c_both_ways() {
    let rouse = Rouse::start();
    rouse.deploy("grpcish", SLEEPER, &["--port", "h2c:8080"]);
    let reply = rouse.get("grpcish", "/headers?x=1");
    assert_eq!(reply.status, 200);
    let first = reply.text().lines().next().unwrap_or_default().to_string();
    assert_eq!(
        first, "GET /headers?x=1 HTTP/2.0",
        "the instance was spoken to in HTTP/2"
    );
    assert_eq!(
        rouse.describe("grpcish")["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"],
        "h2c"
    );

    // Clients may speak h2c to the ingress too.
    rouse.deploy("plain", HELLO, &[]);
    let out = Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "-H"])
        .arg(format!("Host: plain.localhost:{}", rouse.ingress.port()))
        .arg(format!("http://{}/", rouse.ingress))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello World from plain-00001!\n");
}

#[test]
fn upgraded_connections_pass_through_and_outlive_the_request_timeout() {
    let rouse = Rouse::start();
    rouse.deploy("up", SLEEPER, &["--timeout", "1"]);
    let mut stream = TcpStream::connect(rouse.ingress).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "GET /upgrade HTTP/1.1\r\nHost: up.localhost:{}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        rouse.ingress.port()
    )
    .unwrap();
    let head = response_head(&mut stream);
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    let mut echo = |message: &[u8]| {
        stream.write_all(message).unwrap();
        let mut got = vec![0u8; message.len()];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(got, message);
    };
    echo(b"ping");
    // Longer than the revision's 1 s request timeout: the tunnel stays open.
    std::thread::sleep(Duration::from_millis(1500));
    echo(b"still here");
}

#[test]
fn streamed_responses_arrive_as_they_are_written() {
    let rouse = Rouse::start();
    rouse.deploy("ticker", SLEEPER, &[]);
    let (first_after, total_after, lines) = rouse.block_on(async {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let request = http::Request::get(format!("http://{}/stream?n=5&ms=400", rouse.ingress))
            .header("host", format!("ticker.localhost:{}", rouse.ingress.port()))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let started = Instant::now();
        let mut body = client.request(request).await.unwrap().into_body();
        let mut first = None;
        let mut text = String::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                first.get_or_insert(started.elapsed());
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
        (first.unwrap(), started.elapsed(), text)
    });
    assert_eq!(lines.lines().count(), 5, "{lines}");
    assert!(total_after >= Duration::from_millis(1600), "{total_after:?}");
    assert!(
        first_after < Duration::from_millis(800),
        "the first line came after {first_after:?}: the response was buffered"
    );
}

#[test]
fn request_timeout_gives_504() {
    let rouse = Rouse::start();
    rouse.deploy("slowpoke", SLEEPER, &["--timeout", "1"]);
    let reply = rouse.get("slowpoke", "/?ms=3000");
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(
        reply.text().contains("slowpoke-00001") && reply.text().contains("1s"),
        "{}",
        reply.text()
    );
    assert_eq!(rouse.get("slowpoke", "/?ms=10").status, 200);
}

#[test]
fn full_queue_gives_503_and_queued_requests_are_served() {
    let rouse = Rouse::start_with_config("[ingress]\nmax-waiting = 1\n");
    rouse.deploy("narrow", SLEEPER, &["--concurrency-limit", "1", "--scale-max", "1"]);
    let statuses = std::thread::scope(|scope| {
        let first = scope.spawn(|| rouse.get("narrow", "/?ms=1500").status);
        // The first holds the only slot; the second waits in the queue; the third finds it full.
        std::thread::sleep(Duration::from_millis(300));
        let second = scope.spawn(|| rouse.get("narrow", "/?ms=10").status);
        std::thread::sleep(Duration::from_millis(200));
        let third = rouse.get("narrow", "/?ms=10");
        assert!(third.text().contains("queue is full"), "{}", third.text());
        vec![first.join().unwrap(), second.join().unwrap(), third.status]
    });
    assert_eq!(statuses, [200, 200, 503]);
}

#[test]
fn instance_dying_mid_request_gives_502() {
    let rouse = Rouse::start();
    rouse.deploy("fragile", SLEEPER, &[]);
    let reply = std::thread::scope(|scope| {
        let victim = scope.spawn(|| rouse.get("fragile", "/?ms=5000"));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(rouse.get("fragile", "/exit?code=1").status, 200);
        victim.join().unwrap()
    });
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        reply.text().contains("fragile-00001") && reply.text().contains("failed"),
        "{}",
        reply.text()
    );
}

/// Reads a response head byte by byte (the bytes after it belong to the upgraded protocol),
/// lowercased.
fn response_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "connection closed during the handshake"
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_lowercase()
}

/// Writes a masked client frame (RFC 6455: clients mask every frame).
fn send_frame(stream: &mut TcpStream, opcode: u8, payload: &[u8]) {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    assert!(payload.len() < 126, "short frames only");
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).unwrap();
}

/// Reads one short unmasked server frame: (opcode, payload).
fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(head[1] & 0x80, 0, "servers do not mask");
    let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
    stream.read_exact(&mut payload).unwrap();
    (head[0] & 0x0f, payload)
}

#[test]
fn websockets_pass_through_and_stay_open() {
    let rouse = Rouse::start();
    rouse.deploy("ws", SLEEPER, &["--timeout", "1"]);
    let mut stream = TcpStream::connect(rouse.ingress).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "GET /upgrade HTTP/1.1\r\nHost: ws.localhost:{}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        rouse.ingress.port()
    )
    .unwrap();
    let head = response_head(&mut stream);
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    send_frame(&mut stream, 0x1, b"hello rouse");
    assert_eq!(read_frame(&mut stream), (0x1, b"hello rouse".to_vec()));
    // Past the revision's 1 s request timeout, the socket still carries frames.
    std::thread::sleep(Duration::from_millis(1500));
    send_frame(&mut stream, 0x9, b"ping");
    assert_eq!(
        read_frame(&mut stream),
        (0xA, b"ping".to_vec()),
        "ping answered with pong"
    );
    send_frame(&mut stream, 0x8, b"");
    assert_eq!(read_frame(&mut stream).0, 0x8, "close answered");
}
