//! A full disk: the broker answers 503 (never 202 for what is not stored), `/healthz` says
//! why, and once there is room again everything works without a restart.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use http::Method;
use rouse_tests::{Rouse, Subscriber, eventually};

/// A tmpfs mounted on a fresh directory, unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(size_mib: u32) -> (Self, tempfile::TempDir) {
        let home = tempfile::Builder::new().prefix("rouse-disk-").tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0700"), "tmpfs"])
            .arg(home.path())
            .status()
            .expect("mount");
        assert!(status.success(), "mounting a tmpfs needs root (the tests run as root)");
        (
            Self {
                dir: home.path().to_path_buf(),
            },
            home,
        )
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        // The home's own cleanup ran while the tmpfs was still mounted on it.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Writes a file until the disk is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 256 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    path
}

fn healthz(rouse: &Rouse) -> (u16, String) {
    let host = rouse.api.to_string();
    let reply = rouse.request_to_api(Method::GET, &host, "/healthz");
    (reply.status, reply.text())
}

/// Posts one binary-mode event with curl (a new connection each time, as most senders do).
fn send(rouse: &Rouse, id: &str, data: &str) -> u16 {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["-H", "ce-specversion: 1.0", "-H", &format!("ce-id: {id}")])
        .args([
            "-H",
            "ce-source: /disk",
            "-H",
            "ce-type: t",
            "-H",
            "content-type: text/plain",
        ])
        .args(["--data-binary", "@-"])
        .arg(format!("http://{}/default/default", rouse.events))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut curl| {
            curl.stdin.take().unwrap().write_all(data.as_bytes())?;
            curl.wait_with_output()
        })
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
    assert_ne!(status, 0, "{id}: no answer; the daemon log:\n{}", rouse.log());
    status
}

#[test]
fn a_full_disk_gets_503_and_healthz_says_why_and_room_again_heals_without_a_restart() {
    let (disk, home) = SmallDisk::mount(24);
    let rouse = Rouse::start_in(home, "");
    let sub = Subscriber::start();
    rouse.apply(&format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: all\nspec:\n  broker: default\n  subscriber:\n    uri: {}\n",
        sub.url("/all")
    ));
    assert_eq!(send(&rouse, "before", "x"), 202);
    assert_eq!(healthz(&rouse).0, 200);

    let filler = fill(&disk.dir);
    let big = "d".repeat(512 * 1024);
    let mut accepted = vec!["before".to_string()];
    let mut refused = 0;
    for i in 0..40 {
        let id = format!("full-{i}");
        match send(&rouse, &id, &big) {
            202 => accepted.push(id),
            503 => refused += 1,
            other => panic!("{id}: status {other}; a full disk must give 202 or 503"),
        }
    }
    assert!(refused > 0, "a full disk refused nothing");
    let (status, text) = healthz(&rouse);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("event log cannot write"), "{text}");
    let broker = rouse.cli(&["broker", "create", "later"]);
    assert!(!broker.status.success(), "a broker was created on a full disk");

    fs::remove_file(filler).unwrap();
    eventually("/healthz ok again", Duration::from_secs(10), || {
        (healthz(&rouse).0 == 200).then_some(())
    });
    assert_eq!(send(&rouse, "after", "x"), 202);
    accepted.push("after".to_string());
    rouse.cli_ok(&["broker", "create", "later"]);
    // Nothing that got 202 is lost.
    eventually("every accepted event delivered", Duration::from_secs(30), || {
        let got: Vec<String> = sub.received("/all").iter().map(|r| r.header("ce-id")).collect();
        accepted.iter().all(|id| got.contains(id)).then_some(())
    });
    drop(rouse);
    drop(disk);
}

/// A truncated `events.redb` once kept the whole daemon from starting. Now serving starts
/// and works, brokers answer 503, and `/healthz` names the event log.
#[test]
fn a_damaged_event_log_stops_eventing_not_serving() {
    let mut rouse = Rouse::start();
    rouse.deploy("web", rouse_tests::HELLO, &[]);
    assert_eq!(send(&rouse, "kept", "x"), 202);
    rouse.terminate();
    let log = rouse.home().join("events.redb");
    let file = fs::OpenOptions::new().write(true).open(&log).unwrap();
    let length = file.metadata().unwrap().len();
    file.set_len(length / 3).unwrap();
    drop(file);
    rouse.restart();
    let reply = eventually("web served after the restart", Duration::from_secs(30), || {
        let reply = rouse.get("web", "/");
        (reply.status == 200).then_some(reply)
    });
    assert!(reply.text().starts_with("Hello"), "{}", reply.text());
    let status = send(&rouse, "after", "x");
    let (health, text) = healthz(&rouse);
    assert_eq!(status, 503, "a damaged log took an event");
    assert_eq!(health, 503, "{text}");
    assert!(text.contains("event log") && text.contains("events.redb"), "{text}");
}
