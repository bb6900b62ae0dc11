//! The Docker backend against the real local Docker: no mocks.
//!
//! Workloads run a FROM-scratch image holding only a static busybox (`busybox-static` on
//! Debian), built here from `/bin/busybox`; without it the tests fail, saying what to install
//! (`scripts/test` installs it). Every test uses its own random home id,
//! and a drop guard removes every container labelled with it, even when the test fails.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;
use rouse_runtime::LABEL_HOME;
use rouse_runtime::{
    Answer, Check, Dial, DockerRuntime, Instance, InstanceExit, InstanceSpec, InstanceState, LogOptions, LogRotation,
    LogStream, Readiness, Resources, Runtime, RuntimeError, Security,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

const IMAGE: &str = "rouse-test/busybox:latest";
const BUSYBOX: &str = "/bin/busybox";
const PORT: u16 = 8080;
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_secs(2);

// === harness ===

/// Builds the test image once per test process.
fn test_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        assert!(
            Path::new(BUSYBOX).exists(),
            "{BUSYBOX} is missing: install it with `apt-get install -y busybox-static` (scripts/test does)"
        );
        let context = tempfile::tempdir().expect("temp dir");
        std::fs::copy(BUSYBOX, context.path().join("busybox")).expect("copy busybox");
        std::fs::write(
            context.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n",
        )
        .expect("write Dockerfile");
        let output = Command::new("docker")
            .args(["build", "-q", "-t", IMAGE])
            .arg(context.path())
            // The classic builder: the Engine may have no BuildKit, and no registry is needed.
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .expect("run docker build");
        assert!(
            output.status.success(),
            "docker build failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// A runtime with a fresh home id; on drop, removes every container of that home.
struct Home {
    runtime: DockerRuntime,
    id: String,
}

impl Home {
    async fn new() -> Self {
        Self::with_dial(Dial::for_platform()).await
    }

    async fn with_dial(dial: Dial) -> Self {
        let suffix: String = (0..8)
            .map(|_| char::from(b'a' + rand::rng().random_range(0..26u8)))
            .collect();
        let id = format!("test-{suffix}");
        let runtime = DockerRuntime::connect_with(&id, dial)
            .await
            .expect("Docker is reachable");
        Home { runtime, id }
    }

    /// Container ids of this home, straight from the docker CLI (not the code under test).
    fn containers(&self) -> Vec<String> {
        let output = Command::new("docker")
            .args(["ps", "-aq", "--no-trunc", "--filter"])
            .arg(format!("label={LABEL_HOME}={}", self.id))
            .output()
            .expect("run docker ps");
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let ids = self.containers();
        if !ids.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f", "-v"]).args(&ids).output();
        }
    }
}

fn spec(revision: &str, command: &[&str]) -> InstanceSpec {
    InstanceSpec {
        service: "svc".to_owned(),
        revision: revision.to_owned(),
        image: IMAGE.to_owned(),
        env: vec![
            ("PORT".to_owned(), PORT.to_string()),
            ("K_REVISION".to_owned(), revision.to_owned()),
        ],
        container_port: PORT,
        command: Some(command.iter().map(|s| (*s).to_owned()).collect()),
        args: None,
        labels: BTreeMap::from([("test.extra".to_owned(), "yes".to_owned())]),
        resources: Default::default(),
        security: Default::default(),
        log_rotation: None,
        host_aliases: Vec::new(),
        mounts: Vec::new(),
        user: None,
        working_dir: None,
    }
}

/// An HTTP server on `$PORT` that first prints `hello-log` (and `to-stderr` on stderr).
fn server(revision: &str) -> InstanceSpec {
    spec(
        revision,
        &[
            "/bin/busybox",
            "sh",
            "-c",
            "echo hello-log; echo to-stderr >&2; exec busybox httpd -f -p $PORT -h /",
        ],
    )
}

/// Sends a plain GET and returns the status line.
async fn get(endpoint: SocketAddr) -> String {
    let mut stream = TcpStream::connect(endpoint).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut response = Vec::new();
    timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("answer")
        .expect("read");
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

// === tests ===

#[tokio::test]
async fn an_instance_serves_http_is_listed_and_logs() {
    test_image();
    let home = Home::new().await;
    let rt = &home.runtime;

    let instance = rt.create(&server("svc-00001")).await.expect("create");
    assert!(instance.name.starts_with("svc-00001-"), "{}", instance.name);
    assert_eq!(instance.name.len(), "svc-00001-".len() + 5);
    assert_eq!(instance.service, "svc");
    assert_eq!(instance.revision, "svc-00001");
    let endpoint = instance.endpoint.expect("endpoint");
    match Dial::for_platform() {
        // The container's own address and port on the bridge.
        Dial::ContainerIp => assert!(endpoint.port() == PORT && !endpoint.ip().is_loopback(), "{endpoint}"),
        Dial::PublishedPort => assert!(endpoint.ip().is_loopback(), "{endpoint}"),
    }

    let started = Instant::now();
    rt.wait_ready(&instance, &Readiness::default(), READY_TIMEOUT)
        .await
        .expect("ready");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ready after {:?}",
        started.elapsed()
    );

    let listed = rt.list().await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, instance.id);
    assert_eq!(listed[0].name, instance.name);
    assert_eq!(listed[0].state, InstanceState::Running);
    assert_eq!(listed[0].endpoint, Some(endpoint));
    assert_eq!(rt.inspect(&instance.id).await.expect("inspect"), Some(instance.clone()));

    let status = get(endpoint).await;
    assert!(status.starts_with("HTTP/1."), "{status}");

    let lines: Vec<_> = rt
        .logs(&instance.id, LogOptions::default())
        .await
        .expect("logs")
        .map(|l| l.expect("log line"))
        .collect()
        .await;
    assert!(
        lines
            .iter()
            .any(|l| l.stream == LogStream::Stdout && l.line == "hello-log"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.stream == LogStream::Stderr && l.line == "to-stderr"),
        "{lines:?}"
    );

    // Following yields what is there, then stays open.
    let mut follow = rt
        .logs(
            &instance.id,
            LogOptions {
                follow: true,
                tail: Some(10),
            },
        )
        .await
        .expect("follow logs");
    // stdout and stderr are separate pipes: their relative order is not kept.
    let first_two: Vec<String> = timeout(Duration::from_secs(5), (&mut follow).take(2).collect::<Vec<_>>())
        .await
        .expect("two lines")
        .into_iter()
        .map(|l| l.expect("line").line)
        .collect();
    assert!(first_two.contains(&"hello-log".to_owned()), "{first_two:?}");
    // Nothing more was written, yet the stream stays open.
    assert!(timeout(Duration::from_millis(200), follow.next()).await.is_err());
    drop(follow);

    rt.stop(&instance.id, GRACE).await.expect("stop");
    assert!(home.containers().is_empty());
    assert_eq!(rt.inspect(&instance.id).await.expect("inspect"), None);
    assert!(rt.list().await.expect("list").is_empty());
    // Stopping again is fine.
    rt.stop(&instance.id, GRACE).await.expect("stop again");
}

#[tokio::test]
async fn an_exit_is_reported_by_wait_ready_list_and_exits() {
    test_image();
    let home = Home::new().await;
    let rt = &home.runtime;
    let mut exits = rt.exits().await.expect("exits");

    let instance = rt
        .create(&spec("svc-00002", &["/bin/busybox", "sh", "-c", "exit 3"]))
        .await
        .expect("create");
    match rt.wait_ready(&instance, &Readiness::default(), READY_TIMEOUT).await {
        Err(RuntimeError::Exited {
            instance: name,
            code: 3,
        }) => assert_eq!(name, instance.name),
        other => panic!("expected Exited with code 3, got {other:?}"),
    }

    let exit = timeout(Duration::from_secs(10), exits.next())
        .await
        .expect("a die event")
        .expect("open");
    assert_eq!(
        exit,
        InstanceExit {
            id: instance.id.clone(),
            code: Some(3)
        }
    );

    let listed = rt.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, InstanceState::Exited { code: 3 });
    assert_eq!(listed[0].endpoint, None);

    rt.stop(&instance.id, GRACE).await.expect("stop");
    assert!(home.containers().is_empty());
}

/// Linux's number for CAP_NET_RAW, a bit of the capability sets in `/proc/self/status`.
const CAP_NET_RAW: u32 = 13;

#[tokio::test]
async fn limits_and_privileges_reach_the_process() {
    test_image();
    let home = Home::new().await;
    let rt = &home.runtime;
    let mut spec = spec(
        "svc-00009",
        &[
            "/bin/busybox",
            "sh",
            "-c",
            "grep -E '^(NoNewPrivs|CapBnd)' /proc/self/status; for i in $(seq 100); do sleep 30 & done",
        ],
    );
    spec.resources = Resources {
        pids_limit: Some(32),
        memory_limit_bytes: Some(64 << 20),
        ..Resources::default()
    };
    spec.security = Security {
        no_new_privileges: true,
        drop_capabilities: vec!["NET_RAW".to_owned()],
        ..Security::default()
    };
    spec.log_rotation = Some(LogRotation {
        max_bytes: 1 << 20,
        max_files: 2,
    });
    let instance = rt.create(&spec).await.expect("create");
    // The 33rd process cannot be made: the shell cannot fork and gives up.
    match rt.wait_ready(&instance, &Readiness::default(), READY_TIMEOUT).await {
        Err(RuntimeError::Exited { .. }) => {}
        other => panic!("expected the shell to exit, got {other:?}"),
    }
    let lines: Vec<String> = rt
        .logs(&instance.id, LogOptions::default())
        .await
        .expect("logs")
        .map(|l| l.expect("log line").line)
        .collect()
        .await;
    assert!(lines.iter().any(|l| l.contains("can't fork")), "{lines:?}");
    assert!(lines.iter().any(|l| l == "NoNewPrivs:\t1"), "{lines:?}");
    let bounding = lines
        .iter()
        .find_map(|l| l.strip_prefix("CapBnd:\t"))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or_else(|| panic!("no CapBnd in {lines:?}"));
    assert_eq!(bounding & (1 << CAP_NET_RAW), 0, "NET_RAW is gone: {bounding:x}");
    assert_ne!(bounding, 0, "the other capabilities stay");

    let format = "{{.HostConfig.PidsLimit}} {{.HostConfig.Memory}} {{.HostConfig.LogConfig.Type}} \
                  {{index .HostConfig.LogConfig.Config \"max-size\"}} {{index .HostConfig.LogConfig.Config \"max-file\"}}";
    let inspect = Command::new("docker")
        .args(["inspect", "--format", format, &instance.id])
        .output()
        .expect("docker inspect");
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        format!("32 {} json-file 1048576 2", 64 << 20)
    );
    rt.stop(&instance.id, GRACE).await.expect("stop");
}

#[tokio::test]
async fn an_instance_that_never_listens_is_not_ready() {
    test_image();
    let home = Home::new().await;
    let rt = &home.runtime;
    let instance = rt
        .create(&spec("svc-00003", &["/bin/busybox", "sleep", "60"]))
        .await
        .expect("create");
    match rt
        .wait_ready(&instance, &Readiness::default(), Duration::from_millis(300))
        .await
    {
        Err(RuntimeError::NotReady {
            instance: name,
            port,
            waited_ms,
            check,
            last,
        }) => {
            assert_eq!(check, "GET /");
            assert!(last.contains("cannot connect"), "{last}");
            assert_eq!(name, instance.name);
            assert_eq!(port, PORT);
            assert!((300..2_000).contains(&waited_ms), "{waited_ms}");
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
    rt.stop(&instance.id, Duration::ZERO).await.expect("stop");
    assert!(home.containers().is_empty());
}

#[tokio::test]
async fn pause_unpause_and_stop_while_paused() {
    test_image();
    let home = Home::new().await;
    let rt = &home.runtime;
    let instance = rt.create(&server("svc-00004")).await.expect("create");
    rt.wait_ready(&instance, &Readiness::default(), READY_TIMEOUT)
        .await
        .expect("ready");

    rt.pause(&instance.id).await.expect("pause");
    rt.pause(&instance.id).await.expect("pause twice");
    let paused = rt.inspect(&instance.id).await.expect("inspect").expect("exists");
    assert_eq!(paused.state, InstanceState::Paused);
    assert_eq!(paused.endpoint, instance.endpoint);
    let memory = rt
        .memory_usage(&instance.id)
        .await
        .expect("memory of a frozen instance");
    assert!(memory > 0 && memory < 512 << 20, "{memory} bytes");

    rt.unpause(&instance.id).await.expect("unpause");
    rt.unpause(&instance.id).await.expect("unpause twice");
    let thawed = rt.inspect(&instance.id).await.expect("inspect").expect("exists");
    assert_eq!(thawed.state, InstanceState::Running);
    let status = get(instance.endpoint.expect("endpoint")).await;
    assert!(status.starts_with("HTTP/1."), "{status}");

    rt.pause(&instance.id).await.expect("pause");
    rt.stop(&instance.id, GRACE).await.expect("stop a paused instance");
    assert!(home.containers().is_empty());
}

#[tokio::test]
async fn a_missing_image_is_reported_and_nothing_is_created() {
    test_image();
    let home = Home::new().await;
    let rt = &home.runtime;
    let image = rt.resolve_image(IMAGE).await.expect("resolve").expect("the test image");
    assert!(image.id.starts_with("sha256:"), "{image:?}");
    // Built here, never pushed: pinned to its id, which creates the same image.
    assert_eq!(image.pinned(IMAGE), image.id);
    let mut pinned = server("svc-00006");
    pinned.image = image.id.clone();
    let instance = rt.create(&pinned).await.expect("an instance of the pinned id");
    rt.stop(&instance.id, GRACE).await.expect("stop");
    let missing = "rouse-test/does-not-exist:latest";
    assert_eq!(rt.resolve_image(missing).await.expect("resolve"), None);

    let mut spec = server("svc-00005");
    spec.image = missing.to_owned();
    match rt.create(&spec).await {
        Err(RuntimeError::ImageNotFound { image }) => assert_eq!(image, missing),
        other => panic!("expected ImageNotFound, got {other:?}"),
    }
    assert!(home.containers().is_empty());
    assert!(rt.list().await.expect("list").is_empty());
}

#[tokio::test]
async fn a_missing_binary_exits_with_127() {
    test_image();
    let home = Home::new().await;
    let rt = &home.runtime;
    // Docker's init is PID 1 and starts fine; it is the exec of the entrypoint that fails.
    let instance = rt
        .create(&spec("svc-00006", &["/no/such/binary"]))
        .await
        .expect("create");
    match rt.wait_ready(&instance, &Readiness::default(), READY_TIMEOUT).await {
        Err(RuntimeError::Exited { code: 127, .. }) => {}
        other => panic!("expected Exited with code 127, got {other:?}"),
    }
    rt.stop(&instance.id, GRACE).await.expect("stop");
    assert!(home.containers().is_empty());
}

#[tokio::test]
async fn stopping_a_missing_instance_is_ok() {
    let home = Home::new().await;
    home.runtime.stop("rouse-no-such-container", GRACE).await.expect("stop");
    assert_eq!(
        home.runtime.inspect("rouse-no-such-container").await.expect("inspect"),
        None
    );
}

#[tokio::test]
async fn homes_do_not_see_each_other() {
    test_image();
    let ours = Home::new().await;
    let theirs = Home::new().await;
    let instance = ours.runtime.create(&server("svc-00007")).await.expect("create");

    assert_eq!(ours.runtime.list().await.expect("list").len(), 1);
    assert!(theirs.runtime.list().await.expect("list").is_empty());
    assert_eq!(theirs.runtime.inspect(&instance.id).await.expect("inspect"), None);
    // Another home refuses to touch it.
    assert!(theirs.runtime.stop(&instance.id, GRACE).await.is_err());
    assert!(theirs.runtime.pause(&instance.id).await.is_err());
    assert!(theirs.runtime.logs(&instance.id, LogOptions::default()).await.is_err());
    assert_eq!(ours.containers(), std::slice::from_ref(&instance.id));

    ours.runtime.stop(&instance.id, GRACE).await.expect("stop");
    assert!(ours.containers().is_empty());
}

/// Where cold-start time goes: `create` (Docker create + start + inspect) and `wait_ready`,
/// and what a thaw (unpause) costs instead.
/// Run with `--nocapture` to see the numbers.
#[tokio::test]
async fn cold_start_timings() {
    test_image();
    // Shows the create / start / inspect split that `create` logs at debug.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("rouse_runtime=debug")
        .with_test_writer()
        .try_init();
    let home = Home::new().await;
    let rt = &home.runtime;
    let mut instances: Vec<Instance> = Vec::new();
    for round in 1..=5 {
        let started = Instant::now();
        let instance = rt.create(&server("svc-00008")).await.expect("create");
        let created = started.elapsed();
        rt.wait_ready(&instance, &Readiness::default(), READY_TIMEOUT)
            .await
            .expect("ready");
        let ready = started.elapsed();
        println!(
            "cold start {round}: create {:.1} ms, wait_ready {:.1} ms, create→ready {:.1} ms",
            created.as_secs_f64() * 1e3,
            (ready - created).as_secs_f64() * 1e3,
            ready.as_secs_f64() * 1e3,
        );
        // The warm path: thaw a frozen instance and get an answer.
        rt.pause(&instance.id).await.expect("pause");
        let thawing = Instant::now();
        rt.unpause(&instance.id).await.expect("unpause");
        let thawed = thawing.elapsed();
        let status = get(instance.endpoint.expect("endpoint")).await;
        assert!(status.starts_with("HTTP/1."), "{status}");
        println!(
            "thaw {round}: unpause {:.1} ms, unpause→answer {:.1} ms",
            thawed.as_secs_f64() * 1e3,
            thawing.elapsed().as_secs_f64() * 1e3,
        );
        instances.push(instance);
    }
    for instance in &instances {
        let started = Instant::now();
        rt.stop(&instance.id, GRACE).await.expect("stop");
        println!(
            "stop {}: {:.1} ms",
            instance.name,
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    assert!(home.containers().is_empty());
}

#[tokio::test]
async fn published_port_mode_dials_loopback() {
    test_image();
    let home = Home::with_dial(Dial::PublishedPort).await;
    let rt = &home.runtime;
    let instance = rt.create(&server("pub-00001")).await.expect("create");
    let endpoint = instance.endpoint.expect("endpoint");
    assert!(endpoint.ip().is_loopback() && endpoint.port() != PORT, "{endpoint}");
    rt.wait_ready(&instance, &Readiness::default(), READY_TIMEOUT)
        .await
        .expect("ready");
    let listed = rt.list().await.expect("list");
    assert_eq!(listed[0].endpoint, Some(endpoint), "list reports the same endpoint");
}

/// TCP and exec checks against a real container, through both ways of dialling it: a TCP
/// check passes only while something listens (even behind Docker's port proxy, which accepts
/// either way), an exec check runs inside the container and reports its exit code and output.
#[tokio::test]
async fn tcp_and_exec_checks_see_the_container_as_it_is() {
    test_image();
    for dial in [Dial::ContainerIp, Dial::PublishedPort] {
        let home = Home::with_dial(dial).await;
        let rt = &home.runtime;
        // Listens only once /listen exists (the image has no /tmp).
        let instance = rt
            .create(&spec(
                "chk-00001",
                &[
                    "/bin/busybox",
                    "sh",
                    "-c",
                    "while [ ! -e /listen ]; do sleep 0.05; done; exec busybox httpd -f -p $PORT -h /",
                ],
            ))
            .await
            .expect("create");
        let second = Duration::from_secs(1);
        let tcp = rt.check(&instance, &Check::Tcp, second).await;
        assert!(!tcp.passed(), "{dial:?}: nothing listens yet: {tcp:?}");
        let listen = Check::Exec {
            command: vec!["/bin/busybox".into(), "touch".into(), "/listen".into()],
        };
        assert_eq!(
            rt.check(&instance, &listen, second * 5).await,
            Answer::Passed("exit code 0".into())
        );
        let readiness = Readiness {
            check: Check::Tcp,
            ..Readiness::default()
        };
        rt.wait_ready(&instance, &readiness, READY_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{dial:?}: listening now: {e}"));
        assert!(rt.check(&instance, &Check::Tcp, second).await.passed());
        let failing = Check::Exec {
            command: vec![
                "/bin/busybox".into(),
                "sh".into(),
                "-c".into(),
                "echo database unreachable; exit 3".into(),
            ],
        };
        assert_eq!(
            rt.check(&instance, &failing, second * 5).await,
            Answer::Failed("exit code 3: database unreachable".into())
        );
        // A chatty check: only the end of its output is kept (512 bytes), with the exit code.
        let chatty = Check::Exec {
            command: vec![
                "/bin/busybox".into(),
                "sh".into(),
                "-c".into(),
                "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done; exit 2".into(),
            ],
        };
        let answer = rt.check(&instance, &chatty, second * 5).await;
        let text = answer.text();
        assert!(!answer.passed() && text.starts_with("exit code 2: "), "{answer:?}");
        assert!(text.ends_with("line-399"), "the end is kept: {text}");
        assert!(!text.contains("line-0\n"), "the start is not: {text}");
        assert!(text.len() <= "exit code 2: ".len() + 512, "{} bytes", text.len());
        let missing = Check::Exec {
            command: vec!["/no/such/check".into()],
        };
        let answer = rt.check(&instance, &missing, second * 5).await;
        assert!(
            !answer.passed() && answer.text().contains("no/such/check"),
            "{answer:?}"
        );
        let http = Check::Http {
            path: "/missing".into(),
            headers: vec![("X-Probe".into(), "1".into())],
            any_status: false,
        };
        assert_eq!(
            rt.check(&instance, &http, second).await,
            Answer::Failed("HTTP 404 Not Found".into())
        );
        rt.stop(&instance.id, Duration::ZERO).await.expect("stop");
    }
}
