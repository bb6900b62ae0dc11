//! Probes against real containers: a liveness probe restarts a hung instance, a readiness
//! probe takes one of two instances out of rotation and back with no failed request, and the
//! tcpSocket, exec and grpc handlers see the app as it is.
//!
//! The sleeper sample is told how to be sick through its own address (the container's, as
//! `rouse describe` shows it): `POST /health?hang=1` makes `/healthz` hang, `?status=N`
//! makes it (and its gRPC health service) answer N.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rouse_tests::{Rouse, SLEEPER, eventually};

/// Crashes restart at once, so replacements come quickly.
const CONFIG: &str = "[instances]\ncrash-backoff = \"200ms\"\nready-timeout = \"5s\"\n";

/// `rouse describe`'s instance lines of `service`: (name, state, endpoint).
fn instances(rouse: &Rouse, service: &str) -> Vec<(String, String, String)> {
    rouse
        .cli_ok(&["describe", service])
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let name = parts.next()?;
            if !name.starts_with(&format!("{service}-")) || name.matches('-').count() < 2 {
                return None;
            }
            Some((name.to_string(), parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// Sends `method path` straight to an instance at `endpoint`, past Rouse; the status line.
fn direct(endpoint: &str, method: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(endpoint).unwrap_or_else(|e| panic!("connect {endpoint}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.lines().next().unwrap_or_default().to_string()
}

/// The container id (its `HOSTNAME`) of the instance that answered a request.
fn answered_by(rouse: &Rouse, service: &str) -> String {
    let reply = rouse.get(service, "/env");
    assert_eq!(reply.status, 200, "every request is answered: {}", reply.text());
    reply
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("HOSTNAME="))
        .expect("HOSTNAME in /env")
        .to_string()
}

#[test]
fn a_liveness_probe_restarts_a_hung_instance() {
    let rouse = Rouse::start_with_config(CONFIG);
    rouse.deploy(
        "hangs",
        SLEEPER,
        &[
            "--probe-liveness",
            "http:::/healthz",
            "--probe-liveness-opts",
            "PeriodSeconds=1,FailureThreshold=2,TimeoutSeconds=1",
            "--scale-min",
            "1",
        ],
    );
    let human = rouse.cli_ok(&["describe", "hangs"]);
    assert!(
        human.contains("Liveness:     http-get /healthz delay=0s timeout=1s period=1s #success=1 #failure=2"),
        "{human}"
    );
    let first = rouse.running("hangs")[0].id.clone();
    let [(_, state, endpoint)] = <[_; 1]>::try_from(instances(&rouse, "hangs")).expect("one instance");
    assert_eq!(state, "ready");
    assert!(direct(&endpoint, "POST", "/health?hang=1").contains("200"));
    let replacement = eventually("a replacement for the hung instance", Duration::from_secs(30), || {
        let running = rouse.running("hangs");
        running.iter().find(|c| c.id != first).map(|c| c.id.clone())
    });
    assert!(
        !rouse.containers().iter().any(|c| c.id == first),
        "the hung one is gone"
    );
    assert!(replacement.starts_with(&answered_by(&rouse, "hangs")));
    let human = rouse.cli_ok(&["describe", "hangs"]);
    assert!(human.contains("Last crash: LivenessProbeFailed"), "{human}");
    assert!(
        human.contains("liveness probe (GET /healthz) failed 2 times in a row; last answer: no answer within 1s"),
        "{human}"
    );
}

#[test]
fn a_readiness_probe_takes_one_of_two_instances_out_of_rotation_with_no_failed_request() {
    let rouse = Rouse::start_with_config(CONFIG);
    rouse.deploy(
        "pair",
        SLEEPER,
        &[
            "--probe-readiness",
            "http:::/healthz",
            "--probe-readiness-opts",
            "PeriodSeconds=1,FailureThreshold=1",
            "--scale-min",
            "2",
        ],
    );
    eventually("two ready instances", Duration::from_secs(30), || {
        let all = instances(&rouse, "pair");
        (all.len() == 2 && all.iter().all(|(_, state, _)| state == "ready")).then_some(())
    });
    let all = instances(&rouse, "pair");
    let (sick_name, _, sick_endpoint) = all[0].clone();
    let sick_id = rouse
        .running("pair")
        .into_iter()
        .find(|c| c.name == format!("rouse-{sick_name}"))
        .expect("the sick instance's container")
        .id;
    assert!(direct(&sick_endpoint, "POST", "/health?status=503").contains("200"));
    // Requests all along: none fails while the instance leaves rotation.
    eventually("the sick instance out of rotation", Duration::from_secs(20), || {
        answered_by(&rouse, "pair");
        instances(&rouse, "pair")
            .iter()
            .any(|(name, state, _)| *name == sick_name && state == "not-ready")
            .then_some(())
    });
    for _ in 0..30 {
        let by = answered_by(&rouse, "pair");
        assert!(
            !sick_id.starts_with(&by),
            "a request went to the instance out of rotation"
        );
    }
    assert!(
        rouse.running("pair").iter().any(|c| c.id == sick_id),
        "not ready is not dead: it keeps running"
    );
    assert!(direct(&sick_endpoint, "POST", "/health?status=0").contains("200"));
    eventually("the instance back in rotation", Duration::from_secs(20), || {
        answered_by(&rouse, "pair");
        instances(&rouse, "pair")
            .iter()
            .all(|(_, state, _)| state == "ready")
            .then_some(())
    });
    eventually("requests reach it again", Duration::from_secs(20), || {
        sick_id.starts_with(&answered_by(&rouse, "pair")).then_some(())
    });
}

#[test]
fn tcp_probes_hold_readiness_until_the_port_listens() {
    let rouse = Rouse::start_with_config(CONFIG);
    rouse.deploy(
        "tcp",
        SLEEPER,
        &["--probe-readiness", "tcp::", "--env", "STARTUP_DELAY_MS=300"],
    );
    assert_eq!(rouse.get("tcp", "/").status, 200);
    // Listening on another port, it never passes, and the deploy says so.
    let run = rouse.cli(&[
        "deploy",
        "deaf",
        "--image",
        SLEEPER,
        "--probe-readiness",
        "tcp::8080",
        "--env",
        "LISTEN_PORT=9999",
    ]);
    assert!(!run.status.success(), "{}", run.stdout);
    assert!(
        run.stderr.contains("did not pass its check (TCP connect) on port 8080"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_exec_liveness_probe_runs_inside_the_instance() {
    let rouse = Rouse::start_with_config(CONFIG);
    rouse.deploy(
        "execs",
        SLEEPER,
        &[
            "--probe-liveness",
            "exec:/sleeper,probe,/healthz",
            "--probe-liveness-opts",
            "PeriodSeconds=1,FailureThreshold=1",
        ],
    );
    let first = rouse.running("execs")[0].id.clone();
    let [(_, _, endpoint)] = <[_; 1]>::try_from(instances(&rouse, "execs")).expect("one instance");
    // Healthy, it stays.
    std::thread::sleep(Duration::from_secs(3));
    assert!(rouse.running("execs").iter().any(|c| c.id == first));
    assert!(direct(&endpoint, "POST", "/health?status=500").contains("200"));
    eventually("the failing instance replaced", Duration::from_secs(30), || {
        (!rouse.containers().iter().any(|c| c.id == first)).then_some(())
    });
    let human = rouse.cli_ok(&["describe", "execs"]);
    assert!(
        human.contains("liveness probe (exec /sleeper probe /healthz) failed 1 times in a row; last answer: exit code 1: unhealthy:"),
        "{human}"
    );
    assert!(human.contains("500"), "the check's own output is shown: {human}");
}

/// A Knative service with gRPC liveness and startup probes, as Kubernetes spells them.
const GRPC: &str = r#"
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: grpc
spec:
  template:
    spec:
      containers:
        - image: rouse-samples/sleeper:latest
          startupProbe:
            grpc:
              port: 8080
            periodSeconds: 1
          livenessProbe:
            grpc:
              port: 8080
            periodSeconds: 1
            failureThreshold: 1
          readinessProbe:
            tcpSocket: {}
"#;

#[test]
fn grpc_probes_speak_the_grpc_health_protocol_and_round_trip() {
    let rouse = Rouse::start_with_config(CONFIG);
    assert!(rouse.apply(GRPC).contains("Service grpc created"));
    assert_eq!(rouse.get("grpc", "/").status, 200);
    let yaml = rouse.cli_ok(&["describe", "grpc", "-o", "yaml"]);
    assert!(rouse.apply(&yaml).contains("Service grpc unchanged"), "{yaml}");
    let first = rouse.running("grpc")[0].id.clone();
    let [(_, _, endpoint)] = <[_; 1]>::try_from(instances(&rouse, "grpc")).expect("one instance");
    assert!(direct(&endpoint, "POST", "/health?status=503").contains("200"));
    eventually("the NOT_SERVING instance replaced", Duration::from_secs(30), || {
        (!rouse.containers().iter().any(|c| c.id == first)).then_some(())
    });
    let human = rouse.cli_ok(&["describe", "grpc"]);
    assert!(human.contains("last answer: NOT_SERVING"), "{human}");
    assert!(human.contains("Startup:      grpc delay=0s"), "{human}");
}
