//! Volumes end to end, with real containers: a secret and a config map as read-only files
//! (kept in memory on the host, never printed), a named volume that keeps its files across
//! instances, and an emptyDir that goes with its instance.

use std::process::Command;
use std::time::Duration;

use rouse_tests::{Reply, Rouse, SLEEPER, docker_inspect, eventually};

const PASSWORD: &str = "hunter2-in-a-file";

fn file(rouse: &Rouse, service: &str, path: &str) -> Reply {
    rouse.get(service, &format!("/file?path={path}"))
}

fn write_file(rouse: &Rouse, service: &str, path: &str, body: &str) -> Reply {
    rouse.request(
        http::Method::PUT,
        service,
        &format!("/file?path={path}"),
        &[],
        body.as_bytes().to_vec(),
    )
}

/// The one running instance of `service`: its container's `docker inspect`.
fn inspect_one(rouse: &Rouse, service: &str) -> serde_json::Value {
    let running = rouse.running(service);
    assert_eq!(running.len(), 1, "{running:?}");
    docker_inspect(&running[0].id)
}

#[test]
fn secrets_and_config_maps_mount_as_read_only_files_kept_in_memory() {
    let rouse = Rouse::start();
    rouse.cli_ok(&[
        "secret",
        "create",
        "db",
        "--from-literal",
        &format!("password={PASSWORD}"),
    ]);
    rouse.cli_ok(&[
        "configmap",
        "create",
        "app",
        "--from-literal",
        "config.yaml=level: 3",
        "--from-literal",
        "MODE=fast",
    ]);
    rouse.deploy(
        "web",
        SLEEPER,
        &[
            "--mount",
            "/etc/secrets=secret:db",
            "--mount",
            "/etc/app=config-map:app",
            "--mount",
            "/etc/one.yaml=config-map:app/config.yaml",
        ],
    );
    let password = file(&rouse, "web", "/etc/secrets/password");
    assert_eq!((password.status, password.text().as_str()), (200, PASSWORD));
    assert_eq!(password.headers["x-file-mode"], "0444");
    assert_eq!(rouse.get("web", "/ls?path=/etc/app").text(), "MODE\nconfig.yaml\n");
    assert_eq!(file(&rouse, "web", "/etc/one.yaml").text(), "level: 3");
    let refused = write_file(&rouse, "web", "/etc/secrets/password", "overwritten");
    assert_eq!(refused.status, 500);
    assert!(refused.text().contains("Read-only file system"), "{}", refused.text());

    // On the host: bound read-only from a tmpfs, never from a disk.
    let container = inspect_one(&rouse, "web");
    let binds: Vec<&serde_json::Value> = container["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["Type"] == "bind")
        .collect();
    assert_eq!(binds.len(), 3, "{:#}", container["Mounts"]);
    let instance_dir = std::path::Path::new(binds[0]["Source"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    for bind in &binds {
        assert_eq!(bind["RW"], false);
        assert!(bind["Source"].as_str().unwrap().starts_with("/dev/shm/"), "{bind}");
    }
    let describe = rouse.cli_ok(&["describe", "web", "-o", "yaml"]);
    assert!(!describe.contains(PASSWORD), "{describe}");
    assert!(
        describe.contains("secretName: db") && describe.contains("mountPath: /etc/secrets"),
        "{describe}"
    );

    // The files go with the instance.
    rouse.cli_ok(&["delete", "web"]);
    assert!(!instance_dir.exists(), "{} is still there", instance_dir.display());
}

#[test]
fn knative_yaml_mounts_items_with_their_modes_and_a_memory_empty_dir_of_a_size() {
    let rouse = Rouse::start();
    let manifest = format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: tls
stringData:
  tls.key: {PASSWORD}
  tls.crt: certificate
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: web
spec:
  template:
    spec:
      containers:
        - image: {SLEEPER}
          volumeMounts:
            - name: certs
              mountPath: /etc/certs
              readOnly: true
            - name: scratch
              mountPath: /scratch
      volumes:
        - name: certs
          secret:
            secretName: tls
            defaultMode: 0440
            items:
              - key: tls.key
                path: private/key.pem
                mode: 0400
              - key: tls.crt
                path: cert.pem
        - name: scratch
          emptyDir:
            medium: Memory
            sizeLimit: 16Mi
"#
    );
    rouse.apply(&manifest);
    let key = file(&rouse, "web", "/etc/certs/private/key.pem");
    assert_eq!((key.status, key.text().as_str()), (200, PASSWORD));
    assert_eq!(key.headers["x-file-mode"], "0400");
    assert_eq!(
        file(&rouse, "web", "/etc/certs/cert.pem").headers["x-file-mode"],
        "0440"
    );
    assert_eq!(
        file(&rouse, "web", "/etc/certs/tls.crt").status,
        404,
        "items pick the keys"
    );
    assert_eq!(write_file(&rouse, "web", "/scratch/note", "x").status, 200);
    let mounts = file(&rouse, "web", "/proc/mounts").text();
    let scratch = mounts
        .lines()
        .find(|l| l.contains(" /scratch "))
        .unwrap_or_else(|| panic!("{mounts}"));
    assert!(
        scratch.starts_with("tmpfs") && scratch.contains("size=16384k"),
        "{scratch}"
    );
    // What describe prints applies back unchanged.
    let yaml = rouse.cli_ok(&["describe", "web", "-o", "yaml"]);
    assert!(rouse.apply(&yaml).contains("Service web unchanged"), "{yaml}");

    // A missing key of an item fails the apply by name.
    let broken = manifest.replace("- key: tls.crt", "- key: tls.pem");
    let run = rouse.cli_input(&["apply", "-f", "-"], &broken);
    assert!(!run.status.success());
    assert!(
        run.stderr.contains("has no key 'tls.pem'") && run.stderr.contains("items[1].key"),
        "{}",
        run.stderr
    );
    rouse.cli_ok(&["delete", "web"]);
}

#[test]
fn a_named_volume_keeps_its_files_across_instances_and_an_empty_dir_does_not() {
    let rouse = Rouse::start();
    let volume = format!("rouse-{}-store", rouse.home_id());
    rouse.deploy(
        "db",
        SLEEPER,
        &["--mount", "/data=volume:store", "--mount", "/scratch=emptyDir"],
    );
    assert_eq!(write_file(&rouse, "db", "/data/kept", "still here").status, 200);
    assert_eq!(write_file(&rouse, "db", "/scratch/gone", "gone").status, 200);
    let first = rouse.running("db")[0].id.clone();

    // A new revision: a new instance, the old one stopped.
    rouse.deploy("db", SLEEPER, &["--env", "GENERATION=2"]);
    eventually("the first instance is gone", Duration::from_secs(30), || {
        (!rouse.running("db").iter().any(|c| c.id == first)).then_some(())
    });
    let kept = file(&rouse, "db", "/data/kept");
    assert_eq!((kept.status, kept.text().as_str()), (200, "still here"));
    assert_eq!(
        file(&rouse, "db", "/scratch/gone").status,
        404,
        "an emptyDir lives and dies with its instance"
    );

    // The volume outlives the service, labelled with its home.
    rouse.cli_ok(&["delete", "db"]);
    let listed = Command::new("docker")
        .args([
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label=rouse.home={}", rouse.home_id()),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), volume);
    let removed = Command::new("docker").args(["volume", "rm", &volume]).output().unwrap();
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
}
