//! Knative-shaped objects (`serving.knative.dev/v1`), as `describe -o json|yaml` prints them.
//!
//! Field names and nesting follow Knative Serving so that users can read them with the same
//! eyes (and tools) they use on a cluster.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::name::revision_name;
use crate::service::{Revision, Service};
use crate::template::{EnvVar, PortProtocol, Quantities, RevisionTemplate};

pub const SERVING_API_VERSION: &str = "serving.knative.dev/v1";

/// A Knative Service object. Input (`rouse apply`) refuses fields Rouse does not support, by
/// name; `status` is output only and ignored on input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KService {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ServiceStatus>,
}

/// A Knative Revision object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KRevision {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: RevisionSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RevisionStatus>,
}

/// Kubernetes object metadata. The fields a cluster adds (uid, resourceVersion, ...) are
/// accepted on input so that a manifest exported from a cluster applies, and never printed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing)]
    pub uid: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub resource_version: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub self_link: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub managed_fields: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    pub template: RevisionTemplateSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficTarget>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevisionTemplateSpec {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: RevisionSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevisionSpec {
    #[serde(default)]
    pub container_concurrency: u32,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::volume::Volume>,
}

fn default_timeout() -> u32 {
    crate::template::DEFAULT_TIMEOUT_SECONDS
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<crate::secret::EnvFromSource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<crate::volume::VolumeMount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// The directory the command starts in (Kubernetes' `workingDir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<crate::security::SecurityContext>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub container_port: u16,
    /// Only `TCP`, Kubernetes' default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// `resources`: limits and requests of CPU and memory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRequirements {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<QuantityMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<QuantityMap>,
}

/// `cpu` and `memory` quantities; YAML may write them as numbers (`cpu: 1`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuantityMap {
    #[serde(default, deserialize_with = "quantity", skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, deserialize_with = "quantity", skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

fn quantity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Quantity {
        Text(String),
        Whole(u64),
        Fraction(f64),
    }
    Ok(Some(match Quantity::deserialize(d)? {
        Quantity::Text(s) => s,
        Quantity::Whole(n) => n.to_string(),
        Quantity::Fraction(f) => f.to_string(),
    }))
}

/// `readinessProbe`, `livenessProbe` and `startupProbe` (see [`crate::probe`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGetAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// When given, the container's port (Knative probes the serving port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Refused when given: a probe goes to the instance itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Only `HTTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<crate::probe::HttpHeader>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSocketAction {
    /// When given, the container's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Refused when given: a probe goes to the instance itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcAction {
    /// The container's port; Kubernetes requires it, Rouse fills it in when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecAction {
    #[serde(default)]
    pub command: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceStatus {
    pub observed_generation: u64,
    pub url: String,
    pub conditions: Vec<Condition>,
    pub latest_created_revision_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ready_revision_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficTarget>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionStatus {
    pub conditions: Vec<Condition>,
    /// Instances running (Knative's count of ready pods).
    pub actual_replicas: u32,
    /// Instances the platform wants.
    pub desired_replicas: u32,
    /// The image each container runs, resolved when the revision was made (Knative's
    /// `containerStatuses[].imageDigest`); empty for a revision with tag semantics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_statuses: Vec<ContainerStatus>,
}

/// The name of a revision's container when its template gives none (Knative's).
pub const DEFAULT_CONTAINER_NAME: &str = "user-container";

/// What one container of a revision runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    /// The container's name (`user-container` when the template names none, as Knative).
    pub name: String,
    /// `repo@sha256:...`, or the image id for an image only ever built here.
    pub image_digest: String,
}

/// One entry of a service's traffic (Knative's `spec.traffic` and `status.traffic`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficTarget {
    /// The revision named; `None` with `latest_revision` = the latest ready revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_revision: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    /// Gives the target its own URL: `http://{tag}-{service}.{domain}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Set in status for tagged targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A Knative status condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// The state of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl Condition {
    pub fn new(kind: &str, status: ConditionStatus, reason: Option<&str>, message: Option<String>) -> Self {
        let status = match status {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        };
        Condition {
            kind: kind.to_string(),
            status: status.to_string(),
            reason: reason.map(str::to_string),
            message,
            last_transition_time: None,
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Formats a time as Kubernetes does (RFC 3339, seconds, `Z`).
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn revision_spec(template: &RevisionTemplate) -> RevisionSpec {
    let port_name = match template.protocol {
        PortProtocol::Http1 => None,
        PortProtocol::H2c => Some(PortProtocol::H2c.to_string()),
    };
    let quantities = |q: &Quantities| {
        (!q.is_empty()).then(|| QuantityMap {
            cpu: q.cpu.clone(),
            memory: q.memory.clone(),
        })
    };
    let resources = (!template.resources.is_empty()).then(|| ResourceRequirements {
        limits: quantities(&template.resources.limits),
        requests: quantities(&template.resources.requests),
    });
    let probe = |probe: &Option<crate::probe::Probe>| {
        probe
            .as_ref()
            .map(|probe| crate::probe::to_knative(probe, template.port))
    };
    RevisionSpec {
        container_concurrency: template.container_concurrency,
        timeout_seconds: template.timeout_seconds,
        containers: vec![Container {
            name: template.container_name.clone(),
            image: template.image.clone(),
            command: template.command.clone(),
            args: template.args.clone(),
            env: template.env.clone(),
            env_from: template.env_from.clone(),
            volume_mounts: template.volume_mounts.clone(),
            ports: vec![ContainerPort {
                name: port_name,
                container_port: template.port,
                protocol: None,
            }],
            resources,
            readiness_probe: probe(&template.readiness),
            liveness_probe: probe(&template.liveness),
            startup_probe: probe(&template.startup),
            working_dir: template.working_dir.clone(),
            security_context: template.security.to_knative(template.user),
        }],
        volumes: template.volumes.clone(),
    }
}

/// A revision's annotations: its scale settings as Knative writes them, then the user's own.
fn template_annotations(template: &RevisionTemplate) -> BTreeMap<String, String> {
    let mut annotations = crate::annotations::scale_annotations(&template.scale);
    if let Some(sink) = &template.sink {
        annotations.insert(crate::annotations::SINK.to_string(), sink.to_string());
    }
    if !template.ce_overrides.is_empty() {
        let overrides = serde_json::to_string(&template.ce_overrides).expect("a map of strings serializes");
        annotations.insert(crate::annotations::CE_OVERRIDES.to_string(), overrides);
    }
    annotations.extend(template.annotations.clone());
    annotations
}

/// The Knative object for a service, with the given status.
pub fn service_object(service: &Service, status: Option<ServiceStatus>) -> KService {
    // A name the user chose is part of the template (apply it again: nothing changes); a
    // generated one is not (apply an edited template: the next number is generated).
    let chosen_name = if service.latest_revision == revision_name(&service.name, service.revision_number) {
        String::new()
    } else {
        service.latest_revision.clone()
    };
    KService {
        api_version: SERVING_API_VERSION.to_string(),
        kind: "Service".to_string(),
        metadata: ObjectMeta {
            name: service.name.clone(),
            namespace: Some("default".to_string()),
            generation: Some(service.generation),
            creation_timestamp: Some(timestamp(service.created_at)),
            labels: service.labels.clone(),
            annotations: service.annotations.clone(),
            ..ObjectMeta::default()
        },
        spec: ServiceSpec {
            template: RevisionTemplateSpec {
                metadata: ObjectMeta {
                    name: chosen_name,
                    labels: service.template.labels.clone(),
                    annotations: template_annotations(&service.template),
                    ..ObjectMeta::default()
                },
                spec: revision_spec(&service.template),
            },
            traffic: crate::traffic::spec_traffic(&service.traffic),
        },
        status,
    }
}

/// The Knative object for a revision, with the given status.
pub fn revision_object(revision: &Revision, status: Option<RevisionStatus>) -> KRevision {
    let mut labels = revision.template.labels.clone();
    labels.insert("serving.knative.dev/service".to_string(), revision.service.clone());
    labels.insert(
        "serving.knative.dev/configuration".to_string(),
        revision.service.clone(),
    );
    labels.insert(
        "serving.knative.dev/configurationGeneration".to_string(),
        revision.generation.to_string(),
    );
    KRevision {
        api_version: SERVING_API_VERSION.to_string(),
        kind: "Revision".to_string(),
        metadata: ObjectMeta {
            name: revision.name.clone(),
            namespace: Some("default".to_string()),
            generation: Some(1),
            creation_timestamp: Some(timestamp(revision.created_at)),
            labels,
            annotations: template_annotations(&revision.template),
            ..ObjectMeta::default()
        },
        spec: revision_spec(&revision.template),
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::ScaleBounds;

    #[test]
    fn service_object_is_knative_shaped() {
        let mut template = RevisionTemplate::new("rouse-samples/hello");
        template.env = vec!["TARGET=Rouse".parse().unwrap()];
        template.container_concurrency = 10;
        template.scale = ScaleBounds {
            min: 1,
            max: 3,
            initial: 1,
            ..ScaleBounds::default()
        };
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let (svc, _) = Service::create("hello", template, now);
        let status = ServiceStatus {
            observed_generation: 1,
            url: "http://hello.localhost:8080".into(),
            conditions: vec![Condition::new("Ready", ConditionStatus::True, None, None)],
            latest_created_revision_name: "hello-00001".into(),
            latest_ready_revision_name: Some("hello-00001".into()),
            traffic: vec![],
        };
        let json = serde_json::to_value(service_object(&svc, Some(status))).unwrap();
        assert_eq!(json["apiVersion"], "serving.knative.dev/v1");
        assert_eq!(json["kind"], "Service");
        assert_eq!(json["metadata"]["name"], "hello");
        assert_eq!(json["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
        let spec = &json["spec"]["template"]["spec"];
        assert_eq!(spec["containerConcurrency"], 10);
        assert_eq!(spec["timeoutSeconds"], 300);
        assert_eq!(spec["containers"][0]["image"], "rouse-samples/hello");
        assert_eq!(spec["containers"][0]["env"][0]["name"], "TARGET");
        assert_eq!(spec["containers"][0]["ports"][0]["containerPort"], 8080);
        assert_eq!(
            json["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"],
            "3"
        );
        assert_eq!(json["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(json["status"]["latestReadyRevisionName"], "hello-00001");
        let back: KService = serde_json::from_value(json).unwrap();
        assert_eq!(back.metadata.name, "hello");
    }
}
