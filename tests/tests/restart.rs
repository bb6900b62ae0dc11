//! Restart safety: a daemon that stops (SIGTERM) or dies (SIGKILL) and starts again on the same
//! home adopts its running instances, removes what nobody declared, and never touches another
//! home's containers.

use std::process::{Command, Stdio};
use std::time::Duration;

use rouse_tests::{HELLO, Rouse, SLEEPER, eventually};

fn ids(rouse: &Rouse, service: &str) -> Vec<String> {
    let mut ids: Vec<String> = rouse.running(service).into_iter().map(|c| c.id).collect();
    ids.sort();
    ids
}

fn answers_within(rouse: &Rouse, service: &str, seconds: u64) {
    eventually(&format!("{service} to answer"), Duration::from_secs(seconds), || {
        (rouse.get(service, "/").status == 200).then_some(())
    });
}

#[test]
fn instances_are_adopted_after_sigterm_and_after_sigkill() {
    let mut rouse = Rouse::start();
    rouse.deploy("kept", HELLO, &["--scale-init", "2"]);
    rouse.deploy("other", SLEEPER, &[]);
    let kept = ids(&rouse, "kept");
    let other = ids(&rouse, "other");
    assert_eq!(kept.len(), 2);

    let status = rouse.terminate();
    assert!(status.success());
    assert_eq!(
        ids(&rouse, "kept"),
        kept,
        "instances keep running while the daemon is down"
    );
    rouse.restart();
    answers_within(&rouse, "kept", 5);
    answers_within(&rouse, "other", 5);

    rouse.kill9();
    rouse.restart();
    answers_within(&rouse, "kept", 5);
    // Give the reconciler a few passes to (wrongly) replace or duplicate anything.
    let settle = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < settle {
        assert_eq!(
            ids(&rouse, "kept"),
            kept,
            "the same containers serve, none replaced or added"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(ids(&rouse, "other"), other);
    assert_eq!(rouse.containers().len(), 3, "{:?}", rouse.containers());
    let service = rouse.describe("kept");
    assert_eq!(service["status"]["conditions"][0]["status"], "True");
    assert_eq!(service["status"]["latestReadyRevisionName"], "kept-00001");
}

#[test]
fn undeclared_and_dead_instances_are_cleared_and_other_homes_left_alone() {
    let mut rouse = Rouse::start();
    rouse.deploy("live", SLEEPER, &[]);
    rouse.deploy("doomed", HELLO, &[]);
    let live = ids(&rouse, "live");
    rouse.kill9();

    // While the daemon is down: its live instance dies, and containers appear that carry this
    // home's label for a service nobody declared, and another home's label.
    let _ = Command::new("docker")
        .args(["kill", &live[0]])
        .stdout(Stdio::null())
        .status();
    let home = format!("rouse.home={}", rouse.home_id());
    let ghost = docker_run(&[
        "--label",
        "rouse.managed=true",
        "--label",
        &home,
        "--label",
        "rouse.service=ghost",
        "--label",
        "rouse.revision=ghost-00001",
    ]);
    let stranger = docker_run(&[
        "--label",
        "rouse.managed=true",
        "--label",
        "rouse.home=someone-else",
        "--label",
        "rouse.service=live",
        "--label",
        "rouse.revision=live-00001",
    ]);

    rouse.restart();
    rouse.cli_ok(&["delete", "doomed"]);
    answers_within(&rouse, "live", 20);
    let replaced = ids(&rouse, "live");
    assert_eq!(replaced.len(), 1);
    assert_ne!(replaced, live, "the dead instance was replaced");
    eventually(
        "the undeclared container to be removed",
        Duration::from_secs(20),
        || (!rouse.containers().iter().any(|c| c.id.starts_with(&ghost))).then_some(()),
    );
    assert!(
        !rouse.containers().iter().any(|c| c.id == live[0]),
        "the dead container is cleared away"
    );

    // Deleted services stay deleted across restarts.
    rouse.kill9();
    rouse.restart();
    answers_within(&rouse, "live", 5);
    assert_eq!(rouse.get("doomed", "/").status, 404);
    assert!(rouse.running("doomed").is_empty());

    let stranger_state = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", &stranger])
        .output()
        .unwrap();
    let _ = Command::new("docker")
        .args(["rm", "-f", &stranger])
        .stdout(Stdio::null())
        .status();
    assert_eq!(
        String::from_utf8_lossy(&stranger_state.stdout).trim(),
        "true",
        "another home's container is never touched"
    );
}

/// Starts a sleeper container by hand with extra labels; returns its id.
fn docker_run(labels: &[&str]) -> String {
    let out = Command::new("docker")
        .args(["run", "-d", "--init"])
        .args(labels)
        .arg(SLEEPER)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What the load threads saw: each request's outcome, by when it ended.
#[derive(Default)]
struct Outcomes {
    ok: u64,
    failed: u64,
    /// When the last request that did not get 200 ended.
    last_failure: Option<tokio::time::Instant>,
}

/// One request on a new connection to the ingress at `addr`: whether it got 200.
fn one_request(addr: std::net::SocketAddr, host: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
    if write!(
        stream,
        "GET /?ms=100 HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// kill -9 of the daemon while load scales a service out, twice, then a restart: the service
/// never has more instances than its max-scale (none duplicated), requests are served again
/// within seconds of each restart, and once the load stops every container goes away with
/// scale to zero (none orphaned: a container the restarted daemon had not adopted would
/// stay).
#[test]
fn kill_9_under_load_orphans_and_duplicates_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let mut rouse = Rouse::start_with_config(
        "[autoscaler]\nstable-window = \"6s\"\nscale-to-zero-grace-period = \"0s\"\n\
         tick-interval = \"500ms\"\nfrozen-retention = \"0s\"\n",
    );
    rouse.deploy(
        "busy",
        SLEEPER,
        &["--concurrency-limit", "1", "--scale-max", "4", "--scale-target", "1"],
    );
    let ingress = Arc::new(Mutex::new(rouse.ingress));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (ingress, outcomes, stop) = (ingress.clone(), outcomes.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let addr = *ingress.lock().unwrap();
                    let host = format!("busy.localhost:{}", addr.port());
                    let ok = one_request(addr, &host);
                    let mut seen = outcomes.lock().unwrap();
                    if ok {
                        seen.ok += 1;
                    } else {
                        seen.failed += 1;
                        seen.last_failure = Some(tokio::time::Instant::now());
                        drop(seen);
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
        })
        .collect();
    // Never more than max-scale, watched all along.
    let watch = |rouse: &Rouse, for_how_long: Duration| {
        let until = tokio::time::Instant::now() + for_how_long;
        while tokio::time::Instant::now() < until {
            let live: Vec<_> = rouse
                .containers()
                .into_iter()
                .filter(|c| c.state == "running" || c.state == "paused")
                .collect();
            assert!(live.len() <= 4, "more instances than max-scale: {live:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // Killed while scaling out (a second container exists, in whatever state of its start),
    // then again soon after the restart, while it adopts and starts what the load asks for.
    eventually("load to scale the service out", Duration::from_secs(30), || {
        (rouse.containers().len() >= 2).then_some(())
    });
    rouse.kill9();
    rouse.restart();
    *ingress.lock().unwrap() = rouse.ingress;
    watch(&rouse, Duration::from_millis(700));
    rouse.kill9();
    rouse.restart();
    *ingress.lock().unwrap() = rouse.ingress;
    let restarted = tokio::time::Instant::now();
    watch(&rouse, Duration::from_secs(8));
    {
        let seen = outcomes.lock().unwrap();
        let recovered = seen
            .last_failure
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(restarted));
        assert!(
            recovered < Duration::from_secs(3),
            "requests failed until {recovered:?} after the restart ({} ok, {} failed)",
            seen.ok,
            seen.failed
        );
        assert!(seen.ok > 50, "{} ok, {} failed", seen.ok, seen.failed);
        eprintln!("{} ok, {} failed", seen.ok, seen.failed);
    }
    assert!(rouse.running("busy").len() >= 2, "the load still holds the scale");

    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    eventually(
        "every container to go with scale to zero",
        Duration::from_secs(60),
        || rouse.containers().is_empty().then_some(()),
    );
    assert_eq!(rouse.get("busy", "/").status, 200, "and it wakes again");
}
