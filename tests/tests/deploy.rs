//! `rouse deploy`, `list`, `describe`, `delete` and `logs`, and every bad input they refuse.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rouse_tests::{HELLO, Rouse, SLEEPER, docker_inspect, eventually, rouse_binary};

fn condition<'a>(service: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    service["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap()
}

#[test]
fn deploy_prints_the_url_and_the_service_answers() {
    let rouse = Rouse::start();
    let run = rouse.cli(&["deploy", "hello", "--image", HELLO, "--env", "TARGET=Rouse"]);
    assert!(run.status.success(), "{}", run.stderr);
    let url = format!("http://hello.localhost:{}", rouse.ingress.port());
    assert_eq!(run.stdout, format!("{url}\n"), "stdout is exactly the URL");
    assert!(
        run.stderr.contains("hello-00001"),
        "progress names the revision: {}",
        run.stderr
    );
    let reply = rouse.get("hello", "/");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "Hello Rouse from hello-00001!\n");

    let service = rouse.describe("hello");
    assert_eq!(service["apiVersion"], "serving.knative.dev/v1");
    assert_eq!(service["kind"], "Service");
    assert_eq!(service["metadata"]["name"], "hello");
    let spec = &service["spec"]["template"]["spec"];
    assert_eq!(spec["containers"][0]["image"], HELLO);
    assert_eq!(
        spec["containers"][0]["env"][0],
        serde_json::json!({"name": "TARGET", "value": "Rouse"})
    );
    assert_eq!(spec["containers"][0]["ports"][0]["containerPort"], 8080);
    assert_eq!(spec["containerConcurrency"], 0);
    assert_eq!(spec["timeoutSeconds"], 300);
    assert_eq!(service["status"]["url"], url);
    assert_eq!(service["status"]["latestCreatedRevisionName"], "hello-00001");
    assert_eq!(service["status"]["latestReadyRevisionName"], "hello-00001");
    for kind in ["Ready", "ConfigurationsReady", "RoutesReady"] {
        assert_eq!(condition(&service, kind)["status"], "True", "{kind}");
    }
    let yaml = rouse.cli_ok(&["describe", "hello", "-o", "yaml"]);
    assert!(
        yaml.contains("apiVersion: serving.knative.dev/v1") && yaml.contains("latestReadyRevisionName: hello-00001"),
        "{yaml}"
    );
    let human = rouse.cli_ok(&["describe", "hello"]);
    assert!(
        human.contains(&url) && human.contains("hello-00001") && human.contains("ready"),
        "{human}"
    );
}

#[test]
fn changed_template_makes_a_revision_and_unchanged_makes_none() {
    let rouse = Rouse::start();
    rouse.deploy("web", HELLO, &["--env", "TARGET=one"]);
    assert_eq!(rouse.get("web", "/").text(), "Hello one from web-00001!\n");

    rouse.deploy(
        "web",
        HELLO,
        &["--env", "TARGET=two", "--concurrency-limit", "5", "--timeout", "30"],
    );
    assert_eq!(rouse.get("web", "/").text(), "Hello two from web-00002!\n");
    let service = rouse.describe("web");
    assert_eq!(service["status"]["latestCreatedRevisionName"], "web-00002");
    assert_eq!(service["spec"]["template"]["spec"]["containerConcurrency"], 5);
    assert_eq!(service["spec"]["template"]["spec"]["timeoutSeconds"], 30);

    let again = rouse.cli(&[
        "deploy",
        "web",
        "--image",
        HELLO,
        "--env",
        "TARGET=two",
        "--concurrency-limit",
        "5",
        "--timeout",
        "30",
    ]);
    assert!(again.status.success(), "{}", again.stderr);
    assert!(again.stderr.contains("no new revision"), "{}", again.stderr);
    assert_eq!(
        rouse.describe("web")["status"]["latestCreatedRevisionName"],
        "web-00002"
    );
    // The old revision's instance is drained and removed once the new one serves.
    eventually("the old revision's instance to go", Duration::from_secs(30), || {
        let running = rouse.running("web");
        (running.len() == 1 && running[0].name.starts_with("rouse-web-00002-")).then_some(())
    });
}

#[test]
fn no_wait_returns_before_ready() {
    let rouse = Rouse::start();
    let url = rouse.deploy("slow", SLEEPER, &["--env", "STARTUP_DELAY_MS=1500", "--no-wait"]);
    assert_eq!(url, format!("http://slow.localhost:{}", rouse.ingress.port()));
    let ready = condition(&rouse.describe("slow"), "Ready")["status"].clone();
    assert_eq!(ready, "Unknown", "the instance is still starting");
    // A request sent now waits for the instance rather than failing.
    assert_eq!(rouse.get("slow", "/").status, 200);
}

#[test]
fn list_shows_services_in_a_table_and_as_knative_objects() {
    let rouse = Rouse::start();
    rouse.deploy("one", HELLO, &[]);
    rouse.deploy("two", HELLO, &[]);
    let table = rouse.cli_ok(&["list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("URL"), "{table}");
    assert!(
        lines[1].starts_with("one ") && lines[1].contains("True") && lines[1].contains("1/1"),
        "{table}"
    );
    assert!(lines[2].starts_with("two "), "{table}");
    let json: serde_json::Value = serde_json::from_str(&rouse.cli_ok(&["list", "-o", "json"])).unwrap();
    let names: Vec<&str> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["one", "two"]);
    assert!(rouse.cli_ok(&["list", "-o", "yaml"]).contains("kind: ServiceList"));
    // For scripts: only the names.
    assert_eq!(rouse.cli_ok(&["list", "-o", "name"]), "one\ntwo\n");
    assert_eq!(rouse.cli_ok(&["describe", "two", "-o", "name"]), "two\n");
    assert_eq!(rouse.cli_ok(&["revisions", "one", "-o", "name"]), "one-00001\n");
}

#[test]
fn delete_removes_every_container_before_returning() {
    let rouse = Rouse::start();
    rouse.deploy("gone", HELLO, &["--scale-init", "2"]);
    assert_eq!(rouse.running("gone").len(), 2);
    rouse.cli_ok(&["delete", "gone"]);
    assert!(
        rouse.containers().is_empty(),
        "containers left after delete: {:?}",
        rouse.containers()
    );
    assert_eq!(rouse.get("gone", "/").status, 404);
    let again = rouse.cli(&["delete", "gone"]);
    assert!(
        !again.status.success() && again.stderr.contains("not found"),
        "{}",
        again.stderr
    );
    let describe = rouse.cli(&["describe", "gone"]);
    assert!(
        !describe.status.success() && describe.stderr.contains("'gone' not found"),
        "{}",
        describe.stderr
    );
}

#[test]
fn logs_show_each_instance_and_follow_new_lines() {
    let rouse = Rouse::start();
    rouse.deploy("talk", SLEEPER, &["--scale-init", "2"]);
    rouse.get("talk", "/first-request");
    let logs = rouse.cli_ok(&["logs", "talk"]);
    let lines: Vec<&str> = logs.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[talk-00001-") && l.contains("listening")),
        "{logs}"
    );
    assert!(lines.iter().any(|l| l.contains("GET /first-request")), "{logs}");
    let prefixes: std::collections::HashSet<&str> = lines.iter().filter_map(|l| l.split(']').next()).collect();
    assert_eq!(prefixes.len(), 2, "both instances, each prefixed: {logs}");

    let mut follow = Command::new(rouse_binary())
        .args(["logs", "talk", "-f", "--home"])
        .arg(rouse.home())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("GET /while-following"))
    });
    // The request that writes the awaited line is sent until the follower sees it.
    eventually("logs -f to show a new line", Duration::from_secs(20), || {
        rouse.get("talk", "/while-following");
        reader.is_finished().then_some(())
    });
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(reader.join().unwrap().is_some());
}

#[test]
fn containers_follow_the_contract() {
    let rouse = Rouse::start();
    rouse.deploy("contract", SLEEPER, &["--port", "9090", "--env", "EXTRA=yes"]);
    let env = rouse.get("contract", "/env").text();
    for expected in [
        "PORT=9090",
        "K_SERVICE=contract",
        "K_CONFIGURATION=contract",
        "K_REVISION=contract-00001",
        "EXTRA=yes",
    ] {
        assert!(env.lines().any(|l| l == expected), "missing {expected} in:\n{env}");
    }
    let container = &rouse.running("contract")[0];
    let inspect = docker_inspect(&container.id);
    let labels = &inspect["Config"]["Labels"];
    assert_eq!(labels["rouse.managed"], "true");
    assert_eq!(labels["rouse.home"], rouse.home_id());
    assert_eq!(labels["rouse.service"], "contract");
    assert_eq!(labels["rouse.revision"], "contract-00001");
    assert_eq!(inspect["HostConfig"]["Init"], true, "Docker's init is PID 1");
    assert_eq!(inspect["HostConfig"]["Privileged"], false);
    assert_ne!(inspect["HostConfig"]["NetworkMode"], "host");
    let bindings = &inspect["HostConfig"]["PortBindings"]["9090/tcp"][0];
    assert_eq!(bindings["HostIp"], "127.0.0.1", "published on loopback only");
}

#[test]
fn crashed_instance_is_restarted_and_the_crash_shows_in_describe() {
    let rouse = Rouse::start_with_config("[instances]\ncrash-backoff = \"200ms\"\n");
    rouse.deploy("crashy", SLEEPER, &[]);
    let first = rouse.running("crashy")[0].id.clone();
    assert_eq!(rouse.get("crashy", "/exit?code=3").status, 200);
    let replacement = eventually("a replacement instance", Duration::from_secs(30), || {
        let running = rouse.running("crashy");
        running.iter().find(|c| c.id != first).map(|c| c.id.clone())
    });
    assert_ne!(replacement, first);
    eventually("the service to answer again", Duration::from_secs(30), || {
        (rouse.get("crashy", "/").status == 200).then_some(())
    });
    let human = rouse.cli_ok(&["describe", "crashy"]);
    assert!(human.contains("Last crash: ContainerExited, exit code 3"), "{human}");
    assert!(
        human.contains("exiting with code 3"),
        "the last log lines are shown:\n{human}"
    );
    // The crashed container itself does not linger.
    assert!(!rouse.containers().iter().any(|c| c.id == first));
}

// === bad input: clear one-line errors, non-zero exit, nothing created ===

fn assert_refused(rouse: &Rouse, args: &[&str], expected: &[&str]) {
    let run = rouse.cli(args);
    assert!(!run.status.success(), "rouse {args:?} should fail");
    assert!(run.stdout.is_empty(), "nothing on stdout: {}", run.stdout);
    let first = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {}", run.stderr));
    for part in expected {
        assert!(first.contains(part), "{first:?} should mention {part:?}");
    }
    assert!(
        rouse.cli_ok(&["list", "-o", "json"]).contains("\"items\": []"),
        "nothing created by {args:?}"
    );
    assert!(rouse.containers().is_empty(), "no container created by {args:?}");
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let rouse = Rouse::start();
    assert_refused(
        &rouse,
        &["deploy", "Hello", "--image", HELLO],
        &["invalid service name 'Hello'", "lowercase DNS label"],
    );
    assert_refused(
        &rouse,
        &["deploy", &"a".repeat(64), "--image", HELLO],
        &["at most 63 characters"],
    );
    assert_refused(&rouse, &["deploy", "1st", "--image", HELLO], &["'1st'"]);
    assert_refused(
        &rouse,
        &[
            "deploy",
            "x",
            "--image",
            "rouse-samples/missing:latest",
            "--pull",
            "never",
        ],
        &["not in the local Docker", "docker build", "docker images"],
    );
    // Pulled by default; no registry answers for it on this machine, or it has no such image.
    assert_refused(
        &rouse,
        &["deploy", "x", "--image", "rouse-samples/missing:latest"],
        &["cannot pull 'rouse-samples/missing:latest'"],
    );
    assert_refused(
        &rouse,
        &["deploy", "x", "--image", HELLO, "--env", "NOEQUALS"],
        &["--env 'NOEQUALS'", "NAME=VALUE"],
    );
    assert_refused(
        &rouse,
        &["deploy", "x", "--image", HELLO, "--env", "PORT=1"],
        &["--env 'PORT'"],
    );
    assert_refused(
        &rouse,
        &["deploy", "x", "--image", HELLO, "--port", "0"],
        &["--port '0'", "1 and 65535"],
    );
    assert_refused(
        &rouse,
        &["deploy", "x", "--image", HELLO, "--port", "70000"],
        &["--port '70000'"],
    );
    assert_refused(
        &rouse,
        &["deploy", "x", "--image", HELLO, "--timeout", "601"],
        &["--timeout"],
    );
}

#[test]
fn a_container_that_never_gets_ready_fails_the_deploy_and_leaves_nothing() {
    let rouse = Rouse::start();
    let run = rouse.cli(&[
        "deploy",
        "deaf",
        "--image",
        SLEEPER,
        "--env",
        "LISTEN_PORT=9999",
        "--wait-timeout",
        "3",
    ]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("did not become ready within 3s"), "{}", run.stderr);
    assert!(
        run.stderr.contains("listening on 0.0.0.0:9999"),
        "the container's last log lines: {}",
        run.stderr
    );
    assert!(rouse.cli_ok(&["list", "-o", "json"]).contains("\"items\": []"));
    assert!(rouse.containers().is_empty(), "{:?}", rouse.containers());

    let crash = rouse.cli(&["deploy", "crash", "--image", SLEEPER, "--env", "FAIL_ON_START=1"]);
    assert!(!crash.status.success());
    assert!(
        crash.stderr.contains("exited with code 1") && crash.stderr.contains("failing on purpose"),
        "{}",
        crash.stderr
    );
    assert!(rouse.containers().is_empty(), "{:?}", rouse.containers());
}

#[test]
fn a_failed_update_keeps_the_previous_revision_serving() {
    let rouse = Rouse::start();
    rouse.deploy("steady", HELLO, &["--env", "TARGET=v1"]);
    let run = rouse.cli(&["deploy", "steady", "--image", SLEEPER, "--env", "FAIL_ON_START=1"]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("keeps serving"), "{}", run.stderr);
    assert_eq!(rouse.get("steady", "/").text(), "Hello v1 from steady-00001!\n");
    let service = rouse.describe("steady");
    assert_eq!(service["status"]["latestReadyRevisionName"], "steady-00001");
    assert_eq!(service["spec"]["template"]["spec"]["containers"][0]["image"], HELLO);
}

#[test]
fn delete_lets_in_flight_requests_finish_then_stops_with_sigterm() {
    let rouse = Rouse::start();
    rouse.deploy("busy", SLEEPER, &[]);
    let container = rouse.running("busy")[0].id.clone();
    let slow = std::thread::scope(|scope| {
        let request = scope.spawn(|| rouse.get("busy", "/?ms=1500"));
        std::thread::sleep(Duration::from_millis(300));
        let started = tokio::time::Instant::now();
        rouse.cli_ok(&["delete", "busy"]);
        let took = started.elapsed();
        (request.join().unwrap(), took)
    });
    assert_eq!(slow.0.status, 200, "the in-flight request completes: {}", slow.0.text());
    assert!(
        slow.1 < Duration::from_secs(8),
        "SIGTERM, not the SIGKILL deadline, ended it: {:?}",
        slow.1
    );
    assert!(
        !rouse.containers().iter().any(|c| c.id == container),
        "removed before delete returned"
    );
}

/// `rouse deploy web ARGS` fails, saying `expected`.
#[track_caller]
fn redeploy_refused(rouse: &Rouse, args: &[&str], expected: &str) {
    let mut all = vec!["deploy", "web"];
    all.extend(args);
    let run = rouse.cli(&all);
    assert!(
        !run.status.success() && run.stderr.contains(expected),
        "{all:?}: {}",
        run.stderr
    );
}

/// `rouse deploy NAME` on an existing service changes only what its flags name, as
/// `kn service update` does: the rest of the template, the image's pin included, stays.
#[test]
fn a_redeploy_changes_only_what_its_flags_name() {
    let rouse = Rouse::start();
    rouse.deploy(
        "web",
        rouse_tests::SLEEPER,
        &[
            "--env",
            "A=1",
            "--env",
            "B=2",
            "--concurrency-limit",
            "7",
            "--scale-max",
            "3",
            "--timeout",
            "42",
            "--sink",
            "http://127.0.0.1:9/",
            "--ce-override",
            "team=core",
        ],
    );
    let env = |rouse: &Rouse| rouse.get("web", "/env").text();
    let spec = |rouse: &Rouse| rouse.describe("web")["spec"]["template"].clone();

    // No --image: the service keeps its own; one env var added, the rest kept.
    let run = rouse.cli(&["deploy", "web", "--env", "C=3"]);
    assert!(run.status.success(), "{}", run.stderr);
    let now = env(&rouse);
    assert!(
        now.contains("A=1\n") && now.contains("B=2\n") && now.contains("C=3\n"),
        "{now}"
    );
    let template = spec(&rouse);
    assert_eq!(template["spec"]["containerConcurrency"], 7);
    assert_eq!(template["spec"]["timeoutSeconds"], 42);
    assert_eq!(
        template["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"],
        "3"
    );
    assert!(
        now.contains("K_CE_OVERRIDES={\"extensions\":{\"team\":\"core\"}}"),
        "{now}"
    );
    assert!(now.contains("K_SINK="), "the sink is kept: {now}");

    // Replaced and removed; an override removed.
    let run = rouse.cli(&[
        "deploy",
        "web",
        "--env",
        "A=one",
        "--env",
        "B-",
        "--ce-override",
        "team-",
    ]);
    assert!(run.status.success(), "{}", run.stderr);
    let now = env(&rouse);
    assert!(
        now.contains("A=one\n") && !now.contains("B=2") && now.contains("C=3\n"),
        "{now}"
    );
    assert!(!now.contains("K_CE_OVERRIDES") && now.contains("K_SINK="), "{now}");
    assert_eq!(spec(&rouse)["spec"]["containerConcurrency"], 7);

    // An env file, then --env over it.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "# settings\nD=4\n\nE=five words\nA=from-file\n").unwrap();
    let path = file.path().to_str().unwrap();
    let run = rouse.cli(&["deploy", "web", "--env-file", path, "--env", "A=one"]);
    assert!(run.status.success(), "{}", run.stderr);
    let now = env(&rouse);
    assert!(
        now.contains("D=4\n") && now.contains("E=five words\n") && now.contains("A=one\n"),
        "{now}"
    );
    std::fs::write(file.path(), "D=4\nnot a pair\n").unwrap();
    let run = rouse.cli(&["deploy", "web", "--env-file", path]);
    assert!(
        !run.status.success() && run.stderr.contains(":2': 'not a pair' is not NAME=VALUE"),
        "{}",
        run.stderr
    );
    let run = rouse.cli(&["deploy", "web", "--env", "D-", "--env", "E-"]);
    assert!(run.status.success(), "{}", run.stderr);

    // The sink removed, then set again.
    let run = rouse.cli(&["deploy", "web", "--sink", ""]);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(!env(&rouse).contains("K_SINK="), "{}", env(&rouse));
    let run = rouse.cli(&["deploy", "web", "--sink", "http://127.0.0.1:9/"]);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(env(&rouse).contains("K_SINK=http://127.0.0.1:9/"), "{}", env(&rouse));

    // Nothing named, nothing changed: no new revision (two more than before: the sink).
    let run = rouse.cli(&["deploy", "web"]);
    assert!(
        run.status.success() && run.stderr.contains("no new revision"),
        "{}",
        run.stderr
    );
    assert_eq!(
        rouse.describe("web")["status"]["latestCreatedRevisionName"],
        "web-00007"
    );

    // Bad edits are refused, naming the flag; nothing changes.
    for (args, expected) in [
        (vec!["--env", "B-"], "--env 'B-': removes B, which is not set"),
        (vec!["--ce-override", "nope-"], "removes nope, which is not set"),
    ] {
        redeploy_refused(&rouse, &args, expected);
    }
    let run = rouse.cli(&["deploy", "fresh", "--env", "A=1"]);
    assert!(
        !run.status.success() && run.stderr.contains("--image"),
        "{}",
        run.stderr
    );
    assert_eq!(
        rouse.describe("web")["status"]["latestCreatedRevisionName"],
        "web-00007"
    );

    // describe says what each revision changed against the one before.
    let human = rouse.cli_ok(&["describe", "web"]);
    assert!(human.contains("    Changed: env[C] = 3 (added)\n"), "{human}");
    assert!(
        human.contains("    Changed: env[A] 1 → one; ce_overrides.team removed; env[B] removed\n"),
        "{human}"
    );

    // An annotation removed goes back to the default.
    let run = rouse.cli(&["deploy", "web", "--annotation", "autoscaling.knative.dev/max-scale-"]);
    assert!(run.status.success(), "{}", run.stderr);
    let annotations = spec(&rouse)["metadata"]["annotations"].clone();
    assert_eq!(
        annotations["autoscaling.knative.dev/max-scale"], "0",
        "the default: unlimited; {annotations}"
    );
    assert_eq!(spec(&rouse)["spec"]["containerConcurrency"], 7, "the rest stays");
}

/// kn's everyday flags: limits and requests reach Docker as YAML's do, the command and its
/// arguments replace the image's, labels and a readiness probe are set and unset.
#[test]
fn kn_flags_set_limits_command_labels_and_probes() {
    let rouse = Rouse::start();
    let run = rouse.cli(&[
        "deploy",
        "web",
        "--image",
        rouse_tests::SLEEPER,
        "--limit",
        "cpu=500m,memory=64Mi",
        "--request",
        "cpu=250m",
        "--request",
        "memory=32Mi",
        "--label",
        "team=core",
        "--probe-readiness",
        "http:::/healthz",
        "--probe-readiness-opts",
        "periodSeconds=1",
    ]);
    assert!(run.status.success(), "{}", run.stderr);
    let container = rouse.running("web").remove(0);
    let host = rouse_tests::docker_inspect(&container.id)["HostConfig"].clone();
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(host["Memory"], 64 * 1024 * 1024);
    assert_eq!(host["CpuShares"], 256);
    assert_eq!(host["MemoryReservation"], 32 * 1024 * 1024);
    let template = rouse.describe("web")["spec"]["template"].clone();
    assert_eq!(template["metadata"]["labels"]["team"], "core");
    let probe = &template["spec"]["containers"][0]["readinessProbe"];
    assert_eq!(probe["httpGet"]["path"], "/healthz");
    assert_eq!(probe["periodSeconds"], 1);

    // The command and its arguments: the sleeper's own binary, listening where told.
    let run = rouse.cli(&[
        "deploy",
        "web",
        "--cmd",
        "/sleeper",
        "--arg",
        "--ignored",
        "--label",
        "team-",
        "--limit",
        "cpu-",
    ]);
    assert!(run.status.success(), "{}", run.stderr);
    let container = rouse
        .running("web")
        .into_iter()
        .find(|c| c.name.contains("web-00002"))
        .expect("web-00002");
    let config = rouse_tests::docker_inspect(&container.id)["Config"].clone();
    assert_eq!(config["Entrypoint"], serde_json::json!(["/sleeper"]));
    assert_eq!(
        (config["User"].as_str(), config["WorkingDir"].as_str()),
        (Some(""), Some(""))
    );
    assert_eq!(config["Cmd"], serde_json::json!(["--ignored"]));
    let template = rouse.describe("web")["spec"]["template"].clone();
    assert!(template["metadata"]["labels"].get("team").is_none(), "{template}");
    let host = rouse_tests::docker_inspect(&container.id)["HostConfig"].clone();
    assert_eq!(host["NanoCpus"], 0, "the cpu limit was removed");
    assert_eq!(host["Memory"], 64 * 1024 * 1024, "the memory limit stays");

    // The user and the directory the command starts in, and what describe -o json says.
    let run = rouse.cli(&["deploy", "web", "--user", "1000", "--working-dir", "/tmp"]);
    assert!(run.status.success(), "{}", run.stderr);
    let container = rouse
        .running("web")
        .into_iter()
        .find(|c| c.name.contains("web-00003"))
        .expect("web-00003");
    let config = rouse_tests::docker_inspect(&container.id)["Config"].clone();
    assert_eq!(
        (config["User"].as_str(), config["WorkingDir"].as_str()),
        (Some("1000"), Some("/tmp"))
    );
    let spec = &rouse.describe("web")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        (
            spec["securityContext"]["runAsUser"].as_u64(),
            spec["workingDir"].as_str()
        ),
        (Some(1000), Some("/tmp"))
    );

    for (args, expected) in [
        (vec!["--user", "root"], "--user 'root': must be a numeric user id"),
        (
            vec!["--working-dir", "tmp"],
            "--working-dir 'tmp': must be an absolute path",
        ),
        (
            vec!["--limit", "cpu=lots"],
            "invalid --limit 'lots': is not a CPU quantity",
        ),
        (vec!["--limit", "gpu=1"], "'gpu' is not a resource"),
        (vec!["--probe-readiness", "udp::53"], "unknown probe type 'udp'"),
        (
            vec!["--probe-readiness", "http::9999:/healthz"],
            "must be the container's (8080)",
        ),
        (
            vec!["--probe-readiness-opts", "periodSeconds=x"],
            "--probe-readiness-opts",
        ),
        (vec!["--label", "nope-"], "removes nope, which is not set"),
    ] {
        redeploy_refused(&rouse, &args, expected);
    }
    assert_eq!(
        rouse.describe("web")["status"]["latestCreatedRevisionName"],
        "web-00003"
    );
}
