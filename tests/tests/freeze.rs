//! Instant wake: idle instances are frozen (paused) at zero instead of removed, thawed by the
//! next request, removed after their retention or when frozen memory is over budget, and
//! adopted frozen after a daemon restart.

use std::process::{Command, Stdio};
use std::time::Duration;

use rouse_tests::{HELLO, Rouse, eventually};
use tokio::time::Instant;

/// Zero about two seconds after the last request; decisions every 200 ms.
const FREEZE: &str =
    "[autoscaler]\nstable-window = \"2s\"\nscale-to-zero-grace-period = \"0s\"\ntick-interval = \"200ms\"\n";

fn status(id: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Status}}", id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn frozen(rouse: &Rouse, service: &str) -> String {
    eventually(&format!("{service} to be frozen"), Duration::from_secs(30), || {
        let prefix = format!("rouse-{service}-");
        let containers = rouse.containers();
        let ours: Vec<_> = containers.iter().filter(|c| c.name.starts_with(&prefix)).collect();
        (ours.len() == 1 && ours[0].state == "paused").then(|| ours[0].id.clone())
    })
}

#[test]
fn idle_instances_freeze_and_the_next_request_thaws_one() {
    let rouse = Rouse::start_with_config(FREEZE);
    rouse.deploy("sleepy", HELLO, &[]);
    let id = rouse.running("sleepy")[0].id.clone();
    assert_eq!(
        frozen(&rouse, "sleepy"),
        id,
        "the same instance is frozen, not replaced"
    );
    assert!(rouse.cli_ok(&["list"]).contains("0/0 (1 frozen)"));
    assert!(rouse.cli_ok(&["describe", "sleepy"]).contains("frozen"));

    let started = Instant::now();
    let reply = rouse.get("sleepy", "/");
    let took = started.elapsed();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "Hello World from sleepy-00001!\n");
    assert_eq!(status(&id), "running", "the frozen instance was thawed");
    assert_eq!(rouse.containers().len(), 1, "no fresh instance was started");
    assert!(took < Duration::from_secs(2), "a thaw, not a cold start: {took:?}");

    // It freezes again when idle, and thaws again.
    assert_eq!(frozen(&rouse, "sleepy"), id);
    assert_eq!(rouse.get("sleepy", "/").status, 200);
    let metrics = Command::new("curl")
        .arg("-s")
        .arg(format!("http://{}/metrics", rouse.api))
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    let thaws = "rouse_instance_start_seconds_count{service=\"sleepy\",revision=\"sleepy-00001\",path=\"frozen\"} 2";
    assert!(metrics.contains(thaws), "{metrics}");
}

#[test]
fn frozen_instances_are_removed_after_the_retention_and_zero_disables_freezing() {
    let rouse = Rouse::start_with_config(FREEZE);
    rouse.deploy("brief", HELLO, &["--frozen-retention", "2s"]);
    rouse.deploy("never", HELLO, &["--frozen-retention", "0s"]);
    frozen(&rouse, "brief");
    eventually("both services to have no container", Duration::from_secs(30), || {
        rouse.containers().is_empty().then_some(())
    });
    // From nothing frozen, a request starts a fresh instance.
    assert_eq!(rouse.get("brief", "/").status, 200);
    assert_eq!(rouse.get("never", "/").status, 200);
}

#[test]
fn over_the_memory_budget_the_least_recently_frozen_goes() {
    // One frozen hello holds about 3 MB here, two about 6-7 MB: 5 MiB fits one.
    let rouse = Rouse::start_with_config(&format!("{FREEZE}max-frozen-memory = \"5MiB\"\n"));
    rouse.deploy("older", HELLO, &[]);
    let older = frozen(&rouse, "older");
    rouse.deploy("newer", HELLO, &[]);
    let newer = frozen(&rouse, "newer");
    eventually(
        "the older frozen instance to be removed",
        Duration::from_secs(30),
        || {
            let ids: Vec<String> = rouse.containers().into_iter().map(|c| c.id).collect();
            (!ids.contains(&older) && ids.contains(&newer)).then_some(())
        },
    );
    assert_eq!(status(&newer), "paused");
    assert_eq!(rouse.get("older", "/").status, 200, "the evicted service starts fresh");
}

#[test]
fn frozen_instances_are_adopted_after_a_restart() {
    let mut rouse = Rouse::start_with_config(FREEZE);
    rouse.deploy("keep", HELLO, &[]);
    let id = frozen(&rouse, "keep");
    rouse.kill9();
    rouse.restart();
    // A few reconcile passes later it is still there and still frozen.
    eventually("the daemon to list the service", Duration::from_secs(10), || {
        rouse.cli_ok(&["list"]).contains("1 frozen").then_some(())
    });
    assert_eq!(status(&id), "paused");
    assert_eq!(rouse.get("keep", "/").status, 200);
    assert_eq!(status(&id), "running", "the adopted instance thawed");
    assert_eq!(rouse.containers().len(), 1);
}

#[test]
fn a_frozen_instance_that_died_falls_back_to_a_fresh_start() {
    let rouse = Rouse::start_with_config(FREEZE);
    rouse.deploy("gone", HELLO, &[]);
    let id = frozen(&rouse, "gone");
    let _ = Command::new("docker")
        .args(["rm", "-f", &id])
        .stdout(Stdio::null())
        .status();
    let reply = rouse.get("gone", "/");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(rouse.running("gone").len(), 1);
}
