//! Run-as and file system end to end, with real containers: kn's `--security-context strict`
//! and Rouse's refinements reach the engine (user and group, read-only root, capabilities,
//! no privilege escalation), a root image is refused under runAsNonRoot at deploy, a capability
//! beyond Docker's defaults or dropped by the daemon is refused by name, and the YAML applies
//! back unchanged.

use std::io::Write;
use std::process::{Command, Stdio};

use rouse_tests::{Rouse, SLEEPER, docker_inspect};

/// Bit 10 of a capability mask: `CAP_NET_BIND_SERVICE`.
const NET_BIND_SERVICE_ONLY: &str = "0000000000000400";

/// A line of `/proc/self/status` as the instance sees it.
fn status_line(rouse: &Rouse, service: &str, key: &str) -> String {
    let status = rouse.get(service, "/file?path=/proc/self/status").text();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .trim()
        .to_string()
}

/// `FROM image` with `USER user`, tagged `tag`, built from a Dockerfile on stdin.
fn build_with_user(tag: &str, user: &str) {
    let mut build = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker build");
    write!(build.stdin.take().unwrap(), "FROM {SLEEPER}\nUSER {user}\n").unwrap();
    let built = build.wait_with_output().unwrap();
    assert!(
        built.status.success(),
        "docker build {tag}: {}",
        String::from_utf8_lossy(&built.stderr)
    );
}

struct Image(&'static str);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", self.0]).output();
    }
}

#[test]
fn strict_security_context_and_its_refinements_reach_the_container() {
    let rouse = Rouse::start();
    rouse.deploy(
        "locked",
        SLEEPER,
        &[
            "--security-context",
            "strict",
            "--user",
            "1000",
            "--group",
            "2000",
            "--read-only-root-filesystem",
            "--cap-add",
            "NET_BIND_SERVICE",
            "--mount",
            "/scratch=emptyDir",
        ],
    );
    let running = rouse.running("locked");
    let inspected = docker_inspect(&running[0].id);
    let host = &inspected["HostConfig"];
    assert_eq!(inspected["Config"]["User"], "1000:2000");
    assert_eq!(host["ReadonlyRootfs"], true);
    assert_eq!(host["CapAdd"], serde_json::json!(["NET_BIND_SERVICE"]));
    assert_eq!(host["CapDrop"], serde_json::json!(["NET_RAW", "ALL"]));
    assert_eq!(host["SecurityOpt"], serde_json::json!(["no-new-privileges:true"]));

    // What the process itself sees: its ids, its bounding set, no new privileges.
    assert_eq!(
        status_line(&rouse, "locked", "Uid").split_whitespace().next(),
        Some("1000")
    );
    assert_eq!(
        status_line(&rouse, "locked", "Gid").split_whitespace().next(),
        Some("2000")
    );
    assert_eq!(status_line(&rouse, "locked", "CapBnd"), NET_BIND_SERVICE_ONLY);
    assert_eq!(status_line(&rouse, "locked", "NoNewPrivs"), "1");
    let refused = rouse.request(http::Method::PUT, "locked", "/file?path=/note", &[], b"x".to_vec());
    assert_eq!(refused.status, 500);
    assert!(refused.text().contains("Read-only file system"), "{}", refused.text());
    let written = rouse.request(
        http::Method::PUT,
        "locked",
        "/file?path=/scratch/note",
        &[],
        b"x".to_vec(),
    );
    assert!(written.status < 300, "an emptyDir stays writable: {}", written.text());

    // As Knative writes it, and applied back it changes nothing.
    let yaml = rouse.cli_ok(&["describe", "locked", "-o", "yaml"]);
    for line in [
        "runAsUser: 1000",
        "runAsGroup: 2000",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "type: RuntimeDefault",
    ] {
        assert!(yaml.contains(line), "{line} in {yaml}");
    }
    assert!(rouse.apply(&yaml).contains("Service locked unchanged"), "{yaml}");

    // Refinements on a redeploy keep the rest; none clears it all but the user.
    rouse.deploy(
        "locked",
        SLEEPER,
        &["--read-only-root-filesystem=false", "--cap-add", "NET_BIND_SERVICE-"],
    );
    let context = rouse.describe("locked")["spec"]["template"]["spec"]["containers"][0]["securityContext"].clone();
    assert_eq!(context["readOnlyRootFilesystem"], serde_json::Value::Null, "{context}");
    assert_eq!(context["capabilities"], serde_json::json!({"drop": ["ALL"]}));
    assert_eq!(context["runAsNonRoot"], true);
    rouse.deploy("locked", SLEEPER, &["--security-context", "none"]);
    let context = rouse.describe("locked")["spec"]["template"]["spec"]["containers"][0]["securityContext"].clone();
    assert_eq!(context, serde_json::json!({"runAsUser": 1000}));
}

#[test]
fn run_as_non_root_refuses_a_root_image_at_deploy_and_takes_a_numeric_user() {
    let rouse = Rouse::start();
    // The sample image sets no USER: root.
    let run = rouse.cli(&["deploy", "web", "--image", SLEEPER, "--run-as-non-root"]);
    assert!(!run.status.success());
    assert!(
        run.stderr.contains("runAsNonRoot") && run.stderr.contains("sets no USER") && run.stderr.contains("--user"),
        "{}",
        run.stderr
    );
    let named = Image("rouse-tests/sleeper-nobody:latest");
    build_with_user(named.0, "nobody");
    let run = rouse.cli(&["deploy", "web", "--image", named.0, "--run-as-non-root"]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("USER is nobody, not a number"), "{}", run.stderr);

    let numeric = Image("rouse-tests/sleeper-65534:latest");
    build_with_user(numeric.0, "65534");
    rouse.deploy("web", numeric.0, &["--run-as-non-root"]);
    assert_eq!(
        status_line(&rouse, "web", "Uid").split_whitespace().next(),
        Some("65534")
    );
    // An explicit user makes any image fine.
    rouse.deploy("root-image", SLEEPER, &["--run-as-non-root", "--user", "1000"]);
    assert_eq!(rouse.get("root-image", "/").status, 200);
    assert!(
        rouse
            .cli(&["deploy", "x", "--image", SLEEPER, "--run-as-non-root", "--user", "0"])
            .stderr
            .contains("--user '0': is root, and runAsNonRoot is true")
    );
}

#[test]
fn capabilities_beyond_the_allow_list_or_dropped_by_the_daemon_are_refused_by_name() {
    let rouse = Rouse::start();
    for (args, expected) in [
        (
            vec!["--cap-add", "SYS_ADMIN"],
            "--cap-add 'SYS_ADMIN': is not one a container may add",
        ),
        (
            vec!["--cap-add", "CAP_CHOWN"],
            "write it without CAP_, as Kubernetes does: CHOWN",
        ),
        (vec!["--cap-drop", "net_raw"], "is not a Linux capability"),
        (
            vec!["--cap-add", "NET_RAW"],
            "is taken from every instance by [instances] drop-capabilities in rouse.toml (NET_RAW)",
        ),
        (vec!["--security-context", "loose"], "must be none or strict"),
        (vec!["--group", "10"], "needs runAsUser (--user) as well"),
    ] {
        let mut argv = vec!["deploy", "web", "--image", SLEEPER];
        argv.extend(&args);
        let run = rouse.cli(&argv);
        assert!(!run.status.success(), "{args:?}");
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
    }
    let yaml = format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      \
         containers:\n        - image: {SLEEPER}\n          securityContext:\n            privileged: true\n"
    );
    let run = rouse.cli_input(&["apply", "-f", "-"], &yaml);
    assert!(!run.status.success());
    assert!(run.stderr.contains("securityContext.privileged"), "{}", run.stderr);
    assert!(rouse.containers().is_empty(), "nothing was started");
}
