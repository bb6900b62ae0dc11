//! Cluster-local services end to end, with real containers: `rouse deploy --cluster-local` (and
//! Knative's label `networking.knative.dev/visibility: cluster-local`) makes a service answer
//! requests from containers, at the address containers reach the daemon by, and triggers, but
//! never the host's ingress.

use std::time::Duration;

use rouse_tests::{Rouse, SLEEPER, eventually};

/// What `caller`'s container gets back when it sends an event to its sink (`--sink`).
fn emit_from(rouse: &Rouse, caller: &str) -> String {
    rouse
        .request(http::Method::POST, caller, "/emit", &[], b"hi".to_vec())
        .text()
}

#[test]
fn a_cluster_local_service_answers_containers_and_triggers_but_not_the_host() {
    let rouse = Rouse::start();
    rouse.deploy("private", SLEEPER, &["--cluster-local"]);
    let from_host = rouse.get("private", "/");
    assert_eq!(from_host.status, 404, "{}", from_host.text());

    // Another service's container reaches it by name, through the daemon.
    rouse.deploy("caller", SLEEPER, &["--sink", "service:private"]);
    let answer = emit_from(&rouse, "caller");
    assert!(answer.starts_with("200\nslept 0 ms"), "{answer}");

    // A trigger delivers to it: the daemon dials services as containers do.
    rouse.cli_ok(&["trigger", "create", "to-private", "--sink", "service:private"]);
    rouse.send_events("default", &["--type", "dev.rouse.test.private"]);
    eventually("the trigger's delivery", Duration::from_secs(20), || {
        let logs = rouse.cli_ok(&["logs", "private"]);
        (logs.matches("POST /").count() >= 2).then_some(())
    });

    // Public again with --cluster-local=false: the label goes, no new revision.
    rouse.deploy("private", SLEEPER, &["--cluster-local=false"]);
    assert_eq!(rouse.get("private", "/").status, 200);
    let described = rouse.describe("private");
    assert_eq!(described["status"]["latestCreatedRevisionName"], "private-00001");
    assert!(
        described["metadata"]["labels"]
            .get("networking.knative.dev/visibility")
            .is_none()
    );
    rouse.deploy("private", SLEEPER, &["--cluster-local"]);
    assert_eq!(rouse.get("private", "/").status, 404);
}

#[test]
fn knative_yaml_makes_a_service_cluster_local_and_prints_it_back() {
    let rouse = Rouse::start();
    let manifest = format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: inner\n  labels:\n    \
         networking.knative.dev/visibility: cluster-local\n    team: core\nspec:\n  template:\n    spec:\n      \
         containers:\n        - image: {SLEEPER}\n"
    );
    assert!(rouse.apply(&manifest).contains("Service inner created"));
    eventually("inner ready", Duration::from_secs(30), || {
        (rouse.describe("inner")["status"]["latestReadyRevisionName"] == "inner-00001").then_some(())
    });
    assert_eq!(rouse.get("inner", "/").status, 404);
    let yaml = rouse.cli_ok(&["describe", "inner", "-o", "yaml"]);
    assert!(
        yaml.contains("networking.knative.dev/visibility: cluster-local"),
        "{yaml}"
    );
    assert!(rouse.apply(&yaml).contains("Service inner unchanged"), "{yaml}");
    // Dropping the label from the file makes it public.
    let public = manifest.replace("    networking.knative.dev/visibility: cluster-local\n", "");
    assert!(rouse.apply(&public).contains("Service inner configured"));
    assert_eq!(rouse.get("inner", "/").status, 200);

    // Anything else under the key is refused by name.
    for (yaml, expected) in [
        (
            manifest.replace("visibility: cluster-local", "visibility: public"),
            "takes only cluster-local",
        ),
        (
            manifest.replace("  labels:\n", "  annotations:\n"),
            "is a label of the service",
        ),
    ] {
        let run = rouse.cli_input(&["apply", "-f", "-"], &yaml);
        assert!(!run.status.success());
        assert!(run.stderr.contains(expected), "{}", run.stderr);
    }
}
