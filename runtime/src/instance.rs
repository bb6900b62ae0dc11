//! Value types describing instances, independent of any backend.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Label put on every container Rouse creates.
pub const LABEL_MANAGED: &str = "rouse.managed";
/// Label naming the `$ROUSE_HOME` (by its id) that owns the container.
pub const LABEL_HOME: &str = "rouse.home";
/// Label naming the service the instance belongs to.
pub const LABEL_SERVICE: &str = "rouse.service";
/// Label naming the revision the instance runs.
pub const LABEL_REVISION: &str = "rouse.revision";
/// Label holding the instance's name (`<revision>-<5 random chars>`), so it survives a restart.
pub const LABEL_INSTANCE: &str = "rouse.instance";
/// Label holding the container port the instance listens on (the one published).
pub const LABEL_PORT: &str = "rouse.port";

/// Everything a backend needs to start one instance of a revision. Its `Debug` shows the
/// environment's names only: values may come from secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    /// Service name (for labels and the instance name).
    pub service: String,
    /// Revision name, e.g. `hello-00001`.
    pub revision: String,
    /// Image reference, already present in the local image store.
    pub image: String,
    /// Environment, in order; the caller includes `PORT`, `K_SERVICE`, etc.
    pub env: Vec<(String, String)>,
    /// The port the container listens on; published on 127.0.0.1 with an ephemeral host port.
    pub container_port: u16,
    /// Overrides the image's entrypoint when set.
    pub command: Option<Vec<String>>,
    /// Overrides the image's cmd when set.
    pub args: Option<Vec<String>>,
    /// Extra labels, merged with the ones the backend always sets.
    pub labels: BTreeMap<String, String>,
    /// CPU, memory and processes the instance may use and is guaranteed.
    pub resources: Resources,
    /// What the instance's processes may not do.
    pub security: Security,
    /// How much output the backend keeps per instance; `None` leaves the backend's default.
    pub log_rotation: Option<LogRotation>,
    /// The user the command runs as (`uid` or `uid:gid`); the image's when `None`.
    pub user: Option<String>,
    /// The directory the command starts in; the image's when `None`.
    pub working_dir: Option<String>,
    /// Host names that resolve, inside the instance, to the host (as `host.docker.internal`
    /// always does), e.g. `hello.localhost` for a service it sends events to.
    pub host_aliases: Vec<String>,
    /// What is mounted where in the instance's file system.
    pub mounts: Vec<Mount>,
}

impl std::fmt::Debug for InstanceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceSpec")
            .field("service", &self.service)
            .field("revision", &self.revision)
            .field("image", &self.image)
            .field("env", &self.env.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .field("container_port", &self.container_port)
            .field("command", &self.command)
            .field("args", &self.args)
            .field("resources", &self.resources)
            .field("security", &self.security)
            .field("user", &self.user)
            .field("working_dir", &self.working_dir)
            .field("mounts", &self.mounts)
            .finish_non_exhaustive()
    }
}

/// One mount of an instance.
#[derive(Clone, PartialEq, Eq)]
pub struct Mount {
    /// The absolute path in the instance.
    pub target: String,
    pub source: MountSource,
}

/// What a mount shows.
#[derive(Clone, PartialEq, Eq)]
pub enum MountSource {
    /// Files only this instance sees, read-only: a secret's or config map's keys. The
    /// backend keeps them out of the instance's image layers and, where it can, off disk.
    /// `sub_path` mounts one file or directory of them instead of all.
    Files {
        files: Vec<MountFile>,
        sub_path: Option<String>,
    },
    /// An empty directory that lives and dies with the instance: in memory (at most
    /// `size_bytes`) when `memory`, else on the engine's disk.
    Scratch { memory: bool, size_bytes: Option<u64> },
    /// A volume of the engine, by name, that outlives instances; made when missing.
    Named { name: String, read_only: bool },
}

/// One file of a [`MountSource::Files`] mount.
#[derive(Clone, PartialEq, Eq)]
pub struct MountFile {
    /// Relative to the mount, without `..`.
    pub path: String,
    pub contents: Vec<u8>,
    /// Unix permission bits, e.g. `0o444`.
    pub mode: u32,
}

/// Sizes only: a mount's files may be secrets, which must not reach a log by way of `{:?}`.
impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            MountSource::Files { files, sub_path } => format!(
                "files [{}]{}",
                files
                    .iter()
                    .map(|file| format!("{} ({} bytes, {:o})", file.path, file.contents.len(), file.mode))
                    .collect::<Vec<_>>()
                    .join(", "),
                sub_path.as_ref().map(|s| format!(" at {s}")).unwrap_or_default()
            ),
            MountSource::Scratch { memory, size_bytes } => format!("scratch memory={memory} size={size_bytes:?}"),
            MountSource::Named { name, read_only } => format!("volume {name} read_only={read_only}"),
        };
        write!(f, "{} <- {source}", self.target)
    }
}

/// CPU, memory and processes for one instance; `None` leaves the backend's default (no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Most processes and threads at once (a fork bomb stops there).
    pub pids_limit: Option<u64>,
    /// Most CPU, in millicores (1000 = one core).
    pub cpu_limit_millis: Option<u64>,
    /// Most memory, in bytes.
    pub memory_limit_bytes: Option<u64>,
    /// CPU weighed against other instances under contention, in millicores.
    pub cpu_request_millis: Option<u64>,
    /// Memory the instance is meant to keep under contention, in bytes.
    pub memory_request_bytes: Option<u64>,
}

/// Privileges taken from an instance's processes; the default takes none beyond the
/// backend's own defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Security {
    /// No process gains privileges it was not started with (setuid binaries, file
    /// capabilities): Linux's `no_new_privs`.
    pub no_new_privileges: bool,
    /// Linux capabilities removed from the backend's default set, without the `CAP_` prefix
    /// (`NET_RAW`), or `ALL`.
    pub drop_capabilities: Vec<String>,
    /// Capabilities added to the backend's default set (after `drop_capabilities`, so
    /// `ALL` then `NET_BIND_SERVICE` leaves that one).
    pub add_capabilities: Vec<String>,
    /// The image's file system is mounted read-only; mounts keep their own mode.
    pub read_only_root: bool,
    /// Refuse to start as root: with no `user`, the image's own user must be a non-zero id
    /// ([`RuntimeError::RunsAsRoot`](crate::RuntimeError::RunsAsRoot) otherwise).
    pub non_root: bool,
}

/// Rotation of an instance's output: at most `max_files` files of `max_bytes` each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRotation {
    pub max_bytes: u64,
    pub max_files: u32,
}

/// One probe attempt: what is asked of an instance, always at its serving port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// `GET path` with `headers`. Passes on a 2xx or 3xx answer, or on any complete answer
    /// when `any_status` (the default readiness check: "is the app serving yet").
    Http {
        path: String,
        headers: Vec<(String, String)>,
        any_status: bool,
    },
    /// `GET /` over HTTP/2 with prior knowledge gets any complete answer: the default
    /// readiness check of a port that speaks h2c, whose server may not speak HTTP/1 at all
    /// (a gRPC server).
    H2cAnswer,
    /// A TCP connection is accepted (and, behind a port proxy, not closed at once).
    Tcp,
    /// `grpc.health.v1.Health/Check` for `service` ("" for the whole server) answers
    /// `SERVING`.
    Grpc { service: String },
    /// The command, run inside the instance, exits with 0.
    Exec { command: Vec<String> },
}

impl Default for Check {
    /// Any HTTP answer on `/`.
    fn default() -> Self {
        Check::Http {
            path: "/".to_string(),
            headers: Vec::new(),
            any_status: true,
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Check::Http { path, .. } => write!(f, "GET {path}"),
            Check::H2cAnswer => f.write_str("GET / over h2c"),
            Check::Tcp => f.write_str("TCP connect"),
            Check::Grpc { service } if service.is_empty() => f.write_str("gRPC health check"),
            Check::Grpc { service } => write!(f, "gRPC health check of {service}"),
            Check::Exec { command } => write!(f, "exec {}", command.join(" ")),
        }
    }
}

/// What one attempt found, in words fit for `rouse describe` (`HTTP 503`, `exit code 1:
/// ...`, `connection refused`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Passed(String),
    Failed(String),
    /// This host ran out of something (file descriptors, ports) before the instance was
    /// reached: counts neither for nor against it.
    Unchecked(String),
}

impl Answer {
    pub fn passed(&self) -> bool {
        matches!(self, Answer::Passed(_))
    }

    /// The answer's words.
    pub fn text(&self) -> &str {
        match self {
            Answer::Passed(text) | Answer::Failed(text) | Answer::Unchecked(text) => text,
        }
    }
}

/// How to tell that an instance is ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub check: Check,
    /// Fixed gap between attempts; `None` probes aggressively (see the `probe` module).
    pub period: Option<std::time::Duration>,
    /// Longest one attempt may take.
    pub attempt_timeout: std::time::Duration,
}

impl Default for Readiness {
    /// Any HTTP answer on `/`, probed aggressively: "is the app serving yet".
    fn default() -> Self {
        Self {
            check: Check::default(),
            period: None,
            attempt_timeout: crate::probe::ATTEMPT_TIMEOUT,
        }
    }
}

/// What the backend knows of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// Backend id (the Docker container id).
    pub id: String,
    /// Human-readable instance name, e.g. `hello-00001-x7k2p`; used to prefix logs.
    pub name: String,
    /// Service label.
    pub service: String,
    /// Revision label.
    pub revision: String,
    /// Current state.
    pub state: InstanceState,
    /// Where the proxy dials the instance (`127.0.0.1:<published port>`), once running.
    pub endpoint: Option<SocketAddr>,
}

/// Lifecycle state of an instance as the backend reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceState {
    /// Created but not started.
    Created,
    /// Running (and not paused).
    Running,
    /// Frozen by the backend (Docker pause).
    Paused,
    /// The process exited with this code.
    Exited { code: i64 },
    /// Being removed, restarting, or a state this crate does not model.
    Other(String),
}

/// An instance's process ended (seen on the backend's event stream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceExit {
    /// Backend id of the instance.
    pub id: String,
    /// Exit code, when the backend reports one.
    pub code: Option<i64>,
}

/// Which of the container's output streams a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One line of an instance's output, without its trailing newline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub stream: LogStream,
    pub line: String,
}

/// Which logs to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep the stream open and yield new lines as they are written.
    pub follow: bool,
    /// Only the last N lines already written (all when `None`).
    pub tail: Option<usize>,
}
