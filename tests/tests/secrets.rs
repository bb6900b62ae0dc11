//! Secrets and config maps end to end: made with the CLI and with Knative/Kubernetes YAML,
//! read by real containers as variables, sealed at rest, and never printed.

use rouse_tests::{Rouse, SLEEPER};

/// The value no output may ever show.
const PASSWORD: &str = "hunter2-s3cr3t";

/// The `NAME=VALUE` lines a sleeper instance of `service` has in its environment.
fn env_of(rouse: &Rouse, service: &str) -> String {
    let reply = rouse.get(service, "/env");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// Asserts that `text` (output of `what`) has no secret value in it, in any spelling.
fn no_secret_in(what: &str, text: &str) {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(PASSWORD);
    assert!(
        !text.contains(PASSWORD) && !text.contains(&encoded),
        "{what} shows the secret's value:\n{text}"
    );
}

#[test]
fn a_secret_and_a_config_map_reach_instances_as_variables_and_the_secret_is_never_printed() {
    let rouse = Rouse::start();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("app.env");
    std::fs::write(&env_file, "# app settings\nMODE=fast\nLEVEL=3\n").unwrap();
    let created = rouse.cli(&[
        "secret",
        "create",
        "db",
        "--from-literal",
        &format!("password={PASSWORD}"),
        "--from-literal",
        "user=admin",
    ]);
    assert!(created.status.success(), "{}", created.stderr);
    assert!(
        created.stderr.contains("created with 2 keys (password, user)"),
        "{}",
        created.stderr
    );
    rouse.cli_ok(&[
        "configmap",
        "create",
        "app",
        "--from-env-file",
        env_file.to_str().unwrap(),
    ]);
    let again = rouse.cli(&["secret", "create", "db", "--from-literal", "a=b"]);
    assert!(!again.status.success());
    assert!(
        again.stderr.contains("already exists") && again.stderr.contains("rouse secret update"),
        "{}",
        again.stderr
    );

    rouse.deploy(
        "web",
        SLEEPER,
        &[
            "--env-value-from",
            "DB_PASSWORD=secret:db:password",
            "--env-from",
            "config-map:app",
            "--env",
            "LEVEL=9",
        ],
    );
    let env = env_of(&rouse, "web");
    assert!(env.contains(&format!("DB_PASSWORD={PASSWORD}\n")), "{env}");
    assert!(env.contains("MODE=fast\n"), "{env}");
    assert!(
        env.contains("LEVEL=9\n"),
        "--env wins over --env-from, as env wins over envFrom: {env}"
    );

    // Everything a user can read about the secret, and about the service that uses it.
    let mut printed = Vec::new();
    for args in [
        vec!["secret", "describe", "db"],
        vec!["secret", "describe", "db", "-o", "json"],
        vec!["secret", "describe", "db", "-o", "yaml"],
        vec!["secret", "list"],
        vec!["secret", "list", "-o", "yaml"],
        vec!["describe", "web"],
        vec!["describe", "web", "-o", "yaml"],
        vec!["revisions", "web", "-o", "yaml"],
    ] {
        let run = rouse.cli(&args);
        assert!(run.status.success(), "{args:?}: {}", run.stderr);
        no_secret_in(
            &format!("rouse {}", args.join(" ")),
            &format!("{}{}", run.stdout, run.stderr),
        );
        printed.push(run.stdout);
    }
    assert!(
        printed[0].contains("password  14 bytes") && printed[0].contains("user  5 bytes"),
        "{}",
        printed[0]
    );
    let metrics = rouse.request_to_api_metrics();
    no_secret_in("/metrics", &metrics);
    // Keys and sizes, by name: 14 bytes of password and 5 of user.
    assert!(
        metrics.contains(r#"rouse_data_keys{kind="secret",name="db"} 2"#)
            && metrics.contains(r#"rouse_data_bytes{kind="secret",name="db"} 19"#),
        "{metrics}"
    );
    no_secret_in("the daemon's log", &rouse.log());
    // At rest it is sealed: the store file holds no value, the key is kept 0600.
    let store = std::fs::read(rouse.home().join("state.redb")).unwrap();
    no_secret_in("state.redb", &String::from_utf8_lossy(&store));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(rouse.home().join("secret.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // A changed secret reaches new instances; --refresh restarts the service on it.
    rouse.cli_ok(&["secret", "update", "db", "--from-literal", "password=rotated"]);
    let refreshed = rouse.cli(&["deploy", "web", "--refresh"]);
    assert!(refreshed.status.success(), "{}", refreshed.stderr);
    assert_eq!(rouse.describe("web")["status"]["latestReadyRevisionName"], "web-00002");
    rouse_tests::eventually(
        "the refreshed revision serves",
        std::time::Duration::from_secs(20),
        || env_of(&rouse, "web").contains("DB_PASSWORD=rotated\n").then_some(()),
    );

    // What does not exist fails the deploy, by name.
    for (flag, named) in [
        ("X=secret:nope:password", "no secret 'nope' exists"),
        ("X=secret:db:passwd", "has no key 'passwd'"),
        ("X=config-map:gone:k", "no config map 'gone' exists"),
    ] {
        let run = rouse.cli(&["deploy", "other", "--image", SLEEPER, "--env-value-from", flag]);
        assert!(!run.status.success(), "{flag} deployed");
        assert!(run.stderr.contains(named), "{flag}: {}", run.stderr);
    }
    let run = rouse.cli(&["deploy", "other", "--image", SLEEPER, "--env-from", "secret:nope"]);
    assert!(
        !run.status.success() && run.stderr.contains("no secret 'nope'"),
        "{}",
        run.stderr
    );
    let bad = rouse.cli(&[
        "deploy",
        "other",
        "--image",
        SLEEPER,
        "--env-value-from",
        "X=vault:db:k",
    ]);
    assert!(
        !bad.status.success() && bad.stderr.contains("--env-value-from"),
        "{}",
        bad.stderr
    );

    rouse.cli_ok(&["delete", "web"]);
    rouse.cli_ok(&["secret", "delete", "db"]);
    rouse.cli_ok(&["configmap", "delete", "app"]);
    assert!(rouse.cli_ok(&["secret", "list", "-o", "name"]).trim().is_empty());
    let gone = rouse.cli(&["secret", "describe", "db"]);
    assert!(
        !gone.status.success() && gone.stderr.contains("secret 'db' not found"),
        "{}",
        gone.stderr
    );
}

#[test]
fn knative_yaml_declares_secrets_config_maps_and_the_service_that_reads_them() {
    let rouse = Rouse::start();
    let manifest = format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: db
type: Opaque
data:
  user: YWRtaW4=
stringData:
  password: {PASSWORD}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: app
  labels:
    team: shop
data:
  MODE: fast
  greeting.txt: hello
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: shop
spec:
  template:
    spec:
      containers:
        - image: {SLEEPER}
          env:
            - name: DB_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: db
                  key: password
            - name: MODE_FROM_MAP
              valueFrom:
                configMapKeyRef:
                  name: app
                  key: MODE
            - name: NOT_THERE
              valueFrom:
                secretKeyRef:
                  name: absent
                  key: k
                  optional: true
          envFrom:
            - prefix: DB_
              secretRef:
                name: db
"#
    );
    let applied = rouse.apply(&manifest);
    assert!(
        applied.contains("Secret db created")
            && applied.contains("ConfigMap app created")
            && applied.contains("Service shop created"),
        "{applied}"
    );
    no_secret_in("rouse apply", &applied);
    let env = env_of(&rouse, "shop");
    for line in [
        format!("DB_PASSWORD={PASSWORD}"),
        "DB_user=admin".to_string(),
        "MODE_FROM_MAP=fast".to_string(),
    ] {
        assert!(env.contains(&format!("{line}\n")), "{line} missing: {env}");
    }
    assert!(
        !env.contains("NOT_THERE"),
        "an optional reference to nothing sets nothing: {env}"
    );
    assert!(rouse.apply(&manifest).contains("Secret db unchanged"));

    // The service and the config map print back as YAML that applies unchanged.
    let service = rouse.cli_ok(&["describe", "shop", "-o", "yaml"]);
    let config_map = rouse.cli_ok(&["configmap", "describe", "app", "-o", "yaml"]);
    assert!(
        config_map.contains("greeting.txt: hello") && config_map.contains("team: shop"),
        "{config_map}"
    );
    let again = rouse.apply(&format!("{service}---\n{config_map}"));
    assert!(
        again.contains("Service shop unchanged") && again.contains("ConfigMap app unchanged"),
        "{again}"
    );

    // A reference to what the file does not declare and the daemon does not have fails
    // the whole apply, by name.
    let broken = manifest.replace(
        "name: app\n                  key: MODE",
        "name: app\n                  key: MISSING",
    );
    let run = rouse.cli_input(&["apply", "-f", "-"], &broken);
    assert!(!run.status.success());
    assert!(
        run.stderr.contains("has no key 'MISSING'") && run.stderr.contains("configMapKeyRef"),
        "{}",
        run.stderr
    );

    let deleted = rouse.cli_input(&["delete", "-f", "-"], &manifest);
    assert!(deleted.status.success(), "{}", deleted.stderr);
    assert!(rouse.cli_ok(&["configmap", "list", "-o", "name"]).trim().is_empty());
    assert!(rouse.cli_ok(&["secret", "list", "-o", "name"]).trim().is_empty());
}
