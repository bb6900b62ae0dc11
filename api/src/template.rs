//! A revision template: everything that, when it changes, makes a new revision.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::probe::{Probe, ProbeKind};
use crate::secret::{DataKind, DataRef, EnvFromSource, EnvVarSource};
use crate::volume::{Volume, VolumeMount};

/// Port the container listens on when none is given (Knative's and Cloud Run's default).
pub const DEFAULT_PORT: u16 = 8080;
/// Request timeout when none is given, in seconds (Knative's `revision-timeout-seconds`).
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 300;
/// Longest request timeout allowed, in seconds (Knative's `max-revision-timeout-seconds`).
pub const MAX_TIMEOUT_SECONDS: u32 = 600;
/// Largest containerConcurrency accepted (Knative's `container-concurrency-max-limit`).
pub const MAX_CONTAINER_CONCURRENCY: u32 = 1000;
/// Instances a revision starts with when none is given.
pub const DEFAULT_INITIAL_SCALE: u32 = 1;

/// Where a revision template sits in a Knative Service. The daemon's errors name fields by
/// these YAML paths; the CLI renames them to the flags that set them.
pub const TEMPLATE: &str = "spec.template";
/// The template's one container.
pub const CONTAINER: &str = "spec.template.spec.containers[0]";

/// The YAML path of a template annotation, e.g. `autoscaling.knative.dev/min-scale`.
pub fn annotation_field(key: &str) -> String {
    format!("{TEMPLATE}.metadata.annotations[{key}]")
}

/// Environment variables the platform sets itself; users may not override them.
pub const RESERVED_ENV: [&str; 4] = ["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"];

/// The immutable part of a revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionTemplate {
    /// Image reference in the local Docker.
    pub image: String,
    /// User environment, in the order given.
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// Secrets and config maps whose every key becomes a variable (`envFrom`); `env` wins
    /// over them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// Volumes (`spec.volumes`) and where the container mounts them (`volumeMounts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// The port the container listens on (`$PORT`).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Protocol the proxy speaks to the container on that port.
    #[serde(default)]
    pub protocol: PortProtocol,
    /// Most requests one instance serves at once; 0 means unlimited.
    #[serde(default)]
    pub container_concurrency: u32,
    /// Longest a request may take, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
    /// Instance count bounds.
    #[serde(default)]
    pub scale: ScaleBounds,
    /// The container's name (`containers[0].name`), shown back as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// Replaces the image's entrypoint (`command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Replaces the image's arguments (`args`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// CPU and memory limits and requests, applied as Docker limits.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// How readiness is probed when not the default (any HTTP answer on `/` until the
    /// instance first answers).
    #[serde(
        default,
        deserialize_with = "crate::probe::stored_readiness",
        skip_serializing_if = "Option::is_none"
    )]
    pub readiness: Option<Probe>,
    /// How liveness is probed; `None` checks none (an instance lives until it exits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
    /// What gates readiness and liveness while the instance starts; `None` gates nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Probe>,
    /// Labels of the revision (`spec.template.metadata.labels`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the revision other than the autoscaling ones, kept as given.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Where the container sends events (`--sink`): given to it as `K_SINK`, as Knative's
    /// SinkBinding does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<crate::eventing::Sink>,
    /// CloudEvent extensions the container should set (`--ce-override KEY=VALUE`), given to it
    /// as `K_CE_OVERRIDES` (`{"extensions": {...}}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ce_overrides: BTreeMap<String, String>,
    /// The user id the command runs as (`securityContext.runAsUser`, `--user`); the image's
    /// when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<u32>,
    /// The directory the command starts in (`workingDir`, `--working-dir`); the image's when
    /// `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// What the container's processes may do beyond the user id (`securityContext`).
    #[serde(default, skip_serializing_if = "crate::security::ContainerSecurity::is_empty")]
    pub security: crate::security::ContainerSecurity,
    /// What `image` named in the engine when the revision was made, which every instance
    /// runs (`repo@sha256:...`, or the image id for a local-only image), so a tag moved by the
    /// next `docker build` changes nothing under a revision. Set by the daemon at deploy
    /// time, never taken from a client; `None` asks for tag semantics (`--lock-to-digest=false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
}

/// CPU and memory for one instance, as Kubernetes quantities (`500m`, `128Mi`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Quantities::is_empty")]
    pub limits: Quantities,
    #[serde(default, skip_serializing_if = "Quantities::is_empty")]
    pub requests: Quantities,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty() && self.requests.is_empty()
    }
}

/// A CPU and a memory quantity, each optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantities {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

impl Quantities {
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none()
    }

    /// CPU in millicores, when set.
    pub fn cpu_millis(&self) -> Option<u64> {
        self.cpu.as_deref().and_then(|q| crate::quantity::parse_cpu(q).ok())
    }

    /// Memory in bytes, when set.
    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory
            .as_deref()
            .and_then(|q| crate::quantity::parse_memory(q).ok())
    }

    fn validate(&self, field: &str) -> Result<(), ValidationError> {
        if let Some(cpu) = &self.cpu {
            crate::quantity::parse_cpu(cpu)
                .map_err(|reason| ValidationError::new(format!("{field}.cpu"), cpu, reason))?;
        }
        if let Some(memory) = &self.memory {
            crate::quantity::parse_memory(memory)
                .map_err(|reason| ValidationError::new(format!("{field}.memory"), memory, reason))?;
        }
        Ok(())
    }
}

fn default_port() -> u16 {
    DEFAULT_PORT
}

fn default_timeout() -> u32 {
    DEFAULT_TIMEOUT_SECONDS
}

impl RevisionTemplate {
    /// A template for `image` with every other field at its default.
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            env: Vec::new(),
            env_from: Vec::new(),
            volumes: Vec::new(),
            volume_mounts: Vec::new(),
            port: DEFAULT_PORT,
            protocol: PortProtocol::default(),
            container_concurrency: 0,
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            scale: ScaleBounds::default(),
            container_name: None,
            command: None,
            args: None,
            resources: Resources::default(),
            readiness: None,
            liveness: None,
            startup: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            sink: None,
            ce_overrides: BTreeMap::new(),
            user: None,
            working_dir: None,
            security: Default::default(),
            image_digest: None,
        }
    }

    /// Every secret and config map the template reads, and where.
    pub fn data_refs(&self) -> Vec<DataRef> {
        let mut refs = Vec::new();
        for (i, source) in self.env_from.iter().enumerate() {
            let field = format!("{CONTAINER}.envFrom[{i}]");
            if let Ok((kind, selector)) = source.reference(&field) {
                let part = if kind == DataKind::Secret {
                    "secretRef"
                } else {
                    "configMapRef"
                };
                refs.push(DataRef {
                    kind,
                    name: selector.name.clone(),
                    key: None,
                    optional: selector.optional,
                    field: format!("{field}.{part}.name"),
                });
            }
        }
        for (i, var) in self.env.iter().enumerate() {
            let field = format!("{CONTAINER}.env[{i}].valueFrom");
            if let Some(Ok((kind, selector))) = var.value_from.as_ref().map(|s| s.reference(&field)) {
                let part = if kind == DataKind::Secret {
                    "secretKeyRef"
                } else {
                    "configMapKeyRef"
                };
                refs.push(DataRef {
                    kind,
                    name: selector.name.clone(),
                    key: Some(selector.key.clone()),
                    optional: selector.optional,
                    field: format!("{field}.{part}"),
                });
            }
        }
        refs.extend(crate::volume::data_refs(&self.volumes));
        refs
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_image(&self.image)?;
        for (i, var) in self.env.iter().enumerate() {
            let field = format!("{CONTAINER}.env[{i}].name");
            var.validate().map_err(|e| ValidationError {
                field: match e.field.as_str() {
                    "env.valueFrom" => format!("{CONTAINER}.env[{i}].valueFrom"),
                    _ => field.clone(),
                },
                ..e
            })?;
            if self.env[..i].iter().any(|v| v.name == var.name) {
                return Err(ValidationError::new(
                    field,
                    &var.name,
                    "is given twice; give each variable once",
                ));
            }
        }
        for (i, source) in self.env_from.iter().enumerate() {
            let field = format!("{CONTAINER}.envFrom[{i}]");
            source.reference(&field)?;
            if let Some(prefix) = &source.prefix {
                let var = EnvVar::new(format!("{prefix}X"), "");
                var.validate().map_err(|e| ValidationError {
                    field: format!("{field}.prefix"),
                    value: prefix.clone(),
                    ..e
                })?;
            }
        }
        crate::volume::validate(&self.volumes, &self.volume_mounts)?;
        for key in self.labels.keys() {
            crate::annotations::check_metadata_key(&format!("{TEMPLATE}.metadata.labels"), key)?;
        }
        for key in self.annotations.keys() {
            crate::annotations::check_metadata_key(&format!("{TEMPLATE}.metadata.annotations"), key)?;
        }
        for reference in self.data_refs() {
            crate::name::validate_name(&reference.field, &reference.name)?;
            if let Some(key) = &reference.key {
                crate::secret::validate_key(key).map_err(|e| ValidationError {
                    field: reference.field.clone(),
                    ..e
                })?;
            }
        }
        if self.port == 0 {
            return Err(ValidationError::new(
                format!("{CONTAINER}.ports[0].containerPort"),
                self.port,
                "must be between 1 and 65535",
            ));
        }
        if self.container_concurrency > MAX_CONTAINER_CONCURRENCY {
            return Err(ValidationError::new(
                format!("{TEMPLATE}.spec.containerConcurrency"),
                self.container_concurrency,
                format!("must be between 0 (unlimited) and {MAX_CONTAINER_CONCURRENCY}"),
            ));
        }
        if self.timeout_seconds == 0 || self.timeout_seconds > MAX_TIMEOUT_SECONDS {
            return Err(ValidationError::new(
                format!("{TEMPLATE}.spec.timeoutSeconds"),
                self.timeout_seconds,
                format!("must be between 1 and {MAX_TIMEOUT_SECONDS} seconds"),
            ));
        }
        if let Some(sink) = &self.sink {
            sink.validate().map_err(|e| ValidationError {
                field: annotation_field(crate::annotations::SINK),
                ..e
            })?;
        }
        for key in self.ce_overrides.keys() {
            crate::eventing::validate_attribute_name(&annotation_field(crate::annotations::CE_OVERRIDES), key)?;
        }
        self.resources
            .limits
            .validate(&format!("{CONTAINER}.resources.limits"))?;
        self.resources
            .requests
            .validate(&format!("{CONTAINER}.resources.requests"))?;
        if let Some(dir) = &self.working_dir
            && !dir.starts_with('/')
        {
            return Err(ValidationError::new(
                format!("{CONTAINER}.workingDir"),
                dir,
                "must be an absolute path, e.g. /app",
            ));
        }
        self.security.validate(self.user)?;
        for (probe, kind) in [
            (&self.startup, ProbeKind::Startup),
            (&self.readiness, ProbeKind::Readiness),
            (&self.liveness, ProbeKind::Liveness),
        ] {
            if let Some(probe) = probe {
                probe.validate(kind)?;
            }
        }
        self.scale.validate()
    }
}

/// Checks that an image reference is plausible (no whitespace, not empty). Whether it exists is
/// asked of the runtime.
pub fn validate_image(image: &str) -> Result<(), ValidationError> {
    if image.is_empty() {
        return Err(ValidationError::new(
            format!("{CONTAINER}.image"),
            image,
            "an image is required, e.g. rouse-samples/hello",
        ));
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) || image.starts_with(['-', ':', '/']) {
        return Err(ValidationError::new(
            format!("{CONTAINER}.image"),
            image,
            "is not an image reference like 'name', 'repo/name:tag' or 'name@sha256:...'",
        ));
    }
    Ok(())
}

/// One environment variable: a value, or one key of a secret or config map (`valueFrom`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

impl EnvVar {
    /// A variable with a value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            value_from: None,
        }
    }

    /// Kubernetes' rule: letters, digits, `_`, `-`, `.`, not starting with a digit.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let name = &self.name;
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(ValidationError::new(
                "env",
                name,
                "a variable name uses letters, digits, '_', '-' or '.', and does not start with a digit",
            ));
        }
        if RESERVED_ENV.contains(&name.as_str()) {
            return Err(ValidationError::new(
                "env",
                name,
                "is set by Rouse for every container (PORT from the container's port)",
            ));
        }
        if let Some(source) = &self.value_from {
            if !self.value.is_empty() {
                return Err(ValidationError::new(
                    "env.valueFrom",
                    name,
                    "has both a value and valueFrom; give one",
                ));
            }
            source.reference("env.valueFrom")?;
        }
        Ok(())
    }
}

impl FromStr for EnvVar {
    type Err = ValidationError;

    /// Parses `NAME=VALUE` (the value may be empty and may contain `=`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((name, value)) = s.split_once('=') else {
            return Err(ValidationError::new(
                "--env",
                s,
                "expected NAME=VALUE, e.g. --env TARGET=World",
            ));
        };
        let var = EnvVar::new(name, value);
        var.validate().map_err(|e| ValidationError {
            field: "--env".to_string(),
            ..e
        })?;
        Ok(var)
    }
}

/// The protocol spoken to the container's port, named as Knative names ports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProtocol {
    /// HTTP/1.1.
    #[default]
    Http1,
    /// HTTP/2 without TLS (prior knowledge), for gRPC and friends.
    H2c,
}

impl fmt::Display for PortProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortProtocol::Http1 => "http1",
            PortProtocol::H2c => "h2c",
        })
    }
}

/// Parses `--port`: `8080`, `http1:8080` or `h2c:8080`.
pub fn parse_port(s: &str) -> Result<(PortProtocol, u16), ValidationError> {
    let (protocol, number) = match s.split_once(':') {
        Some(("http1", n)) => (PortProtocol::Http1, n),
        Some(("h2c", n)) => (PortProtocol::H2c, n),
        Some((other, _)) => {
            return Err(ValidationError::new(
                "--port",
                s,
                format!("unknown protocol '{other}'; use a number (8080), http1:NUMBER or h2c:NUMBER"),
            ));
        }
        None => (PortProtocol::Http1, s),
    };
    match number.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok((protocol, n as u16)),
        _ => Err(ValidationError::new(
            "--port",
            s,
            "must be a port number between 1 and 65535",
        )),
    }
}

/// How many instances a revision may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleBounds {
    /// Fewest instances kept, even when idle.
    #[serde(default)]
    pub min: u32,
    /// Most instances; 0 means no limit beyond the host's.
    #[serde(default)]
    pub max: u32,
    /// Instances started when the revision is created.
    #[serde(default = "default_initial_scale")]
    pub initial: u32,
    /// Per-instance target of the scaling metric; `None` takes the daemon's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u32>,
    /// Percent of the target to aim for; `None` takes the daemon's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization: Option<u32>,
    /// Stable window in milliseconds; `None` takes the daemon's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u64>,
    /// What the autoscaler measures.
    #[serde(default)]
    pub metric: ScaleMetric,
    /// How long instances stay frozen at zero, in milliseconds; 0 removes them at once;
    /// `None` takes the daemon's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_retention_ms: Option<u64>,
    /// Panic window as a percent of the stable window; `None` takes the daemon's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_window_percentage: Option<u32>,
    /// Panic threshold percent; `None` takes the daemon's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_threshold_percentage: Option<u32>,
    /// How long the last instance stays after the decision to go to zero, in milliseconds
    /// (Knative's scale-to-zero-pod-retention-period); `None` takes the daemon's grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_instance_retention_ms: Option<u64>,
    /// How long the count stays at the highest it was wanted over that time after demand
    /// drops, in milliseconds (Knative's scale-down-delay); `None` for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_ms: Option<u64>,
    /// Fewest instances once the revision runs at all (Knative's activation-scale): a wake
    /// from zero starts this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_scale: Option<u32>,
    /// Knative's target-burst-capacity, in thousandths (-1000 for -1): kept and printed
    /// back. In Rouse the activator is always in the request path, which is what -1 asks
    /// for; any other value changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_burst_capacity_milli: Option<i64>,
}

/// Longest scale-down delay Knative accepts.
pub const MAX_SCALE_DOWN_DELAY_MS: u64 = 3_600_000;

/// Shortest stable window Knative accepts.
pub const MIN_STABLE_WINDOW_MS: u64 = 6_000;
/// Longest stable window Knative accepts.
pub const MAX_STABLE_WINDOW_MS: u64 = 3_600_000;

/// What the autoscaler measures per instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleMetric {
    /// Requests in flight at once (Knative's default).
    #[default]
    Concurrency,
    /// Requests per second.
    Rps,
}

impl FromStr for ScaleMetric {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "concurrency" => Ok(ScaleMetric::Concurrency),
            "rps" => Ok(ScaleMetric::Rps),
            _ => Err(ValidationError::new(
                annotation_field("autoscaling.knative.dev/metric"),
                s,
                "must be 'concurrency' or 'rps'",
            )),
        }
    }
}

impl fmt::Display for ScaleMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScaleMetric::Concurrency => "concurrency",
            ScaleMetric::Rps => "rps",
        })
    }
}

fn default_initial_scale() -> u32 {
    DEFAULT_INITIAL_SCALE
}

impl Default for ScaleBounds {
    fn default() -> Self {
        Self {
            min: 0,
            max: 0,
            initial: DEFAULT_INITIAL_SCALE,
            target: None,
            utilization: None,
            window_ms: None,
            metric: ScaleMetric::Concurrency,
            frozen_retention_ms: None,
            panic_window_percentage: None,
            panic_threshold_percentage: None,
            last_instance_retention_ms: None,
            scale_down_delay_ms: None,
            activation_scale: None,
            target_burst_capacity_milli: None,
        }
    }
}

impl ScaleBounds {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.max != 0 && self.min > self.max {
            return Err(ValidationError::new(
                annotation_field("autoscaling.knative.dev/min-scale"),
                self.min,
                format!("must not exceed max-scale ({})", self.max),
            ));
        }
        if self.max != 0 && self.initial > self.max {
            return Err(ValidationError::new(
                annotation_field("autoscaling.knative.dev/initial-scale"),
                self.initial,
                format!("must not exceed max-scale ({})", self.max),
            ));
        }
        if let Some(delay) = self.scale_down_delay_ms
            && delay > MAX_SCALE_DOWN_DELAY_MS
        {
            return Err(ValidationError::new(
                annotation_field("autoscaling.knative.dev/scale-down-delay"),
                format!("{}s", delay / 1000),
                "must be at most 1h, as in Knative",
            ));
        }
        if let Some(n) = self.activation_scale {
            if n == 0 {
                return Err(ValidationError::new(
                    annotation_field("autoscaling.knative.dev/activation-scale"),
                    n,
                    "must be at least 1",
                ));
            }
            if self.max != 0 && n > self.max {
                return Err(ValidationError::new(
                    annotation_field("autoscaling.knative.dev/activation-scale"),
                    n,
                    format!("must not exceed max-scale ({})", self.max),
                ));
            }
        }
        if self.target == Some(0) {
            return Err(ValidationError::new(
                annotation_field("autoscaling.knative.dev/target"),
                0,
                "must be at least 1",
            ));
        }
        if let Some(u) = self.utilization
            && !(1..=100).contains(&u)
        {
            return Err(ValidationError::new(
                annotation_field("autoscaling.knative.dev/target-utilization-percentage"),
                u,
                "must be a percentage between 1 and 100",
            ));
        }
        if let Some(p) = self.panic_window_percentage
            && !(1..=100).contains(&p)
        {
            return Err(ValidationError::new(
                annotation_field("autoscaling.knative.dev/panic-window-percentage"),
                p,
                "must be between 1 and 100",
            ));
        }
        if let Some(p) = self.panic_threshold_percentage
            && !(110..=1000).contains(&p)
        {
            return Err(ValidationError::new(
                annotation_field("autoscaling.knative.dev/panic-threshold-percentage"),
                p,
                "must be between 110 and 1000",
            ));
        }
        if let Some(w) = self.window_ms
            && !(MIN_STABLE_WINDOW_MS..=MAX_STABLE_WINDOW_MS).contains(&w)
        {
            return Err(ValidationError::new(
                annotation_field("autoscaling.knative.dev/window"),
                format!("{}s", w as f64 / 1000.0),
                "must be between 6s and 1h",
            ));
        }
        Ok(())
    }

    /// The instance count a new revision starts with: initial scale, at least min, at most max.
    pub fn initial_instances(&self) -> u32 {
        let n = self.initial.max(self.min);
        if self.max == 0 { n } else { n.min(self.max) }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn env_parses_name_and_value() {
        let var: EnvVar = "TARGET=a=b".parse().unwrap();
        assert_eq!(var, EnvVar::new("TARGET", "a=b"));
        let empty: EnvVar = "EMPTY=".parse().unwrap();
        assert_eq!(empty.value, "");
    }

    #[test]
    fn value_from_and_env_from_are_checked_by_field() {
        let yaml = |env: &str| {
            let mut t = RevisionTemplate::new("img");
            let parsed: serde_json::Value = serde_norway::from_str(env).unwrap();
            t.env = serde_json::from_value(parsed["env"].clone()).unwrap_or_default();
            t.env_from = serde_json::from_value(parsed["envFrom"].clone()).unwrap_or_default();
            t.validate().map(|()| t)
        };
        let t = yaml("env:\n- name: P\n  valueFrom:\n    secretKeyRef: {name: db, key: password}\nenvFrom:\n- configMapRef: {name: app, optional: true}\n  prefix: APP_\n").unwrap();
        let refs: Vec<(DataKind, String, Option<String>, bool)> = t
            .data_refs()
            .into_iter()
            .map(|r| (r.kind, r.name, r.key, r.optional))
            .collect();
        assert_eq!(
            refs,
            [
                (DataKind::ConfigMap, "app".to_string(), None, true),
                (DataKind::Secret, "db".to_string(), Some("password".to_string()), false),
            ]
        );
        for (env, field) in [
            (
                "env:\n- name: P\n  value: x\n  valueFrom:\n    secretKeyRef: {name: db, key: k}\n",
                "spec.template.spec.containers[0].env[0].valueFrom",
            ),
            (
                "env:\n- name: P\n  valueFrom:\n    secretKeyRef: {name: db, key: k}\n    configMapKeyRef: {name: db, key: k}\n",
                "spec.template.spec.containers[0].env[0].valueFrom",
            ),
            (
                "env:\n- name: P\n  valueFrom:\n    secretKeyRef: {name: Bad, key: k}\n",
                "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef",
            ),
            (
                "env:\n- name: P\n  valueFrom:\n    secretKeyRef: {name: db, key: 'a b'}\n",
                "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef",
            ),
            (
                "envFrom:\n- prefix: APP_\n",
                "spec.template.spec.containers[0].envFrom[0]",
            ),
            (
                "envFrom:\n- prefix: '1'\n  secretRef: {name: db}\n",
                "spec.template.spec.containers[0].envFrom[0].prefix",
            ),
        ] {
            assert_eq!(yaml(env).unwrap_err().field, field, "{env}");
        }
    }

    #[test]
    fn env_rejects_malformed_and_reserved() {
        assert!("NOEQUALS".parse::<EnvVar>().unwrap_err().reason.contains("NAME=VALUE"));
        assert!("=x".parse::<EnvVar>().is_err());
        assert!("1A=x".parse::<EnvVar>().is_err());
        assert!("A B=x".parse::<EnvVar>().is_err());
        assert!(
            "PORT=1"
                .parse::<EnvVar>()
                .unwrap_err()
                .reason
                .contains("container's port")
        );
        assert!("K_REVISION=1".parse::<EnvVar>().is_err());
    }

    #[test]
    fn ports_parse_with_and_without_protocol() {
        assert_eq!(parse_port("8080").unwrap(), (PortProtocol::Http1, 8080));
        assert_eq!(parse_port("h2c:9000").unwrap(), (PortProtocol::H2c, 9000));
        assert_eq!(parse_port("http1:1").unwrap(), (PortProtocol::Http1, 1));
        for bad in ["0", "65536", "-1", "x", "grpc:80", "h2c:"] {
            assert_eq!(parse_port(bad).unwrap_err().field, "--port", "{bad}");
        }
    }

    #[test]
    fn template_validation_names_the_yaml_field() {
        let mut t = RevisionTemplate::new("img");
        assert!(t.validate().is_ok());
        t.timeout_seconds = 601;
        assert_eq!(t.validate().unwrap_err().field, "spec.template.spec.timeoutSeconds");
        t.timeout_seconds = 10;
        t.container_concurrency = 1001;
        assert_eq!(
            t.validate().unwrap_err().field,
            "spec.template.spec.containerConcurrency"
        );
        t.container_concurrency = 0;
        t.scale = ScaleBounds {
            min: 3,
            max: 2,
            initial: 1,
            ..ScaleBounds::default()
        };
        assert_eq!(
            t.validate().unwrap_err().field,
            "spec.template.metadata.annotations[autoscaling.knative.dev/min-scale]"
        );
        t.scale = ScaleBounds::default();
        t.env = vec!["A=1".parse().unwrap(), "A=2".parse().unwrap()];
        let twice = t.validate().unwrap_err();
        assert!(twice.reason.contains("twice"));
        assert_eq!(twice.field, "spec.template.spec.containers[0].env[1].name");
    }

    #[test]
    fn images_must_look_like_references() {
        assert!(validate_image("rouse-samples/hello:latest").is_ok());
        assert!(validate_image("").is_err());
        assert!(validate_image("a b").is_err());
        assert!(validate_image("-x").is_err());
    }

    #[test]
    fn initial_instances_respect_bounds() {
        let bounds = |min, max, initial| ScaleBounds {
            min,
            max,
            initial,
            ..ScaleBounds::default()
        };
        assert_eq!(bounds(0, 0, 1).initial_instances(), 1);
        assert_eq!(bounds(3, 0, 1).initial_instances(), 3);
        assert_eq!(bounds(0, 2, 5).initial_instances(), 2);
        assert_eq!(bounds(0, 0, 0).initial_instances(), 0);
    }

    proptest! {
        /// Every port, bare or with its protocol, parses to itself; 0 and past 65535 do not.
        #[test]
        fn ports_parse(port in 1u16.., protocol in "(|http1:|h2c:)", bad in prop_oneof![Just(0u64), 65_536u64..]) {
            let want = if protocol == "h2c:" { PortProtocol::H2c } else { PortProtocol::Http1 };
            prop_assert_eq!(parse_port(&format!("{protocol}{port}")), Ok((want, port)));
            let out_of_range = format!("{protocol}{bad}");
            prop_assert!(parse_port(&out_of_range).is_err(), "{}", out_of_range);
        }

        /// Any text: a port 1-65535 that prints back to itself, or an error naming `--port`.
        #[test]
        fn any_text_gets_an_answer(s in "\\PC{0,16}|[a-z0-9]{0,6}:?[0-9+-]{0,7}") {
            match parse_port(&s) {
                Ok((protocol, port)) => {
                    prop_assert_ne!(port, 0);
                    prop_assert_eq!(parse_port(&format!("{protocol}:{port}")), Ok((protocol, port)));
                }
                Err(e) => prop_assert_eq!(e.field, "--port"),
            }
        }
    }
}
