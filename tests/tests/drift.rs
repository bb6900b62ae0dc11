//! Instances changed behind Rouse's back, on a daemon at the default autoscaler windows:
//! frozen through their cgroup or stopped with a request in flight, paused while ready, and
//! unpaused while frozen, before and after their retention. Every request is served or gets a
//! clear error by its deadline, and every service serves again afterwards.
//!
//! The end-to-end half of the drift cases; the in-memory runtime replays many more sequences
//! (`cargo test -p rouse-control`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rouse_tests::{HELLO, Rouse, SLEEPER, eventually};
use tokio::time::Instant;

/// Default stable window (60 s) + scale-to-zero grace (30 s), with room.
const TO_ZERO: Duration = Duration::from_secs(150);

fn docker(args: &[&str]) {
    let status = Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("docker runs");
    assert!(status.success(), "docker {args:?} failed");
}

fn state(id: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Status}}", id])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A request in the background, with curl: (status, seconds) once it ends.
fn spawn_get(rouse: &Rouse, service: &str, path: &str) -> Child {
    Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total}",
            "--max-time",
            "330",
        ])
        .arg("-H")
        .arg(format!("Host: {service}.localhost"))
        .arg(format!("http://{}{path}", rouse.ingress))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs")
}

fn finished(child: Child) -> (u16, f64) {
    let out = child.wait_with_output().expect("curl ends");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut parts = text.split_whitespace();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let seconds = parts.next().and_then(|s| s.parse().ok()).unwrap_or(f64::MAX);
    (status, seconds)
}

/// The container's freezer control: cgroup v1's `freezer.state` or v2's `cgroup.freeze`,
/// with the values that freeze and thaw it.
fn freezer(id: &str) -> (PathBuf, &'static str, &'static str) {
    let v1 = PathBuf::from(format!("/sys/fs/cgroup/freezer/docker/{id}/freezer.state"));
    if v1.exists() {
        return (v1, "FROZEN", "THAWED");
    }
    for v2 in [
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/cgroup.freeze"),
        format!("/sys/fs/cgroup/docker/{id}/cgroup.freeze"),
    ] {
        let v2 = PathBuf::from(v2);
        if v2.exists() {
            return (v2, "1", "0");
        }
    }
    panic!("no freezer control found for container {id} under /sys/fs/cgroup (cgroup v1 or v2)");
}

fn only(rouse: &Rouse, service: &str) -> String {
    let running = rouse.running(service);
    assert_eq!(running.len(), 1, "{service}: {running:?}");
    running[0].id.clone()
}

fn frozen(rouse: &Rouse, service: &str) -> String {
    eventually(&format!("{service} to be frozen"), TO_ZERO, || {
        let prefix = format!("rouse-{service}-");
        let ours: Vec<_> = rouse
            .containers()
            .into_iter()
            .filter(|c| c.name.starts_with(&prefix))
            .collect();
        (ours.len() == 1 && ours[0].state == "paused").then(|| ours[0].id.clone())
    })
}

#[test]
fn instances_changed_behind_rouses_back_keep_serving() {
    let rouse = Rouse::start();
    rouse.deploy("cgroup", SLEEPER, &[]);
    rouse.deploy("stopped", SLEEPER, &[]);
    rouse.deploy("paused", HELLO, &[]);
    rouse.deploy("unpaused", HELLO, &[]);
    rouse.deploy("expired", HELLO, &["--frozen-retention", "15s"]);

    // Frozen through its cgroup with a request in flight: the request finishes once thawed.
    let id = only(&rouse, "cgroup");
    let (control, freeze, thaw) = freezer(&id);
    let slow = spawn_get(&rouse, "cgroup", "/?ms=2000");
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&control, freeze).expect("freeze the cgroup");
    std::thread::sleep(Duration::from_secs(5));
    std::fs::write(&control, thaw).expect("thaw the cgroup");
    assert_eq!(finished(slow).0, 200);
    assert_eq!(rouse.get("cgroup", "/").status, 200);

    // Stopped with a request in flight: a prompt answer (served during the drain, or a 502),
    // then a fresh instance serves.
    let id = only(&rouse, "stopped");
    let slow = spawn_get(&rouse, "stopped", "/?ms=5000");
    std::thread::sleep(Duration::from_millis(500));
    docker(&["stop", "-t", "1", &id]);
    let (status, seconds) = finished(slow);
    assert!(matches!(status, 200 | 502), "status {status}");
    assert!(seconds < 10.0, "answered after {seconds} s");
    let reply = rouse.get("stopped", "/");
    assert_eq!(reply.status, 200, "{}", reply.text());

    // Paused while ready: thawed by the next pass, so a request waits at most a resync.
    let id = only(&rouse, "paused");
    docker(&["pause", &id]);
    let began = Instant::now();
    assert_eq!(rouse.get("paused", "/").status, 200);
    assert!(began.elapsed() < Duration::from_secs(10), "{:?}", began.elapsed());
    assert_eq!(state(&id), "running");

    // Unpaused while frozen: frozen again, and thawed by the next request.
    let id = frozen(&rouse, "unpaused");
    let expired = frozen(&rouse, "expired");
    docker(&["unpause", &id]);
    docker(&["unpause", &expired]);
    eventually(
        "the unpaused instance to be frozen again",
        Duration::from_secs(20),
        || (state(&id) == "paused").then_some(()),
    );
    assert_eq!(rouse.get("unpaused", "/").status, 200);

    // Unpaused while frozen, then removed at the end of its retention: requests still get a
    // fresh instance (before the fix, they hung to the 300 s timeout).
    eventually("the expired instance to be removed", Duration::from_secs(60), || {
        rouse.containers().iter().all(|c| c.id != expired).then_some(())
    });
    for _ in 0..2 {
        let slow = spawn_get(&rouse, "expired", "/");
        let (status, seconds) = finished(slow);
        assert_eq!(status, 200);
        assert!(seconds < 10.0, "answered after {seconds} s");
    }
}
