//! `rouse apply -f` and `rouse delete -f` with Knative YAML: the samples from Knative's docs as
//! they are, the fields real manifests carry, round trips, and the bad input refused with the
//! file, document and field named and nothing applied.

use std::path::PathBuf;
use std::time::Duration;

use rouse_tests::{Rouse, docker_inspect, eventually};

fn sample(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../samples/knative")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn share_of(rouse: &Rouse, service: &str, needle: &str, requests: u32) -> f64 {
    let mut hits = 0;
    for _ in 0..requests {
        let reply = rouse.get(service, "/");
        assert_eq!(reply.status, 200, "{}", reply.text());
        if reply.text().contains(needle) {
            hits += 1;
        }
    }
    100.0 * f64::from(hits) / f64::from(requests)
}

#[test]
fn knative_samples_apply_as_they_are() {
    let rouse = Rouse::start();
    let run = rouse.cli(&["apply", "-f", &sample("hello.yaml")]);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains("Service hello created (revision hello-00001)"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stdout.trim(),
        format!("http://hello.localhost:{}", rouse.ingress.port())
    );
    assert_eq!(rouse.get("hello", "/").text(), "Hello World from hello-00001!\n");

    let out = rouse.cli(&["apply", "-f", &sample("hello-v2.yaml")]);
    assert!(
        out.stderr.contains("Service hello configured (revision hello-00002)"),
        "{}",
        out.stderr
    );
    assert_eq!(rouse.get("hello", "/").text(), "Hello Knative from hello-00002!\n");

    // The split keeps the template (no new revision) and halves the traffic.
    let out = rouse.cli(&["apply", "-f", &sample("hello-split.yaml")]);
    assert!(out.stderr.contains("Service hello configured\n"), "{}", out.stderr);
    let share = share_of(&rouse, "hello", "hello-00001", 2000);
    assert!(
        (47.0..=53.0).contains(&share),
        "hello-00001 got {share}%, wanted 50 ± 3"
    );

    // Applying the same file again changes nothing.
    let again = rouse.cli(&["apply", "-f", &sample("hello-split.yaml")]);
    assert!(again.stderr.contains("Service hello unchanged"), "{}", again.stderr);
    assert_eq!(rouse.describe("hello")["metadata"]["generation"], 2);

    let out = rouse.cli(&["apply", "-f", &sample("autoscale.yaml")]);
    assert!(out.status.success(), "{}", out.stderr);
    let annotations = &rouse.describe("autoscale-go")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["autoscaling.knative.dev/target"], "10");

    // delete -f removes what the file declares; a second time it is not found.
    rouse.cli_ok(&["delete", "-f", &sample("autoscale.yaml")]);
    assert!(rouse.running("autoscale-go").is_empty());
    let missing = rouse.cli(&["delete", "-f", &sample("autoscale.yaml")]);
    assert!(!missing.status.success());
    assert!(
        missing.stderr.contains("not found: Service autoscale-go"),
        "{}",
        missing.stderr
    );
    rouse.cli_ok(&["delete", "-f", &sample("autoscale.yaml"), "--ignore-not-found"]);
}

const FULL: &str = r#"
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: shop
  namespace: default
  labels:
    team: payments
    tier: web
spec:
  template:
    metadata:
      name: shop-blue
      annotations:
        autoscaling.knative.dev/min-scale: "1"
    spec:
      containerConcurrency: 20
      timeoutSeconds: 60
      containers:
        - name: app
          image: rouse-samples/sleeper
          args: ["--quiet"]
          ports:
            - name: http1
              containerPort: 9090
          env:
            - name: HEALTHY_AFTER_MS
              value: "1500"
          resources:
            limits:
              cpu: 500m
              memory: 128Mi
            requests:
              cpu: 250m
              memory: 64Mi
          readinessProbe:
            httpGet:
              path: /healthz
            periodSeconds: 1
"#;

#[test]
fn samples_with_secrets_and_config_maps_apply_as_they_are() {
    let rouse = Rouse::start();
    let run = rouse.cli(&["apply", "-f", &sample("secrets-go.yaml")]);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains("Secret google-robot-secret created"),
        "{}",
        run.stderr
    );
    let key = rouse.get("secrets-go", "/file?path=/var/secret/robot.json");
    assert_eq!(key.status, 200, "{}", key.text());
    assert!(key.text().contains("service_account"), "{}", key.text());
    assert!(
        rouse
            .get("secrets-go", "/env")
            .text()
            .contains("GOOGLE_APPLICATION_DEFAULT=/var/secret/robot.json\n")
    );

    let run = rouse.cli(&["apply", "-f", &sample("configmap-env.yaml")]);
    assert!(run.status.success(), "{}", run.stderr);
    let env = rouse.get("configmap-env", "/env").text();
    for line in ["SPECIAL_LEVEL_KEY=very", "SPECIAL_LEVEL=very", "SPECIAL_TYPE=charm"] {
        assert!(env.contains(&format!("{line}\n")), "{line}: {env}");
    }
    assert_eq!(
        rouse.get("configmap-env", "/file?path=/etc/config/SPECIAL_TYPE").text(),
        "charm"
    );
    for file in ["secrets-go.yaml", "configmap-env.yaml"] {
        let deleted = rouse.cli(&["delete", "-f", &sample(file)]);
        assert!(deleted.status.success(), "{}", deleted.stderr);
    }
    assert!(rouse.cli_ok(&["secret", "list", "-o", "name"]).trim().is_empty());
}

#[test]
fn real_manifest_fields_are_honoured_and_round_trip() {
    let rouse = Rouse::start();
    let applied = rouse.apply(FULL);
    assert!(
        applied.contains("Service shop created (revision shop-blue)"),
        "{applied}"
    );
    // The probe on /healthz held readiness until the app said so (503 for 1.5 s).
    let since_start = rouse.get("shop", "/healthz");
    assert_eq!(since_start.status, 200, "routed before its readiness probe passed");

    let containers = rouse.running("shop");
    assert_eq!(containers.len(), 1);
    let inspect = docker_inspect(&containers[0].id);
    let host = &inspect["HostConfig"];
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(host["Memory"], 128 * 1024 * 1024);
    assert_eq!(host["CpuShares"], 256);
    assert_eq!(host["MemoryReservation"], 64 * 1024 * 1024);
    assert_eq!(inspect["Config"]["Cmd"], serde_json::json!(["--quiet"]));

    let human = rouse.cli_ok(&["describe", "shop"]);
    assert!(human.contains("Labels:       team=payments, tier=web"), "{human}");
    assert!(
        human.contains("Readiness:    http-get /healthz delay=0s timeout=1s period=1s #success=1 #failure=3"),
        "{human}"
    );

    // describe -o yaml applies back unchanged, and again after a restart.
    let yaml = rouse.cli_ok(&["describe", "shop", "-o", "yaml"]);
    assert!(yaml.contains("name: shop-blue"), "{yaml}");
    let again = rouse.apply(&yaml);
    assert!(again.contains("Service shop unchanged"), "{again}\n{yaml}");
    let json = rouse.cli_ok(&["describe", "shop", "-o", "json"]);
    assert!(
        rouse.apply(&json).contains("Service shop unchanged"),
        "JSON is YAML too"
    );
    assert_eq!(rouse.describe("shop")["metadata"]["generation"], 1);

    // Labels change without a new revision.
    let relabelled = yaml.replace("tier: web", "tier: api");
    assert!(rouse.apply(&relabelled).contains("Service shop configured\n"));
    let described = rouse.describe("shop");
    assert_eq!(described["metadata"]["labels"]["tier"], "api");
    assert_eq!(described["status"]["latestCreatedRevisionName"], "shop-blue");
}

#[test]
fn traffic_tags_and_rollback_from_yaml() {
    let rouse = Rouse::start();
    let service = |target: &str, name: &str, traffic: &str| {
        format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  template:\n    metadata:\n      name: {name}\n    spec:\n      containers:\n        - image: rouse-samples/hello\n          env:\n            - name: TARGET\n              value: {target}\n{traffic}"
        )
    };
    rouse.apply(&service("v1", "web-one", ""));
    // The new revision is named in its own traffic: it gets a tag, not a share, yet.
    let canary =
        "  traffic:\n    - revisionName: web-one\n      percent: 100\n    - revisionName: web-two\n      tag: canary\n";
    rouse.apply(&service("v2", "web-two", canary));
    assert_eq!(rouse.get("web", "/").text(), "Hello v1 from web-one!\n");
    eventually("the canary URL", Duration::from_secs(10), || {
        (rouse.get("canary-web", "/").text() == "Hello v2 from web-two!\n").then_some(())
    });
    // Promote, then roll back: each takes effect for the next request.
    let promote = "  traffic:\n    - latestRevision: true\n      percent: 100\n";
    rouse.apply(&service("v2", "web-two", promote));
    assert_eq!(rouse.get("web", "/").text(), "Hello v2 from web-two!\n");
    assert_eq!(rouse.get("canary-web", "/").status, 404, "the tag went with the file");
    let rollback = "  traffic:\n    - revisionName: web-one\n      percent: 100\n";
    rouse.apply(&service("v2", "web-two", rollback));
    assert_eq!(rouse.get("web", "/").text(), "Hello v1 from web-one!\n");
}

/// Applies `yaml` expecting failure; returns stderr.
fn refused(rouse: &Rouse, yaml: &str) -> String {
    let run = rouse.cli_input(&["apply", "-f", "-"], yaml);
    assert!(!run.status.success(), "applied:\n{yaml}\n{}", run.stderr);
    assert!(run.stderr.contains("nothing was applied"), "{}", run.stderr);
    run.stderr
}

const GOOD: &str = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: good\nspec:\n  template:\n    spec:\n      containers:\n        - image: rouse-samples/hello\n";

#[test]
fn bad_manifests_are_refused_with_their_place_and_apply_nothing() {
    let rouse = Rouse::start();
    // Every case follows a good document (document 1), which must not be applied either.
    let first = format!("{}---\n", GOOD.replace("good", "first"));
    let with = |extra: &str| format!("{first}{GOOD}{extra}");
    let cases: [(String, &str); 9] = [
        (
            format!("{first}{GOOD}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n"),
            "<stdin>: document 3: kind: Rouse does not know kind 'Pod'",
        ),
        (
            format!(
                "{first}{}",
                GOOD.replace("serving.knative.dev/v1", "serving.knative.dev/v1alpha1")
            ),
            "document 2 (Service good): apiVersion: 'serving.knative.dev/v1alpha1' is not the apiVersion of a Service",
        ),
        (
            with("          lifecycle:\n            preStop: {}\n"),
            "spec.template.spec.containers[0].lifecycle: Rouse does not support the field `lifecycle`",
        ),
        (
            format!("{first}{GOOD}---\nkind: Service\nmetadata: {{name: [\n"),
            "<stdin>: document 3, line 2",
        ),
        (
            with("  traffic:\n    - latestRevision: true\n      percent: 60\n"),
            "document 2 (Service good): spec.traffic: '60' percentages must add up to 100, they add up to 60",
        ),
        (
            with("  traffic:\n    - revisionName: good-00007\n      percent: 100\n"),
            "document 2 (Service good): spec.traffic: 'good-00007' is not a revision of this service",
        ),
        (
            with(
                "  traffic:\n    - latestRevision: true\n      percent: 100\n      tag: a\n    - revisionName: good-00001\n      tag: a\n",
            ),
            "spec.traffic[1].tag: 'a' is given twice",
        ),
        (
            format!(
                "{first}{}",
                GOOD.replace("  name: good\n", "  name: good\n  namespace: prod\n")
            ),
            "metadata.namespace: 'prod' namespaces other than 'default' are not supported yet",
        ),
        (
            format!("{first}{}", GOOD.replace("rouse-samples/hello", "rouse-samples/nope")),
            // Pulled first, and no registry answers for it here.
            "Service good (document 2): cannot pull 'rouse-samples/nope'",
        ),
    ];
    for (yaml, expected) in &cases {
        let stderr = refused(&rouse, yaml);
        assert!(stderr.contains(expected), "wanted {expected:?} in:\n{stderr}");
    }
    let list: serde_json::Value = serde_json::from_str(&rouse.cli_ok(&["list", "-o", "json"])).unwrap();
    assert_eq!(list["items"], serde_json::json!([]), "nothing was applied");

    // A file is named by its path.
    let path = rouse.home().join("bad.yaml");
    std::fs::write(&path, GOOD.replace("image:", "imag:")).unwrap();
    let run = rouse.cli(&["apply", "-f", path.to_str().unwrap()]);
    assert!(!run.status.success());
    let expected = format!("{}: document 1 (Service good), line 9", path.display());
    assert!(
        run.stderr.contains(&expected),
        "wanted {expected:?} in:\n{}",
        run.stderr
    );
    let missing = rouse.cli(&["apply", "-f", "/nonexistent.yaml"]);
    assert!(
        missing.stderr.contains("cannot read /nonexistent.yaml"),
        "{}",
        missing.stderr
    );
}

/// Reserved keys Knative (or Rouse) gives a meaning Rouse does not implement: each is
/// refused by name wherever it is put, never kept and ignored.
const REFUSED_KEYS: [&str; 10] = [
    "serving.knative.dev/progress-deadline",
    "serving.knative.dev/visibility",
    "serving.knative.dev/service",
    "networking.knative.dev/disable-auto-tls",
    "networking.knative.dev/http-option",
    "networking.knative.dev/ingress.class",
    "features.knative.dev/http-full-duplex",
    "features.knative.dev/queueproxy-podinfo",
    "autoscaling.knative.dev/max-scale-up-rate",
    "rouse.dev/nonsense",
];

#[test]
fn every_reserved_key_rouse_does_not_implement_is_refused_by_name() {
    let rouse = Rouse::start();
    let service = |meta: &str, template_meta: &str| {
        format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: keys\n{meta}spec:\n  template:\n\
             {template_meta}    spec:\n      containers:\n        - image: {}\n",
            rouse_tests::HELLO
        )
    };
    for key in REFUSED_KEYS {
        for (place, yaml) in [
            (
                "metadata.annotations",
                service(&format!("  annotations:\n    {key}: x\n"), ""),
            ),
            ("metadata.labels", service(&format!("  labels:\n    {key}: x\n"), "")),
            (
                "spec.template.metadata.annotations",
                service("", &format!("    metadata:\n      annotations:\n        {key}: x\n")),
            ),
            (
                "spec.template.metadata.labels",
                service("", &format!("    metadata:\n      labels:\n        {key}: x\n")),
            ),
        ] {
            let run = rouse.cli_input(&["apply", "-f", "-"], &yaml);
            assert!(!run.status.success(), "{key} at {place} was taken");
            assert!(
                run.stderr.contains(&format!("{place}[{key}]")),
                "{key} at {place}: {}",
                run.stderr
            );
        }
        for flag in ["--annotation", "--label"] {
            let run = rouse.cli(&[
                "deploy",
                "keys",
                "--image",
                rouse_tests::HELLO,
                flag,
                &format!("{key}=x"),
            ]);
            assert!(!run.status.success(), "{flag} {key} was taken");
            assert!(run.stderr.contains(key), "{flag} {key}: {}", run.stderr);
        }
    }
    // The same keys under a prefix of the user's are metadata, kept.
    let kept = service("  annotations:\n    example.com/progress-deadline: x\n", "");
    assert!(rouse.apply(&kept).contains("Service keys created"));
    assert!(rouse.containers().len() <= 1);
}

#[test]
fn a_service_using_all_of_part_two_prints_back_and_applies_unchanged() {
    let rouse = Rouse::start();
    rouse.cli_ok(&["secret", "create", "db", "--from-literal", "password=s3cret"]);
    rouse.cli_ok(&["configmap", "create", "app", "--from-literal", "MODE=fast"]);
    let manifest = format!(
        r#"apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: full
  labels:
    networking.knative.dev/visibility: cluster-local
  annotations:
    serving.knative.dev/rollout-duration: 30s
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/scale-down-delay: 20s
        autoscaling.knative.dev/activation-scale: "2"
        autoscaling.knative.dev/target-burst-capacity: "-1"
    spec:
      containers:
        - image: {sleeper}
          env:
            - name: DB_PASSWORD
              valueFrom:
                secretKeyRef: {{name: db, key: password}}
            - name: OPTIONAL
              valueFrom:
                configMapKeyRef: {{name: missing, key: x, optional: true}}
          envFrom:
            - configMapRef: {{name: app}}
          volumeMounts:
            - {{name: config, mountPath: /etc/app, readOnly: true}}
            - {{name: scratch, mountPath: /scratch}}
            - {{name: data, mountPath: /data}}
          readinessProbe:
            httpGet: {{path: /healthz}}
            periodSeconds: 2
          livenessProbe:
            tcpSocket: {{}}
            failureThreshold: 5
          securityContext:
            runAsUser: 1000
            runAsNonRoot: true
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            capabilities: {{drop: [ALL], add: [NET_BIND_SERVICE]}}
      volumes:
        - name: config
          configMap:
            name: app
            items: [{{key: MODE, path: mode.txt, mode: 0400}}]
        - name: scratch
          emptyDir: {{medium: Memory, sizeLimit: 16Mi}}
        - name: data
          persistentVolumeClaim: {{claimName: full-data}}
"#,
        sleeper = rouse_tests::SLEEPER
    );
    assert!(rouse.apply(&manifest).contains("Service full created"));
    eventually("full ready", Duration::from_secs(30), || {
        (rouse.describe("full")["status"]["latestReadyRevisionName"] == "full-00001").then_some(())
    });
    let yaml = rouse.cli_ok(&["describe", "full", "-o", "yaml"]);
    assert!(!yaml.contains("s3cret"), "{yaml}");
    let again = rouse.apply(&yaml);
    assert!(again.contains("Service full unchanged"), "{again}\n{yaml}");
    let json = rouse.cli_ok(&["describe", "full", "-o", "json"]);
    assert!(rouse.apply(&json).contains("Service full unchanged"));
    assert_eq!(rouse.describe("full")["metadata"]["generation"], 1);
}
