//! Containers and scale: what every instance is confined to (no-new-privileges, NET_RAW
//! dropped, a PIDs limit, rotated json-file logs, a default memory limit), each set otherwise
//! in `rouse.toml`, and the host-wide `[instances] max-instances`, refused at deploy time when
//! a template asks for more and holding across services at run time.

use std::time::Duration;

use rouse_tests::{HELLO, Rouse, docker_inspect, eventually};
use serde_json::json;

/// The `HostConfig` of a running container of `service`.
fn host_config(rouse: &Rouse, service: &str) -> serde_json::Value {
    let container = rouse
        .running(service)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no running container of {service}"));
    docker_inspect(&container.id)["HostConfig"].clone()
}

/// Whether `list` (a JSON array of capability names) holds `cap`, as Docker spells it
/// (`NET_RAW`, or `CAP_NET_RAW` on engines that normalise the names).
fn has_capability(list: &serde_json::Value, cap: &str) -> bool {
    list.as_array()
        .is_some_and(|caps| caps.iter().any(|c| c == cap || *c == format!("CAP_{cap}")))
}

/// The message of condition `kind` in a `describe -o json`.
fn condition_message(service: &serde_json::Value, kind: &str) -> String {
    service["status"]["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == kind))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn instances_are_confined_by_default_and_an_absurd_scale_is_refused() {
    let rouse = Rouse::start();
    rouse.deploy("hello", HELLO, &[]);
    assert_eq!(
        rouse.get("hello", "/").status,
        200,
        "the sample serves under the limits"
    );
    let host = host_config(&rouse, "hello");
    assert_eq!(host["SecurityOpt"], json!(["no-new-privileges:true"]), "{host}");
    assert!(has_capability(&host["CapDrop"], "NET_RAW"), "{}", host["CapDrop"]);
    assert_eq!(host["PidsLimit"], 4096);
    assert_eq!(host["LogConfig"]["Type"], "json-file");
    assert_eq!(
        host["LogConfig"]["Config"],
        json!({"max-size": "10485760", "max-file": "3"})
    );
    assert_eq!(host["Memory"], 512 * 1024 * 1024, "the default memory limit");
    // The logs are still read through the Engine API.
    assert!(rouse.cli_ok(&["logs", "hello"]).contains("hello-00001"));

    // The default cap is derived from the host's memory, and named as such.
    let run = rouse.cli(&["deploy", "x", "--image", HELLO, "--scale-init", "100000"]);
    assert!(!run.status.success(), "an initial scale of 100000 is refused");
    for part in [
        "annotations[autoscaling.knative.dev/initial-scale] '100000'",
        "[instances] max-instances = ",
        "not set in rouse.toml",
    ] {
        assert!(run.stderr.contains(part), "{part:?} missing in: {}", run.stderr);
    }
    assert!(
        !rouse.cli(&["describe", "x"]).status.success(),
        "no service x was created"
    );
    assert!(rouse.running("x").is_empty(), "nothing started for x");
}

#[test]
fn a_floor_or_start_beyond_max_instances_is_refused_naming_the_field_and_the_key() {
    let rouse = Rouse::start_with_config("[instances]\nmax-instances = 3\n");
    for (flag, field) in [
        ("--scale-init", "autoscaling.knative.dev/initial-scale"),
        ("--scale-min", "autoscaling.knative.dev/min-scale"),
    ] {
        let run = rouse.cli(&["deploy", "x", "--image", HELLO, flag, "4"]);
        assert!(!run.status.success(), "{flag} 4 over a cap of 3 is refused");
        assert!(
            run.stderr.contains(field)
                && run
                    .stderr
                    .contains("[instances] max-instances = 3 in rouse.toml; ask for at most 3"),
            "{flag}: {}",
            run.stderr
        );
    }
    let yaml = r#"
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: floor
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/min-scale: "5"
    spec:
      containers:
        - image: rouse-samples/hello:latest
"#;
    let run = rouse.cli_input(&["apply", "-f", "-"], yaml);
    assert!(!run.status.success(), "apply of min-scale 5 over a cap of 3 is refused");
    assert!(
        run.stderr
            .contains("spec.template.metadata.annotations[autoscaling.knative.dev/min-scale]")
            && run.stderr.contains("[instances] max-instances = 3 in rouse.toml"),
        "{}",
        run.stderr
    );
    assert!(rouse.containers().is_empty(), "nothing was created");
    // At the cap itself, it deploys.
    rouse.deploy("fits", HELLO, &["--scale-init", "3"]);
    eventually("three instances", Duration::from_secs(30), || {
        (rouse.running("fits").len() == 3).then_some(())
    });
}

#[test]
fn max_instances_holds_across_services_and_every_limit_is_set_in_rouse_toml() {
    let rouse = Rouse::start_with_config(
        "[instances]\nmax-instances = 2\npids-limit = 64\nlog-max-size = \"1Mi\"\nlog-max-files = 2\n\
         default-memory-limit = \"64Mi\"\nno-new-privileges = false\ndrop-capabilities = [\"NET_RAW\", \"MKNOD\"]\n",
    );
    rouse.deploy("one", HELLO, &["--scale-init", "2"]);
    eventually("one's two instances", Duration::from_secs(30), || {
        (rouse.running("one").len() == 2).then_some(())
    });
    rouse.deploy("two", HELLO, &["--scale-init", "2", "--no-wait"]);
    // For a while (several resync passes), the cap holds: two's starts wait for room.
    let until = std::time::SystemTime::now() + Duration::from_secs(6);
    while std::time::SystemTime::now() < until {
        let containers = rouse.containers();
        assert!(containers.len() <= 2, "over the cap: {containers:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(rouse.running("two").is_empty());
    // Said once, not at every pass, naming the limit and its key; and in two's status.
    let log = rouse.log();
    assert_eq!(
        log.matches("the host's instance cap is reached").count(),
        1,
        "logged once:\n{log}"
    );
    assert!(log.contains("[instances] max-instances = 2 in rouse.toml"), "{log}");
    let message = condition_message(&rouse.describe("two"), "ConfigurationsReady");
    assert!(
        message.contains("waiting for room") && message.contains("[instances] max-instances = 2"),
        "{message}"
    );
    // A deploy that waits at the cap says so when its time runs out, and leaves nothing.
    let run = rouse.cli(&["deploy", "three", "--image", HELLO, "--wait-timeout", "3"]);
    assert!(!run.status.success());
    assert!(
        run.stderr
            .contains("did not become ready within 3s (--wait-timeout): revision three-00001: waiting for room")
            && run.stderr.contains("[instances] max-instances = 2 in rouse.toml"),
        "{}",
        run.stderr
    );
    assert!(!rouse.cli(&["describe", "three"]).status.success(), "three was removed");
    // The other limits, as rouse.toml set them.
    let host = host_config(&rouse, "one");
    assert!(
        host["SecurityOpt"].is_null() || host["SecurityOpt"] == json!([]),
        "{}",
        host["SecurityOpt"]
    );
    assert!(has_capability(&host["CapDrop"], "NET_RAW") && has_capability(&host["CapDrop"], "MKNOD"));
    assert_eq!(host["PidsLimit"], 64);
    assert_eq!(host["Memory"], 64 * 1024 * 1024);
    assert_eq!(
        host["LogConfig"]["Config"],
        json!({"max-size": "1048576", "max-file": "2"})
    );
    assert_eq!(rouse.get("one", "/").status, 200);
}
