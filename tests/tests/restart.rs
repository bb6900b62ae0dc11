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
