//! The harness of the end-to-end tests.
//!
//! [`Rouse::start`] runs the real `rouse serve` binary on a fresh temporary home with ports
//! from 0, and dropping it stops the daemon and removes every container of that home (found by
//! its `rouse.home` label), so tests clean up even when they fail. Commands run the real CLI;
//! requests go over real HTTP to the ingress. Waiting is deadline-bounded polling
//! ([`eventually`]), never a fixed sleep standing in for "long enough".
//!
//! The tests need the `rouse` binary and the sample images: `scripts/test` builds both.

#![forbid(unsafe_code)]

pub mod nats;
pub mod registry;
pub mod subscriber;

pub use registry::Registry;
pub use subscriber::{Received, Subscriber};

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tempfile::TempDir;

pub const HELLO: &str = "rouse-samples/hello:latest";
pub const SLEEPER: &str = "rouse-samples/sleeper:latest";
pub const EVENT_DISPLAY: &str = "rouse-samples/event-display:latest";

/// The `rouse` binary built in this workspace's target directory.
pub fn rouse_binary() -> PathBuf {
    // Test executables live in target/<profile>/deps; the binary one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe.parent().and_then(Path::parent).expect("target dir").join("rouse");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p rouse-cli` first (scripts/test does)",
        path.display()
    );
    for image in [HELLO, SLEEPER] {
        let found = Command::new("docker")
            .args(["image", "inspect", image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            found.is_ok_and(|s| s.success()),
            "image {image} is missing: run samples/build.sh first (scripts/test does)"
        );
    }
    path
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A finished CLI invocation.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One container of the daemon's home, as Docker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub state: String,
}

/// A running `rouse serve` on its own temporary home.
pub struct Rouse {
    home: TempDir,
    child: Option<Child>,
    config: Option<PathBuf>,
    pub ingress: SocketAddr,
    pub api: SocketAddr,
    /// The broker ingress.
    pub events: SocketAddr,
    runtime: tokio::runtime::Runtime,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Rouse {
    /// Starts a daemon with the default configuration.
    pub fn start() -> Self {
        Self::start_with_config("")
    }

    /// Starts a daemon with `config` as its `rouse.toml` (passed with `--config`).
    pub fn start_with_config(config: &str) -> Self {
        let home = tempfile::Builder::new()
            .prefix("rouse-e2e-")
            .tempdir()
            .expect("temp home");
        Self::start_in(home, config)
    }

    /// Starts a daemon whose home is `home` (a directory the test prepared, e.g. a small
    /// tmpfs), with `config` as its `rouse.toml` when not empty.
    pub fn start_in(home: tempfile::TempDir, config: &str) -> Self {
        let config = (!config.is_empty()).then(|| {
            let path = home.path().join("test.toml");
            fs::write(&path, config).expect("write config");
            path
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio");
        let http = {
            let _guard = runtime.enter();
            Client::builder(TokioExecutor::new()).build_http()
        };
        let unbound: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let mut rouse = Rouse {
            home,
            child: None,
            config,
            ingress: unbound,
            api: unbound,
            events: unbound,
            runtime,
            http,
        };
        rouse.launch();
        rouse
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The id Docker labels carry for this home.
    pub fn home_id(&self) -> String {
        fs::read_to_string(self.home().join("home-id"))
            .expect("home-id")
            .trim()
            .to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    fn launch(&mut self) {
        let _ = fs::remove_file(self.home().join("daemon.json"));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home().join("daemon.log"))
            .expect("log");
        let mut command = Command::new(rouse_binary());
        command
            .args([
                "serve",
                "--ingress",
                "127.0.0.1:0",
                "--api",
                "127.0.0.1:0",
                "--events",
                "127.0.0.1:0",
                "--home",
            ])
            .arg(self.home())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        let child = command.spawn().expect("spawn rouse serve");
        self.child = Some(child);
        let addresses: serde_json::Value =
            eventually("the daemon to write daemon.json", Duration::from_secs(30), || {
                if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    panic!("rouse serve exited with {status}:\n{}", self.log());
                }
                let text = fs::read_to_string(self.home().join("daemon.json")).ok()?;
                serde_json::from_str(&text).ok()
            });
        self.ingress = addresses["ingress"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("ingress address");
        self.api = addresses["api"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("api address");
        self.events = addresses["events"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("events address");
    }

    /// The ingress URL of a broker.
    pub fn broker_url(&self, broker: &str) -> String {
        format!("http://{}/default/{broker}", self.events)
    }

    /// Sends events with the CloudEvents Python SDK (tests/python/send.py); returns its report.
    pub fn send_events(&self, broker: &str, args: &[&str]) -> serde_json::Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/send.py");
        let output = Command::new("python3")
            .arg(script)
            .arg(self.broker_url(broker))
            .args(args)
            .output()
            .expect("run python3 tests/python/send.py");
        assert!(
            output.status.success(),
            "send.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("send.py prints JSON")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.home().join("daemon.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the daemon to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        signal(child.id(), "TERM");
        wait_child(&mut child, Duration::from_secs(30))
    }

    /// Kills the daemon with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("daemon running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the daemon again on the same home (new ports).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the daemon first");
        self.launch();
    }

    /// Runs the CLI against this daemon's home.
    pub fn cli(&self, args: &[&str]) -> Run {
        self.cli_env(args, &[])
    }

    /// Runs the CLI with extra environment variables (`DOCKER_CONFIG`, say).
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Run {
        Command::new(rouse_binary())
            .args(args)
            .arg("--home")
            .arg(self.home())
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .output()
            .expect("run rouse")
            .into()
    }

    /// Runs the CLI with `input` on its standard input.
    pub fn cli_input(&self, args: &[&str], input: &str) -> Run {
        use std::io::Write as _;
        let mut child = Command::new(rouse_binary())
            .args(args)
            .arg("--home")
            .arg(self.home())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run rouse");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write stdin");
        drop(stdin);
        child.wait_with_output().expect("run rouse").into()
    }

    /// `rouse apply -f -` with `yaml`, expecting success; returns stderr (what was applied).
    pub fn apply(&self, yaml: &str) -> String {
        let run = self.cli_input(&["apply", "-f", "-"], yaml);
        assert!(
            run.status.success(),
            "rouse apply failed ({}):\n{}\ndaemon log:\n{}",
            run.status,
            run.stderr,
            self.log()
        );
        run.stderr
    }

    /// Runs the CLI and expects success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let run = self.cli(args);
        assert!(
            run.status.success(),
            "rouse {args:?} failed ({}):\n{}\ndaemon log:\n{}",
            run.status,
            run.stderr,
            self.log()
        );
        run.stdout
    }

    /// Deploys and returns the URL printed.
    pub fn deploy(&self, name: &str, image: &str, extra: &[&str]) -> String {
        let mut args = vec!["deploy", name, "--image", image];
        args.extend_from_slice(extra);
        self.cli_ok(&args).trim().to_string()
    }

    /// `describe -o json` of a service.
    pub fn describe(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["describe", name, "-o", "json"])).expect("describe json")
    }

    /// Sends a request to the ingress with `Host: {service}.localhost`.
    pub fn request(
        &self,
        method: Method,
        service: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let host = format!("{service}.localhost:{}", self.ingress.port());
        self.request_host(method, &host, path, headers, body)
    }

    /// Sends a request to the ingress with the given Host header.
    pub fn request_host(
        &self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.request_to(self.ingress, method, host, path, headers, body)
    }

    /// Sends a request to the broker ingress, e.g. `POST /default/default`.
    pub fn events_request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let host = self.events.to_string();
        self.request_to(self.events, method, &host, path, headers, body)
    }

    fn request_to(
        &self,
        addr: SocketAddr,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("host", host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.into())).expect("request");
        self.runtime.block_on(async {
            let response = tokio::time::timeout(Duration::from_secs(120), self.http.request(request))
                .await
                .expect("no answer within 120 s")
                .expect("request failed");
            let (parts, body) = response.into_parts();
            let body = body.collect().await.expect("response body").to_bytes();
            Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            }
        })
    }

    /// A request without a body to the admin API (no token: for `/healthz` and `/metrics`).
    pub fn request_to_api(&self, method: Method, host: &str, path: &str) -> Reply {
        self.request_to(self.api, method, host, path, &[], Bytes::new())
    }

    /// The Prometheus text of the admin API's `/metrics`.
    pub fn request_to_api_metrics(&self) -> String {
        let host = self.api.to_string();
        self.request_to(self.api, Method::GET, &host, "/metrics", &[], Bytes::new())
            .text()
    }

    /// GET `path` on a service.
    pub fn get(&self, service: &str, path: &str) -> Reply {
        self.request(Method::GET, service, path, &[], Bytes::new())
    }

    /// Runs `f` on this harness's tokio runtime (for streaming tests).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Containers of this home, in any state.
    pub fn containers(&self) -> Vec<Container> {
        let filter = format!("label=rouse.home={}", self.home_id());
        let out = Command::new("docker")
            .args([
                "ps",
                "-a",
                "--no-trunc",
                "--filter",
                &filter,
                "--format",
                "{{.ID}} {{.Names}} {{.State}}",
            ])
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                Some(Container {
                    id: parts.next()?.to_string(),
                    name: parts.next()?.to_string(),
                    state: parts.next()?.to_string(),
                })
            })
            .collect()
    }

    /// Running containers of one service.
    pub fn running(&self, service: &str) -> Vec<Container> {
        let prefix = format!("rouse-{service}-");
        self.containers()
            .into_iter()
            .filter(|c| c.name.starts_with(&prefix) && c.state == "running")
            .collect()
    }

    fn remove_containers(&self) {
        let Ok(id) = fs::read_to_string(self.home().join("home-id")) else {
            return;
        };
        let filter = format!("label=rouse.home={}", id.trim());
        remove_listed(&["ps", "-aq", "--filter", &filter], &["rm", "-f", "-v"]);
        // Named volumes (persistentVolumeClaim) outlive containers by design: not a test's.
        remove_listed(&["volume", "ls", "-q", "--filter", &filter], &["volume", "rm", "-f"]);
    }
}

/// Runs `docker LIST...` and then `docker REMOVE... <each id it printed>`, quietly.
fn remove_listed(list: &[&str], remove: &[&str]) {
    let ids: Vec<String> = Command::new("docker")
        .args(list)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(remove)
            .args(&ids)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Rouse {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.remove_containers();
        if std::thread::panicking() {
            eprintln!("--- daemon log ({}) ---\n{}", self.home().display(), self.log());
        }
    }
}

/// Sends a signal with `kill(1)`: the workspace forbids unsafe code, so no libc here.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

fn wait_child(child: &mut Child, timeout: Duration) -> ExitStatus {
    eventually("the daemon to exit", timeout, || child.try_wait().ok().flatten())
}

/// Runs `docker inspect` on a container and returns its JSON.
pub fn docker_inspect(id: &str) -> serde_json::Value {
    let out = Command::new("docker")
        .args(["inspect", id])
        .output()
        .expect("docker inspect");
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect json");
    all[0].clone()
}
