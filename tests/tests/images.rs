//! Images: a revision runs exactly the image its tag named when it was made, whatever the tag
//! names later; a deploy of a moved tag makes a new revision; tag semantics on request.

use std::process::{Command, Stdio};
use std::time::Duration;

use rouse_tests::{HELLO, Rouse, SLEEPER, eventually};

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("docker runs");
    assert!(out.status.success(), "docker {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn image_id(image: &str) -> String {
    docker(&["image", "inspect", "-f", "{{.Id}}", image])
}

/// A tag of this test's own, removed when dropped (the images it named stay).
struct Tag(String);

impl Tag {
    fn new() -> Self {
        Self(format!("rouse-e2e/pinned-{}:latest", std::process::id()))
    }

    /// `docker tag image self`, as a `docker build -t` of new code would move it.
    fn point_at(&self, image: &str) {
        docker(&["tag", image, &self.0]);
    }
}

impl Drop for Tag {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The `imageDigest` of a revision in `rouse revisions NAME -o json`.
fn pinned_digest(rouse: &Rouse, service: &str, revision: &str) -> serde_json::Value {
    let list: serde_json::Value =
        serde_json::from_str(&rouse.cli_ok(&["revisions", service, "-o", "json"])).expect("JSON revisions");
    let item = list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|r| r["metadata"]["name"] == revision))
        .unwrap_or_else(|| panic!("no {revision} in {list}"))
        .clone();
    item["status"]["containerStatuses"][0]["imageDigest"].clone()
}

#[test]
fn a_revision_runs_its_pinned_image_after_the_tag_moves() {
    let rouse = Rouse::start();
    let tag = Tag::new();
    tag.point_at(HELLO);
    rouse.deploy("web", &tag.0, &[]);
    assert!(rouse.get("web", "/").text().starts_with("Hello"), "the first build");
    assert_eq!(pinned_digest(&rouse, "web", "web-00001"), image_id(HELLO));
    assert!(
        rouse
            .cli_ok(&["describe", "web"])
            .contains(&format!("Image digest: {}", image_id(HELLO))),
        "describe shows the digest"
    );

    // The next build moves the tag; the old revision's instance goes away behind Rouse's
    // back, and its replacement still runs the old build.
    tag.point_at(SLEEPER);
    let old = rouse.running("web").remove(0);
    docker(&["rm", "-f", &old.id]);
    eventually("a replacement instance", Duration::from_secs(30), || {
        let running = rouse.running("web");
        (running.len() == 1 && running[0].id != old.id && rouse.get("web", "/").status == 200).then_some(())
    });
    assert!(
        rouse.get("web", "/").text().starts_with("Hello"),
        "the replacement runs the pinned image, not what the tag names now"
    );

    // Deploying the moved tag makes a revision of the new image; deploying it again, none.
    rouse.deploy("web", &tag.0, &[]);
    assert_eq!(rouse.get("web", "/").text(), "slept 0 ms\n");
    assert_eq!(pinned_digest(&rouse, "web", "web-00002"), image_id(SLEEPER));
    let again = rouse.cli(&["deploy", "web", "--image", &tag.0]);
    assert!(
        again.status.success() && again.stderr.contains("no new revision"),
        "{}",
        again.stderr
    );

    // Tag semantics on request: no digest recorded, and a new revision (the pin changed).
    rouse.deploy("web", &tag.0, &["--lock-to-digest=false"]);
    assert_eq!(pinned_digest(&rouse, "web", "web-00003"), serde_json::Value::Null);
    let bad = rouse.cli(&["deploy", "web", "--image", &tag.0, "--lock-to-digest=maybe"]);
    assert!(
        !bad.status.success() && bad.stderr.contains("--lock-to-digest"),
        "{}",
        bad.stderr
    );
}
