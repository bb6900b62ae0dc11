//! `rouse serve`: home, token, address file, one daemon per home, clean shutdown, admin API
//! security, and what client commands say when the daemon is not there.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use rouse_tests::{Rouse, rouse_binary};

#[test]
fn serve_creates_home_token_and_address_file_and_stops_cleanly() {
    let mut rouse = Rouse::start();
    let token = rouse.home().join("token");
    assert_eq!(fs::metadata(&token).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::read_to_string(&token).unwrap().trim().len(), 40);
    assert!(rouse.home().join("state.redb").exists());
    let addresses: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(rouse.home().join("daemon.json")).unwrap()).unwrap();
    assert_eq!(addresses["pid"], rouse.pid());
    assert!(rouse.api.ip().is_loopback() && rouse.ingress.ip().is_loopback());
    // Client commands find the daemon from the home alone.
    let list = rouse.cli(&["list"]);
    assert!(list.status.success(), "{}", list.stderr);

    let status = rouse.terminate();
    assert!(status.success(), "SIGTERM must end the daemon cleanly, got {status}");
    assert!(
        !rouse.home().join("daemon.json").exists(),
        "the address file goes with the daemon"
    );
}

#[test]
fn second_daemon_on_the_same_home_refuses() {
    let rouse = Rouse::start();
    let second = Command::new(rouse_binary())
        .args(["serve", "--ingress", "127.0.0.1:0", "--api", "127.0.0.1:0", "--home"])
        .arg(rouse.home())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another rouse daemon") && stderr.contains(&rouse.pid().to_string()),
        "{stderr}"
    );
    // The first one still serves.
    assert!(rouse.cli(&["list"]).status.success());
}

#[test]
fn admin_api_needs_the_token() {
    let rouse = Rouse::start();
    let api = rouse.api;
    let call = |auth: Option<&str>| {
        let mut args = vec![
            "-s".to_string(),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_code}".into(),
        ];
        if let Some(auth) = auth {
            args.push("-H".into());
            args.push(format!("Authorization: {auth}"));
        }
        args.push(format!("http://{api}/v1/services"));
        String::from_utf8(Command::new("curl").args(&args).output().unwrap().stdout).unwrap()
    };
    assert_eq!(call(None), "401");
    assert_eq!(call(Some("Bearer wrong")), "401");
    let token = fs::read_to_string(rouse.home().join("token")).unwrap();
    assert_eq!(call(Some(&format!("Bearer {}", token.trim()))), "200");

    // A client with the wrong token gets a clear error and a non-zero exit.
    fs::write(rouse.home().join("token"), "not-the-token").unwrap();
    let run = rouse.cli(&["list"]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("refused the token"), "{}", run.stderr);
}

#[test]
fn client_without_a_daemon_says_how_to_start_it() {
    let home = tempfile::tempdir().unwrap();
    let run = Command::new(rouse_binary())
        .args(["list", "--home"])
        .arg(home.path())
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("daemon is not running") && stderr.contains("rouse serve"),
        "{stderr}"
    );

    // A daemon that died without cleaning up: the address file is stale.
    let mut rouse = Rouse::start();
    rouse.kill9();
    let run = rouse.cli(&["list"]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("not running"), "{}", run.stderr);
}

#[test]
fn rouse_home_env_works_like_the_flag() {
    let rouse = Rouse::start();
    let run = Command::new(rouse_binary())
        .args(["list", "-o", "json"])
        .env("ROUSE_HOME", rouse.home())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let list: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(list["kind"], "ServiceList");
}

/// 413 with a JSON error whether the body declares its length (curl then waits for
/// `100 Continue` and never uploads it) or is chunked and sent at once (the daemon answers
/// mid-upload, and must still let the client read that answer).
#[test]
fn admin_api_rejects_oversized_bodies() {
    let rouse = Rouse::start();
    let token = fs::read_to_string(rouse.home().join("token")).unwrap();
    let big = "x".repeat(8 * 1024 * 1024);
    let body_file = rouse.home().join("big.json");
    fs::write(&body_file, format!("{{\"template\":{{\"image\":\"{big}\"}}}}")).unwrap();
    let answer_file = rouse.home().join("answer.json");
    for extra in [[].as_slice(), &["-H", "transfer-encoding: chunked", "-H", "expect:"]] {
        for _ in 0..3 {
            let out = Command::new("curl")
                .args(["-s", "-o"])
                .arg(&answer_file)
                .args([
                    "-w",
                    "%{http_code}",
                    "-X",
                    "PUT",
                    "-H",
                    "content-type: application/json",
                ])
                .args(extra)
                .arg("-H")
                .arg(format!("Authorization: Bearer {}", token.trim()))
                .arg("--data-binary")
                .arg(format!("@{}", body_file.display()))
                .arg(format!("http://{}/v1/services/big", rouse.api))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "413", "curl {extra:?}");
            let answer = fs::read_to_string(&answer_file).unwrap();
            let answer: serde_json::Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
            let error = answer["error"].as_str().unwrap();
            assert!(error.contains("at most 4194304 bytes"), "{error}");
        }
    }
    // A client that writes its whole request before it reads (as Python's http.client does):
    // it gets its answer only if the daemon keeps reading after it answered, instead of
    // closing on unread data (which resets the connection under the client's feet).
    let body = fs::read(&body_file).unwrap();
    for framing in [
        format!("content-length: {}", body.len()),
        "transfer-encoding: chunked".to_string(),
    ] {
        let mut request = format!(
            "PUT /v1/services/big HTTP/1.1\r\nhost: rouse\r\nauthorization: Bearer {}\r\n\
             content-type: application/json\r\n{framing}\r\n\r\n",
            token.trim()
        )
        .into_bytes();
        if framing.starts_with("transfer") {
            request.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            request.extend_from_slice(&body);
            request.extend_from_slice(b"\r\n0\r\n\r\n");
        } else {
            request.extend_from_slice(&body);
        }
        let mut stream = TcpStream::connect(rouse.api).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream
            .write_all(&request)
            .unwrap_or_else(|e| panic!("{framing}: sending the request: {e}"));
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .unwrap_or_else(|e| panic!("{framing}: reading the answer: {e}"));
        assert!(answer.starts_with("HTTP/1.1 413"), "{framing}: {answer}");
    }
}

/// The admin API serves the CLI and other clients alike: its errors name the YAML field,
/// never a `rouse deploy` flag (the CLI renames fields to its flags before it sends).
#[test]
fn admin_api_errors_name_yaml_fields_not_flags() {
    let rouse = Rouse::start();
    let token = fs::read_to_string(rouse.home().join("token")).unwrap();
    for (template, field) in [
        (
            r#"{"image":"img","timeout_seconds":0}"#,
            "spec.template.spec.timeoutSeconds",
        ),
        (
            r#"{"image":"img","env":[{"name":"PORT","value":"1"}]}"#,
            "spec.template.spec.containers[0].env[0].name",
        ),
        (
            r#"{"image":"img","scale":{"min":3,"max":2}}"#,
            "spec.template.metadata.annotations[autoscaling.knative.dev/min-scale]",
        ),
    ] {
        let out = Command::new("curl")
            .args([
                "-s",
                "-w",
                "\n%{http_code}",
                "-X",
                "PUT",
                "-H",
                "content-type: application/json",
            ])
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", token.trim()))
            .arg("--data-binary")
            .arg(format!(r#"{{"template":{template}}}"#))
            .arg(format!("http://{}/v1/services/named", rouse.api))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        let (body, status) = out.rsplit_once('\n').unwrap();
        assert_eq!(status, "400", "{template}: {body}");
        let error: serde_json::Value = serde_json::from_str(body).unwrap();
        let error = error["error"].as_str().unwrap();
        assert!(error.contains(field) && !error.contains("--"), "{template}: {error}");
    }
}

#[test]
fn a_config_value_out_of_range_stops_serve_at_start_naming_file_table_and_key() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("rouse.toml");
    fs::write(&config, "[eventing]\ntrim-interval = \"0s\"\n").unwrap();
    let out = Command::new(rouse_binary())
        .args([
            "serve",
            "--ingress",
            "127.0.0.1:0",
            "--api",
            "127.0.0.1:0",
            "--events",
            "127.0.0.1:0",
        ])
        .arg("--home")
        .arg(home.path())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve must refuse the config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&config.display().to_string())
            && stderr.contains("[eventing] trim-interval = \"0s\": must be between 100ms and 24h"),
        "{stderr}"
    );
}

/// Time for one raw HTTP/1.1 GET to `addr`, with its status line.
fn timed_get(addr: std::net::SocketAddr, host: &str, path: &str) -> (Duration, String) {
    let started = tokio::time::Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // One write, whose failure is not the test's business: a daemon over its connection cap
    // answers 503 and closes before reading, and a second write would then fail.
    let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    let _ = stream.write_all(request.as_bytes());
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer.lines().next().unwrap_or_default().to_string();
    (started.elapsed(), status)
}

/// A thousand stuck sockets on every listener (half of them idle, half mid-way through a
/// request head) do not slow `/healthz` or a normal request; a client over its connection
/// cap gets a 503 that names the cap and its key.
#[test]
fn stuck_sockets_slow_nothing_and_connection_caps_answer_503() {
    let rouse = Rouse::start();
    rouse.deploy("web", rouse_tests::HELLO, &[]);
    let web = format!("web.localhost:{}", rouse.ingress.port());
    let mut stuck = Vec::new();
    for addr in [rouse.ingress, rouse.api, rouse.events] {
        for i in 0..1000 {
            let mut stream = TcpStream::connect(addr).unwrap();
            if i % 2 == 0 {
                stream.write_all(b"GET / HTTP/1.1\r\nhost: web.loc").unwrap();
            }
            stuck.push(stream);
        }
    }
    for _ in 0..5 {
        let (took, status) = timed_get(rouse.api, "rouse", "/healthz");
        assert!(
            status.contains("200") && took < Duration::from_secs(1),
            "/healthz: {status} in {took:?}"
        );
        let (took, status) = timed_get(rouse.ingress, &web, "/");
        assert!(
            status.contains("200") && took < Duration::from_secs(1),
            "web: {status} in {took:?}"
        );
    }
    drop(stuck);

    let capped = Rouse::start_with_config("[ingress]\nmax-connections-per-client = 5\n");
    let held: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(capped.api).unwrap()).collect();
    // The daemon counts a connection once it accepts it: give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    let (_, status) = timed_get(capped.api, "rouse", "/healthz");
    assert!(status.contains("503"), "{status}");
    let mut over = TcpStream::connect(capped.api).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    let _ = over.read_to_string(&mut answer);
    assert!(answer.contains("max-connections-per-client"), "{answer}");
    drop(held);
    rouse_tests::eventually("a free connection slot", Duration::from_secs(5), || {
        timed_get(capped.api, "rouse", "/healthz")
            .1
            .contains("200")
            .then_some(())
    });
}

/// A client that never reads its response, or stops sending its request body midway, frees
/// the instance slot its request held after `[ingress] write-timeout` or `body-idle-timeout`:
/// with room for one request on one instance, the next client is served instead of waiting
/// for the revision's timeout.
#[test]
fn stalled_clients_free_their_instance_slot() {
    let rouse = Rouse::start_with_config("[ingress]\nwrite-timeout = \"1s\"\nbody-idle-timeout = \"1s\"\n");
    rouse.deploy(
        "one",
        rouse_tests::SLEEPER,
        &["--concurrency-limit", "1", "--scale-max", "1", "--timeout", "20"],
    );
    let host = format!("one.localhost:{}", rouse.ingress.port());
    assert!(timed_get(rouse.ingress, &host, "/").1.contains("200"));

    // A 1 GB answer the client never reads: the socket buffers fill, the write stalls.
    let mut reader = TcpStream::connect(rouse.ingress).unwrap();
    write!(reader, "GET /bytes?n=1000000000 HTTP/1.1\r\nhost: {host}\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (took, status) = timed_get(rouse.ingress, &host, "/");
    assert!(
        status.contains("200") && took < Duration::from_secs(5),
        "behind a client that reads nothing: {status} in {took:?}"
    );
    // Its connection was cut: what the buffers held, then the end.
    reader.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = [0u8; 65536];
    let mut total = 0usize;
    loop {
        match reader.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    assert!(total < 100_000_000, "the cut connection still delivered {total} bytes");

    // A body that stops midway: 408 naming the key, and the slot is free again.
    let mut sender = TcpStream::connect(rouse.ingress).unwrap();
    sender.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        sender,
        "POST /count HTTP/1.1\r\nhost: {host}\r\ncontent-length: 1000\r\n\r\nonly ten.."
    )
    .unwrap();
    let started = tokio::time::Instant::now();
    let mut answer = String::new();
    let _ = sender.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body-idle-timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let (took, status) = timed_get(rouse.ingress, &host, "/");
    assert!(
        status.contains("200") && took < Duration::from_secs(5),
        "{status} in {took:?}"
    );
}
