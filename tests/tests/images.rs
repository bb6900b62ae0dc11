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

    // A redeploy that leaves the image out keeps the pin, as kn's --lock-to-digest does.
    let run = rouse.cli(&["deploy", "web", "--env", "TARGET=kept"]);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(rouse.get("web", "/").text(), "Hello kept from web-00002!\n");
    assert_eq!(pinned_digest(&rouse, "web", "web-00002"), image_id(HELLO));

    // Deploying the moved tag makes a revision of the new image; deploying it again, none.
    rouse.deploy("web", &tag.0, &["--env", "TARGET-"]);
    assert_eq!(rouse.get("web", "/").text(), "slept 0 ms\n");
    assert_eq!(pinned_digest(&rouse, "web", "web-00003"), image_id(SLEEPER));
    let again = rouse.cli(&["deploy", "web", "--image", &tag.0]);
    assert!(
        again.status.success() && again.stderr.contains("no new revision"),
        "{}",
        again.stderr
    );

    // Tag semantics on request: no digest recorded, and a new revision (the pin changed).
    rouse.deploy("web", &tag.0, &["--lock-to-digest=false"]);
    assert_eq!(pinned_digest(&rouse, "web", "web-00004"), serde_json::Value::Null);
    let bad = rouse.cli(&["deploy", "web", "--image", &tag.0, "--lock-to-digest=maybe"]);
    assert!(
        !bad.status.success() && bad.stderr.contains("--lock-to-digest"),
        "{}",
        bad.stderr
    );
}

#[test]
fn deploy_pulls_from_a_registry_and_says_why_a_pull_fails() {
    let registry = rouse_tests::Registry::start();
    let rouse = Rouse::start();
    let image = registry.push(HELLO, "hello:v1");

    // Not in the engine: pulled, with its progress on stderr, then deployed pinned to the
    // registry's digest.
    let run = rouse.cli(&["deploy", "web", "--image", &image]);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("Pulling {image}")) && run.stderr.contains(&format!("Pulled {image}")),
        "{}",
        run.stderr
    );
    assert_eq!(rouse.get("web", "/").status, 200);
    let digest = pinned_digest(&rouse, "web", "web-00001");
    let repo_digests = docker(&["image", "inspect", "-f", "{{json .RepoDigests}}", &image]);
    let from_registry = format!("{}/hello@sha256:", registry.addr);
    assert!(
        digest
            .as_str()
            .is_some_and(|d| d.starts_with(&from_registry) && repo_digests.contains(d)),
        "{digest} not the registry's digest among {repo_digests}"
    );

    // Present: not pulled again unless asked.
    let again = rouse.cli(&["deploy", "web", "--image", &image, "--env", "A=1"]);
    assert!(
        again.status.success() && !again.stderr.contains("Pulling"),
        "{}",
        again.stderr
    );
    let always = rouse.cli(&["deploy", "web", "--image", &image, "--env", "A=2", "--pull", "always"]);
    assert!(
        always.status.success() && always.stderr.contains("Pulling"),
        "{}",
        always.stderr
    );

    // Failures, in plain words; nothing is created.
    let missing = format!("{}/nope:v1", registry.addr);
    let closed = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("127.0.0.1:{port}/app:v1")
    };
    for (name, args, expected) in [
        (
            "a",
            vec!["--image", missing.as_str()],
            "the registry has no such image or tag",
        ),
        ("b", vec!["--image", closed.as_str()], "the registry cannot be reached"),
        (
            "c",
            vec!["--image", missing.as_str(), "--pull", "never"],
            "is not in the local Docker",
        ),
        ("d", vec!["--image", HELLO, "--pull", "sometimes"], "--pull"),
    ] {
        let mut all = vec!["deploy", name];
        all.extend(args);
        let run = rouse.cli(&all);
        assert!(!run.status.success(), "{all:?} succeeded");
        assert!(run.stderr.contains(expected), "{all:?}: {}", run.stderr);
        assert!(!rouse.cli(&["describe", name]).status.success(), "{name} was created");
    }
    assert!(rouse.running("a").is_empty() && rouse.running("b").is_empty());

    // `rouse apply` pulls what the engine lacks too, before it applies anything.
    let applied = registry.push(HELLO, "applied:v1");
    let yaml = |name: &str, image: &str| {
        format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  template:\n    spec:\n      containers:\n        - image: {image}\n"
        )
    };
    let run = rouse.cli_input(&["apply", "-f", "-"], &yaml("from-yaml", &applied));
    assert!(
        run.status.success() && run.stderr.contains(&format!("Pulled {applied}")),
        "{}",
        run.stderr
    );
    assert_eq!(rouse.get("from-yaml", "/").status, 200);
    let both = format!("{}---\n{}", yaml("first", HELLO), yaml("second", &missing));
    let run = rouse.cli_input(&["apply", "-f", "-"], &both);
    assert!(!run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains("Service second (document 2)") && run.stderr.contains("no such image or tag"),
        "{}",
        run.stderr
    );
    assert!(
        !rouse.cli(&["describe", "first"]).status.success(),
        "nothing of the file was applied"
    );
}

#[test]
fn a_private_registry_is_pulled_from_with_the_credentials_of_docker_login() {
    let registry = rouse_tests::Registry::start_with_login("ci", "s3cret-pw");
    let rouse = Rouse::start();
    let image = registry.push(HELLO, "private:v1");
    let nobody = tempfile::tempdir().unwrap();

    // No login: refused, in words that say what to do.
    let run = rouse.cli_env(
        &["deploy", "web", "--image", &image],
        &[("DOCKER_CONFIG", nobody.path())],
    );
    assert!(!run.status.success());
    assert!(run.stderr.contains("docker login"), "{}", run.stderr);
    assert!(!rouse.cli(&["describe", "web"]).status.success(), "nothing was created");

    // A wrong password, stored the way `docker login` stores one: refused the same way.
    let wrong = tempfile::tempdir().unwrap();
    let auth = {
        use std::io::Write as _;
        let mut child = Command::new("base64")
            .arg("-w0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"ci:wrong").unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    std::fs::write(
        wrong.path().join("config.json"),
        serde_json::json!({"auths": {registry.addr.to_string(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let run = rouse.cli_env(
        &["deploy", "web", "--image", &image],
        &[("DOCKER_CONFIG", wrong.path())],
    );
    assert!(
        !run.status.success() && run.stderr.contains("docker login"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("wrong"),
        "the password is never shown: {}",
        run.stderr
    );

    // After `docker login`: pulled and served.
    let user = tempfile::tempdir().unwrap();
    assert!(registry.docker_login(user.path(), "ci", "s3cret-pw").status.success());
    let run = rouse.cli_env(&["deploy", "web", "--image", &image], &[("DOCKER_CONFIG", user.path())]);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(!run.stderr.contains("s3cret-pw"));
    assert_eq!(rouse.get("web", "/").status, 200);
    assert!(!rouse.log().contains("s3cret-pw"), "the daemon never logs the password");
}

/// Untags every `rouse.local/NAME:*` image when dropped.
struct LocalTags(&'static str);

impl Drop for LocalTags {
    fn drop(&mut self) {
        let tags = docker(&[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            &format!("rouse.local/{}", self.0),
        ]);
        for tag in tags.lines().filter(|t| !t.is_empty()) {
            let _ = Command::new("docker")
                .args(["rmi", tag])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[test]
fn deploy_from_source_builds_tags_pins_and_says_why_a_build_fails() {
    let _tags = (LocalTags("web"), LocalTags("bad"));
    let rouse = Rouse::start();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/source");
    let sample = sample.to_str().unwrap();
    let run = rouse.cli(&["deploy", "web", "--source", sample]);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains("Building rouse.local/web:") && run.stderr.contains("Built rouse.local/web:"),
        "{}",
        run.stderr
    );
    assert_eq!(rouse.get("web", "/").text(), "Hello source from web-00001!\n");
    let image = rouse.describe("web")["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(image.starts_with("rouse.local/web:"), "{image}");
    assert_eq!(pinned_digest(&rouse, "web", "web-00001"), image_id(&image));
    // The same sources: the same tag and image, no new revision.
    let again = rouse.cli(&["deploy", "web", "--source", sample]);
    assert!(
        again.status.success() && again.stderr.contains("no new revision"),
        "{}",
        again.stderr
    );

    // A failing step: its output and error, and nothing created.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("Dockerfile"),
        "FROM rouse-samples/hello:latest\nRUN /bin/false\n",
    )
    .unwrap();
    let run = rouse.cli(&["deploy", "bad", "--source", broken.path().to_str().unwrap()]);
    assert!(!run.status.success());
    assert!(
        run.stderr.contains("RUN /bin/false") && run.stderr.contains("nothing was deployed"),
        "{}",
        run.stderr
    );
    assert!(!rouse.cli(&["describe", "bad"]).status.success());

    // No Dockerfile, or --source with --image: refused before anything is sent.
    let empty = tempfile::tempdir().unwrap();
    let run = rouse.cli(&["deploy", "bad", "--source", empty.path().to_str().unwrap()]);
    assert!(
        !run.status.success() && run.stderr.contains("has no Dockerfile"),
        "{}",
        run.stderr
    );
    let run = rouse.cli(&["deploy", "bad", "--source", sample, "--image", HELLO]);
    assert!(
        !run.status.success() && run.stderr.contains("cannot be used with"),
        "{}",
        run.stderr
    );
}
