//! Knative YAML manifests, as `rouse apply -f` reads them: one or many documents in, typed
//! resources out, or errors that name the document, the field path and, for malformed YAML, the
//! line and column.
//!
//! Every document is checked before anything is applied, so a file with one bad document
//! applies nothing. What needs the daemon's state (does a revision named in `spec.traffic`
//! exist?) is checked by the daemon, still before anything is applied.

use std::collections::BTreeMap;
use std::fmt;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::annotations::{CE_OVERRIDES, SINK, apply_annotation, is_scale_annotation};
use crate::error::ValidationError;
use crate::eventing::{Broker, PingSource, Sink, Trigger};
use crate::eventing_knative::{
    EVENTING_API_VERSION, KBroker, KPingSource, KTrigger, SOURCES_API_VERSION, broker_from_object,
    ping_source_from_object, trigger_from_object,
};
use crate::knative::{KService, SERVING_API_VERSION, TrafficTarget};
use crate::name::{validate_name, validate_revision_name};
use crate::probe::ProbeKind;
use crate::secret::{CORE_API_VERSION, DataObject, KConfigMap, KSecret, config_map_from_object, secret_from_object};
use crate::template::{CONTAINER, PortProtocol, Quantities, Resources, RevisionTemplate, ScaleBounds};

/// The only namespace there is, until there are namespaces.
pub const NAMESPACE: &str = "default";

/// One resource a manifest declares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Resource {
    Service(Box<DeclaredService>),
    Broker(Broker),
    Trigger(Trigger),
    PingSource(PingSource),
    Secret(DataObject),
    ConfigMap(DataObject),
}

impl Resource {
    /// The resource's kind, as in `kind:`.
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::Service(_) => "Service",
            Resource::Broker(_) => "Broker",
            Resource::Trigger(_) => "Trigger",
            Resource::PingSource(_) => "PingSource",
            Resource::Secret(_) => "Secret",
            Resource::ConfigMap(_) => "ConfigMap",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Resource::Service(s) => &s.name,
            Resource::Broker(b) => &b.name,
            Resource::Trigger(t) => &t.name,
            Resource::PingSource(p) => &p.name,
            Resource::Secret(d) | Resource::ConfigMap(d) => &d.name,
        }
    }

    /// `Service hello`, as messages name a resource.
    pub fn describe(&self) -> String {
        format!("{} {}", self.kind(), self.name())
    }
}

/// A service as a manifest declares it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeclaredService {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations other than the scale settings (those are in the template).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub template: RevisionTemplate,
    /// `spec.template.metadata.name`: the name the new revision must have.
    #[serde(default)]
    pub revision_name: Option<String>,
    /// `spec.traffic`; empty follows the latest ready revision.
    #[serde(default)]
    pub traffic: Vec<TrafficTarget>,
}

/// A document of a manifest, numbered from 1 in the order of the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub index: usize,
    pub resource: Resource,
}

/// Why a document cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestError {
    /// The document, numbered from 1.
    pub document: usize,
    /// `Service hello`, when the document got that far.
    #[serde(default)]
    pub resource: Option<String>,
    /// The field path, e.g. `spec.template.spec.containers[0].image`.
    #[serde(default)]
    pub field: Option<String>,
    /// Line and column in the file, when known.
    #[serde(default)]
    pub location: Option<(usize, usize)>,
    pub reason: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.document)?;
        if let Some(resource) = &self.resource {
            write!(f, " ({resource})")?;
        }
        if let Some((line, column)) = self.location {
            write!(f, ", line {line} column {column}")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl ManifestError {
    fn new(document: usize, reason: impl Into<String>) -> Self {
        Self {
            document,
            resource: None,
            field: None,
            location: None,
            reason: reason.into(),
        }
    }

    /// An error found while checking a declared resource.
    pub fn invalid(document: usize, resource: &str, e: ValidationError) -> Self {
        let reason = if e.value.is_empty() {
            e.reason
        } else {
            format!("'{}' {}", e.value, e.reason)
        };
        Self {
            document,
            resource: Some(resource.to_string()),
            field: (!e.field.is_empty()).then_some(e.field),
            location: None,
            reason,
        }
    }
}

/// The text of each document with the line it starts on (1-based), split at `---` lines.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if marker || line == "..." {
            documents.push((start, std::mem::take(&mut current)));
            start = i + 2;
            if marker {
                // Content after the marker (usually a comment) belongs to the next document;
                // keep the line so that line numbers stay true.
                current.push_str(&format!("{}\n", &line[3..]));
                start = i + 1;
            }
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    documents.push((start, current));
    documents
        .into_iter()
        .filter(|(_, doc)| {
            doc.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// The first fields of any object: enough to know how to read the rest.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<HeadMeta>,
}

#[derive(Deserialize)]
struct HeadMeta {
    name: Option<String>,
}

/// The kinds `rouse apply` takes, with their apiVersion.
const KINDS: [(&str, &str); 6] = [
    ("Service", SERVING_API_VERSION),
    ("Broker", EVENTING_API_VERSION),
    ("Trigger", EVENTING_API_VERSION),
    ("PingSource", SOURCES_API_VERSION),
    ("Secret", CORE_API_VERSION),
    ("ConfigMap", CORE_API_VERSION),
];

/// Parses a manifest. Every document is checked; all errors are returned, in document order.
pub fn parse(text: &str) -> Result<Vec<Document>, Vec<ManifestError>> {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    let pieces = split_documents(text);
    if pieces.is_empty() {
        return Err(vec![ManifestError::new(
            1,
            "the file declares nothing; it needs at least one object with apiVersion, kind and metadata.name",
        )]);
    }
    for (n, (start, doc)) in pieces.iter().enumerate() {
        match parse_document(n + 1, *start, doc) {
            Ok(resource) => documents.push(Document { index: n + 1, resource }),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(documents) } else { Err(errors) }
}

fn parse_document(index: usize, start: usize, doc: &str) -> Result<Resource, ManifestError> {
    let head: Head = serde_norway::from_str(doc).map_err(|e| yaml_error(index, start, None, e))?;
    let name = head.metadata.and_then(|m| m.name).unwrap_or_default();
    let (Some(api_version), Some(kind)) = (head.api_version, head.kind) else {
        return Err(ManifestError {
            field: Some("apiVersion, kind".to_string()),
            ..ManifestError::new(
                index,
                "every object needs apiVersion and kind, e.g. apiVersion: serving.knative.dev/v1, kind: Service",
            )
        });
    };
    let described = format!("{kind} {name}");
    let supported = || {
        KINDS
            .iter()
            .map(|(k, v)| format!("{k} ({v})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match KINDS.iter().find(|(k, _)| *k == kind) {
        None => Err(ManifestError {
            field: Some("kind".to_string()),
            ..ManifestError::new(
                index,
                format!("Rouse does not know kind '{kind}'; it takes {}", supported()),
            )
        }),
        Some((_, expected)) if *expected != api_version => Err(ManifestError {
            resource: Some(described),
            field: Some("apiVersion".to_string()),
            ..ManifestError::new(
                index,
                format!("'{api_version}' is not the apiVersion of a {kind}; use {expected}"),
            )
        }),
        Some(_) => {
            let invalid = |e| ManifestError::invalid(index, &described, e);
            let now = Utc::now();
            match kind.as_str() {
                "Service" => service(typed::<KService>(index, start, &described, doc)?)
                    .map(|s| Resource::Service(Box::new(s)))
                    .map_err(invalid),
                "Broker" => broker_from_object(&typed::<KBroker>(index, start, &described, doc)?, now)
                    .map(Resource::Broker)
                    .map_err(invalid),
                "Trigger" => trigger_from_object(&typed::<KTrigger>(index, start, &described, doc)?, now)
                    .map(Resource::Trigger)
                    .map_err(invalid),
                "PingSource" => ping_source_from_object(&typed::<KPingSource>(index, start, &described, doc)?, now)
                    .map(Resource::PingSource)
                    .map_err(invalid),
                "Secret" => {
                    let object = typed::<KSecret>(index, start, &described, doc)?;
                    check_namespace("metadata.namespace", object.metadata.namespace.as_deref()).map_err(invalid)?;
                    secret_from_object(object).map(Resource::Secret).map_err(invalid)
                }
                _ => {
                    let object = typed::<KConfigMap>(index, start, &described, doc)?;
                    check_namespace("metadata.namespace", object.metadata.namespace.as_deref()).map_err(invalid)?;
                    config_map_from_object(object).map(Resource::ConfigMap).map_err(invalid)
                }
            }
        }
    }
}

/// Reads a document into its typed object; an unknown field is named with its path.
fn typed<T: serde::de::DeserializeOwned>(
    index: usize,
    start: usize,
    described: &str,
    doc: &str,
) -> Result<T, ManifestError> {
    let deserializer = serde_norway::Deserializer::from_str(doc);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        yaml_error(index, start, Some(described), e.into_inner()).with_field(field)
    })
}

impl ManifestError {
    fn with_field(mut self, field: Option<String>) -> Self {
        self.field = field;
        self
    }
}

/// A YAML or shape error, with its line and column in the file.
fn yaml_error(index: usize, start: usize, described: Option<&str>, e: serde_norway::Error) -> ManifestError {
    let location = e.location().map(|l| (l.line() + start - 1, l.column()));
    let mut reason = e.to_string();
    // The location is reported apart; serde_norway also appends it to the message.
    if let Some(at) = reason.find(" at line ") {
        reason.truncate(at);
    }
    // serde_norway prefixes the path; it is reported apart too.
    if let Some((path, rest)) = reason.split_once(": ")
        && !path.contains(' ')
    {
        reason = rest.to_string();
    }
    if let Some(rest) = reason.strip_prefix("unknown field ") {
        reason = match rest.split_once(", expected ") {
            Some((field, known)) => {
                format!("Rouse does not support the field {field}; remove it (known here: {known})")
            }
            None => format!("Rouse does not support the field {rest}; remove it"),
        };
    }
    ManifestError {
        resource: described.map(str::to_string),
        location,
        ..ManifestError::new(index, reason)
    }
}

/// Checks `metadata.namespace`.
pub fn check_namespace(field: &str, namespace: Option<&str>) -> Result<(), ValidationError> {
    match namespace {
        None | Some(NAMESPACE) => Ok(()),
        Some(other) => Err(ValidationError::new(
            field,
            other,
            "namespaces other than 'default' are not supported yet; remove metadata.namespace or set it to default",
        )),
    }
}

/// A Knative Service object as the service it declares.
pub fn service(object: KService) -> Result<DeclaredService, ValidationError> {
    let name = object.metadata.name;
    validate_name("metadata.name", &name)?;
    check_namespace("metadata.namespace", object.metadata.namespace.as_deref())?;
    let template_meta = object.spec.template.metadata;
    check_namespace("spec.template.metadata.namespace", template_meta.namespace.as_deref())?;
    let revision_name = (!template_meta.name.is_empty()).then_some(template_meta.name);
    if let Some(wanted) = &revision_name {
        validate_revision_name("spec.template.metadata.name", &name, wanted)?;
    }
    // Scale settings may sit on the service (applied first) or the template (which wins).
    let mut scale = ScaleBounds::default();
    let mut annotations = BTreeMap::new();
    for (key, value) in &object.metadata.labels {
        crate::annotations::check_service_label("metadata.labels", key, value)?;
    }
    for (key, value) in &object.metadata.annotations {
        if key == crate::rollout::ROLLOUT_DURATION {
            crate::rollout::parse_rollout_duration(value)?;
            annotations.insert(key.clone(), value.clone());
            continue;
        }
        crate::annotations::check_metadata_key("metadata.annotations", key)?;
        if is_scale_annotation(key) {
            apply_annotation(&mut scale, key, value).map_err(|e| at("metadata.annotations", key, e))?;
        } else {
            annotations.insert(key.clone(), value.clone());
        }
    }
    let mut template_annotations = BTreeMap::new();
    let mut sink = None;
    let mut ce_overrides = BTreeMap::new();
    for (key, value) in &template_meta.annotations {
        if key == SINK {
            sink = Some(Sink::parse(value).map_err(|e| at("spec.template.metadata.annotations", key, e))?);
        } else if key == CE_OVERRIDES {
            ce_overrides = serde_json::from_str(value).map_err(|e| {
                ValidationError::new(
                    format!("spec.template.metadata.annotations[{key}]"),
                    value,
                    format!(
                        "must be a JSON object of extension names to string values, e.g. {{\"team\": \"blue\"}}: {e}"
                    ),
                )
            })?;
        } else if is_scale_annotation(key) {
            apply_annotation(&mut scale, key, value).map_err(|e| at("spec.template.metadata.annotations", key, e))?;
        } else {
            template_annotations.insert(key.clone(), value.clone());
        }
    }
    let spec = object.spec.template.spec;
    let container = match <[_; 1]>::try_from(spec.containers) {
        Ok([container]) => container,
        Err(containers) => {
            return Err(ValidationError::new(
                "spec.template.spec.containers",
                format!("{} containers", containers.len()),
                "Rouse runs exactly one container per instance; sidecars are not supported",
            ));
        }
    };
    let (protocol, port) = match container.ports.as_slice() {
        [] => (PortProtocol::Http1, crate::template::DEFAULT_PORT),
        [port] => {
            let protocol = match port.name.as_deref() {
                None | Some("http1") => PortProtocol::Http1,
                Some("h2c") => PortProtocol::H2c,
                Some(other) => {
                    return Err(ValidationError::new(
                        format!("{CONTAINER}.ports[0].name"),
                        other,
                        "a port is named http1 (HTTP/1.1) or h2c (HTTP/2 without TLS), or not at all",
                    ));
                }
            };
            if let Some(p) = port.protocol.as_deref().filter(|p| *p != "TCP") {
                return Err(ValidationError::new(
                    format!("{CONTAINER}.ports[0].protocol"),
                    p,
                    "only TCP is supported",
                ));
            }
            (protocol, port.container_port)
        }
        more => {
            return Err(ValidationError::new(
                format!("{CONTAINER}.ports"),
                format!("{} ports", more.len()),
                "a container serves one port; list one containerPort",
            ));
        }
    };
    let resources = container
        .resources
        .map(|r| {
            let quantities = |q: Option<crate::knative::QuantityMap>| {
                q.map(|q| Quantities {
                    cpu: q.cpu,
                    memory: q.memory,
                })
                .unwrap_or_default()
            };
            Resources {
                limits: quantities(r.limits),
                requests: quantities(r.requests),
            }
        })
        .unwrap_or_default();
    let probe = |probe: Option<crate::knative::Probe>, kind| {
        probe
            .map(|probe| crate::probe::from_knative(probe, kind, port))
            .transpose()
    };
    let startup = probe(container.startup_probe, ProbeKind::Startup)?;
    let readiness = probe(container.readiness_probe, ProbeKind::Readiness)?;
    let liveness = probe(container.liveness_probe, ProbeKind::Liveness)?;
    let (user, security) = container
        .security_context
        .map(crate::security::SecurityContext::into_template)
        .transpose()?
        .unwrap_or_default();
    let template = RevisionTemplate {
        image: container.image,
        env: container.env,
        env_from: container.env_from,
        volumes: spec.volumes,
        volume_mounts: container.volume_mounts,
        port,
        protocol,
        container_concurrency: spec.container_concurrency,
        timeout_seconds: spec.timeout_seconds,
        scale,
        container_name: container.name,
        command: container.command,
        args: container.args,
        resources,
        readiness,
        liveness,
        startup,
        labels: template_meta.labels,
        annotations: template_annotations,
        sink,
        ce_overrides,
        user,
        security,
        working_dir: container.working_dir,
        image_digest: None,
    };
    template.validate()?;
    crate::traffic::from_spec(&object.spec.traffic, "spec.traffic")?;
    Ok(DeclaredService {
        name,
        labels: object.metadata.labels,
        annotations,
        template,
        revision_name,
        traffic: object.spec.traffic,
    })
}

fn at(field: &str, key: &str, e: ValidationError) -> ValidationError {
    ValidationError::new(format!("{field}[{key}]"), e.value, e.reason)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const TWO: &str = r#"
# A service and its split
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
  namespace: default
  labels:
    team: web
  annotations:
    autoscaling.knative.dev/max-scale: "3"
spec:
  template:
    metadata:
      name: hello-v2
      annotations:
        autoscaling.knative.dev/target: "10"
        note: kept
        rouse.dev/sink: broker:default
        rouse.dev/ce-overrides: '{"team": "blue"}'
    spec:
      containerConcurrency: 5
      timeoutSeconds: 30
      containers:
        - name: app
          image: rouse-samples/hello
          args: ["--greeting", "hi"]
          ports:
            - name: h2c
              containerPort: 9000
          env:
            - name: TARGET
              value: Rouse
          resources:
            limits:
              cpu: 500m
              memory: 128Mi
            requests:
              cpu: 1
          readinessProbe:
            httpGet:
              path: /healthz
            periodSeconds: 2
  traffic:
    - revisionName: hello-00001
      percent: 50
    - latestRevision: true
      percent: 50
      tag: next
---
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: other
spec:
  template:
    spec:
      containers:
        - image: rouse-samples/hello
"#;

    #[test]
    fn documents_parse_into_services() {
        let docs = parse(TWO).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].index, 2);
        let Resource::Service(hello) = &docs[0].resource else {
            panic!()
        };
        assert_eq!(hello.name, "hello");
        assert_eq!(hello.labels["team"], "web");
        assert_eq!(hello.revision_name.as_deref(), Some("hello-v2"));
        let t = &hello.template;
        assert_eq!((t.port, t.protocol), (9000, PortProtocol::H2c));
        assert_eq!((t.container_concurrency, t.timeout_seconds), (5, 30));
        assert_eq!((t.scale.max, t.scale.target), (3, Some(10)));
        assert_eq!(t.annotations.len(), 1, "only the free-form note is kept as is");
        assert_eq!(t.annotations["note"], "kept");
        assert_eq!(t.sink, Some(Sink::Broker("default".into())));
        assert_eq!(t.ce_overrides["team"], "blue");
        assert_eq!(
            t.args.as_deref(),
            Some(&["--greeting".to_string(), "hi".to_string()][..])
        );
        assert_eq!(t.resources.limits.cpu_millis(), Some(500));
        assert_eq!(t.resources.limits.memory_bytes(), Some(128 << 20));
        assert_eq!(t.resources.requests.cpu.as_deref(), Some("1"));
        assert_eq!(
            t.readiness.as_ref().unwrap().action,
            crate::probe::ProbeAction::HttpGet {
                path: "/healthz".into(),
                headers: Vec::new()
            }
        );
        assert_eq!(hello.traffic.len(), 2);
        let Resource::Service(other) = &docs[1].resource else {
            panic!()
        };
        assert_eq!(other.template, RevisionTemplate::new("rouse-samples/hello"));
    }

    fn errors(text: &str) -> Vec<ManifestError> {
        parse(text).unwrap_err()
    }

    fn service_with(extra_spec: &str) -> String {
        format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  template:\n    spec:\n      containers:\n        - image: img\n{extra_spec}"
        )
    }

    #[test]
    fn unknown_fields_are_named_with_their_path_and_line() {
        let e = &errors(&service_with("          lifecycle: {}\n"))[0];
        assert_eq!(e.document, 1);
        assert_eq!(e.resource.as_deref(), Some("Service s"));
        assert_eq!(e.field.as_deref(), Some("spec.template.spec.containers[0].lifecycle"));
        assert!(e.reason.contains("does not support the field `lifecycle`"), "{e}");
        assert_eq!(e.location.map(|l| l.0), Some(10), "{e}");
    }

    #[test]
    fn malformed_yaml_has_line_and_column() {
        let text = format!("{}---\nkind: Service\nmetadata: {{name: [\n", service_with(""));
        let e = &errors(&text)[0];
        assert_eq!(e.document, 2);
        let (line, _) = e.location.expect("a location");
        assert!((12..=13).contains(&line), "{e}");
    }

    #[test]
    fn reserved_keys_are_honoured_or_refused_by_name() {
        let with_meta =
            |meta: &str| service_with("").replace("metadata:\n  name: s\n", &format!("metadata:\n  name: s\n{meta}"));
        for (meta, field) in [
            (
                "  labels:\n    serving.knative.dev/visibility: cluster-local\n",
                "metadata.labels[serving.knative.dev/visibility]",
            ),
            (
                "  annotations:\n    serving.knative.dev/rollout-duration: soon\n",
                "metadata.annotations[serving.knative.dev/rollout-duration]",
            ),
            (
                "  labels:\n    serving.knative.dev/rollout-duration: 380s\n",
                "metadata.labels[serving.knative.dev/rollout-duration]",
            ),
            (
                "  labels:\n    autoscaling.knative.dev/min-scale: '1'\n",
                "metadata.labels[autoscaling.knative.dev/min-scale]",
            ),
            (
                "  annotations:\n    features.knative.dev/http-full-duplex: Enabled\n",
                "metadata.annotations[features.knative.dev/http-full-duplex]",
            ),
            (
                "  annotations:\n    rouse.dev/nonsense: x\n",
                "metadata.annotations[rouse.dev/nonsense]",
            ),
        ] {
            let e = &errors(&with_meta(meta))[0];
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
        }
        let e = &errors(&with_meta("  labels:\n    networking.knative.dev/visibility: public\n"))[0];
        assert!(e.reason.contains("takes only cluster-local"), "{e}");
        let e = &errors(&with_meta(
            "  annotations:\n    networking.knative.dev/visibility: cluster-local\n",
        ))[0];
        assert!(e.reason.contains("is a label of the service"), "{e}");
        let private = parse(&with_meta(
            "  labels:\n    networking.knative.dev/visibility: cluster-local\n",
        ))
        .unwrap();
        let Resource::Service(private) = &private[0].resource else {
            panic!()
        };
        assert!(crate::annotations::is_cluster_local(&private.labels));
        // Knative's own bookkeeping and user keys are kept; the new autoscaling keys read.
        let docs = parse(&with_meta(
            "  annotations:\n    serving.knative.dev/creator: me\n    example.com/team: shop\n    autoscaling.knative.dev/scale-down-delay: 30s\n    autoscaling.knative.dev/activation-scale: '2'\n    autoscaling.knative.dev/target-burst-capacity: '-1'\n    serving.knative.dev/rollout-duration: 380s\n",
        ))
        .unwrap();
        let Resource::Service(service) = &docs[0].resource else {
            panic!()
        };
        assert_eq!(service.annotations.len(), 3);
        assert_eq!(service.annotations["serving.knative.dev/rollout-duration"], "380s");
        assert_eq!(service.template.scale.scale_down_delay_ms, Some(30_000));
        assert_eq!(service.template.scale.activation_scale, Some(2));
        assert_eq!(service.template.scale.target_burst_capacity_milli, Some(-1000));
    }

    #[test]
    fn secrets_and_config_maps_are_documents_too() {
        let docs = parse(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  labels: {team: shop}\ntype: Opaque\nstringData:\n  password: hunter2\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n  namespace: default\ndata:\n  MODE: fast\n",
        )
        .unwrap();
        let Resource::Secret(secret) = &docs[0].resource else {
            panic!("{:?}", docs[0].resource)
        };
        assert_eq!((secret.name.as_str(), secret.labels["team"].as_str()), ("db", "shop"));
        assert_eq!(docs[1].resource.describe(), "ConfigMap app");
        // What the CLI sends the daemon keeps its values.
        let json = serde_json::to_string(&docs[0].resource).unwrap();
        assert_eq!(serde_json::from_str::<Resource>(&json).unwrap(), docs[0].resource);
        let e = &errors("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\n")[0];
        assert_eq!(e.field.as_deref(), Some("metadata.namespace"));
        let e = &errors("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\nbinary: {}\n")[0];
        assert!(e.reason.contains("binary"), "{e}");
    }

    #[test]
    fn wrong_kind_or_version_is_refused() {
        let e = &errors("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n")[0];
        assert!(e.reason.contains("does not know kind 'Pod'"), "{e}");
        let e = &errors("apiVersion: apps/v1\nkind: ConfigMap\nmetadata:\n  name: x\n")[0];
        assert!(e.reason.contains("use v1"), "{e}");
        let e = &errors(&service_with("").replace("serving.knative.dev/v1", "serving.knative.dev/v1beta1"))[0];
        assert_eq!(e.field.as_deref(), Some("apiVersion"));
        assert!(e.reason.contains("use serving.knative.dev/v1"), "{e}");
        let e = &errors("metadata:\n  name: x\n")[0];
        assert!(e.reason.contains("needs apiVersion and kind"), "{e}");
    }

    #[test]
    fn every_bad_document_is_reported() {
        let bad = service_with("").replace("name: s", "name: Bad_Name");
        let text = format!(
            "{bad}---\n{}---\n{}",
            service_with(""),
            service_with("").replace("img", "")
        );
        let all = errors(&text);
        assert_eq!(all.iter().map(|e| e.document).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(all[0].field.as_deref(), Some("metadata.name"));
        assert_eq!(all[1].field.as_deref(), Some("spec.template.spec.containers[0].image"));
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            ("metadata:\n  namespace: prod\n", "metadata.namespace"),
            (
                "          ports:\n            - name: grpc\n              containerPort: 1\n",
                "spec.template.spec.containers[0].ports[0].name",
            ),
            (
                "          resources:\n            limits:\n              memory: lots\n",
                "spec.template.spec.containers[0].resources.limits.memory",
            ),
            (
                "          readinessProbe:\n            periodSeconds: 1\n",
                "spec.template.spec.containers[0].readinessProbe",
            ),
            (
                "  traffic:\n    - latestRevision: true\n      percent: 90\n",
                "spec.traffic",
            ),
            (
                "  traffic:\n    - latestRevision: true\n      percent: 100\n      tag: a\n    - revisionName: s-00001\n      tag: a\n",
                "spec.traffic[1].tag",
            ),
            (
                "          env:\n            - name: X\n              valueFrom: {}\n",
                "spec.template.spec.containers[0].env[0].valueFrom",
            ),
        ];
        for (extra, field) in cases {
            let text = if extra.starts_with("metadata") {
                service_with("").replace("metadata:\n", extra)
            } else {
                service_with(extra)
            };
            let all = errors(&text);
            assert_eq!(all[0].field.as_deref(), Some(field), "{extra}: {}", all[0]);
        }
    }

    #[test]
    fn a_described_service_parses_back_to_the_same_template() {
        let Resource::Service(declared) = &parse(TWO).unwrap()[0].resource else {
            panic!()
        };
        let (mut service, _) = crate::Service::create("hello", declared.template.clone(), Utc::now());
        service.labels = declared.labels.clone();
        let yaml = serde_norway::to_string(&crate::knative::service_object(&service, None)).unwrap();
        let Resource::Service(back) = &parse(&yaml).unwrap()[0].resource else {
            panic!()
        };
        assert_eq!(back.template, declared.template, "{yaml}");
        assert_eq!(back.labels, declared.labels);
    }

    #[test]
    fn eventing_kinds_parse() {
        let text = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: orders\n---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\nspec:\n  broker: orders\n  filter:\n    attributes:\n      type: order.created\n  subscriber:\n    ref:\n      apiVersion: serving.knative.dev/v1\n      kind: Service\n      name: shop\n---\napiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata:\n  name: tick\nspec:\n  schedule: \"*/1 * * * *\"\n  data: '{\"m\": 1}'\n  sink:\n    ref:\n      apiVersion: eventing.knative.dev/v1\n      kind: Broker\n      name: orders\n";
        let docs = parse(text).unwrap();
        let kinds: Vec<String> = docs.iter().map(|d| d.resource.describe()).collect();
        assert_eq!(kinds, ["Broker orders", "Trigger t", "PingSource tick"]);
        let Resource::Trigger(t) = &docs[1].resource else {
            panic!()
        };
        assert_eq!(t.subscriber, crate::eventing::Sink::Service("shop".into()));
        let bad = text.replace("  broker: orders", "  broker: orders\n  bogus: 1");
        let e = &parse(&bad).unwrap_err()[0];
        assert_eq!(e.field.as_deref(), Some("spec.bogus"), "{e}");
        assert_eq!(e.document, 2);
    }

    #[test]
    fn an_empty_file_is_an_error() {
        assert!(errors("# nothing\n---\n")[0].reason.contains("declares nothing"));
    }

    /// A YAML double-quoted scalar: JSON's string syntax is one.
    fn quoted(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    /// The parts of a service a manifest commonly sets.
    #[derive(Debug, Clone)]
    struct Parts {
        name: String,
        image: String,
        env: BTreeMap<String, String>,
        port: u16,
        concurrency: u32,
        timeout: u32,
        labels: BTreeMap<String, String>,
    }

    /// Valid parts: what `validate` accepts.
    fn service_parts() -> impl Strategy<Value = Parts> {
        (
            "[a-z]([a-z0-9-]{0,20}[a-z0-9])?",
            "[a-z0-9]{1,10}(/[a-z0-9._-]{1,10})?(:[a-zA-Z0-9._-]{1,8})?",
            proptest::collection::btree_map("[A-Za-z_][A-Za-z0-9_.-]{0,10}", "\\PC{0,20}", 0..4),
            1u16..,
            0u32..=1000,
            1u32..=600,
            proptest::collection::btree_map("[a-z]{1,8}(/[a-z]{1,8})?", "\\PC{0,20}", 0..3),
        )
            .prop_filter("not a reserved variable", |(_, _, env, ..)| {
                !env.keys().any(|k| crate::template::RESERVED_ENV.contains(&k.as_str()))
            })
            .prop_map(|(name, image, env, port, concurrency, timeout, labels)| Parts {
                name,
                image,
                env,
                port,
                concurrency,
                timeout,
                labels,
            })
    }

    proptest! {
        /// A service written in YAML reads as what it says, and prints back (as `describe -o
        /// yaml` prints it) to YAML that reads as the same.
        #[test]
        fn services_parse_and_print_back(parts in service_parts()) {
            let Parts { name, image, env, port, concurrency, timeout, labels } = parts;
            let mut text = format!("apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: {name}\n");
            if !labels.is_empty() {
                text.push_str("  labels:\n");
                for (k, v) in &labels {
                    text.push_str(&format!("    {k}: {}\n", quoted(v)));
                }
            }
            text.push_str(&format!(
                "spec:\n  template:\n    spec:\n      containerConcurrency: {concurrency}\n      timeoutSeconds: {timeout}\n      containers:\n        - image: {}\n          ports:\n            - containerPort: {port}\n",
                quoted(&image)
            ));
            if !env.is_empty() {
                text.push_str("          env:\n");
                for (k, v) in &env {
                    text.push_str(&format!("            - name: {}\n              value: {}\n", quoted(k), quoted(v)));
                }
            }
            let documents = parse(&text).map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
            let Resource::Service(declared) = &documents[0].resource else {
                return Err(TestCaseError::fail("not a service"));
            };
            let t = &declared.template;
            prop_assert_eq!((&declared.name, &t.image, t.port), (&name, &image, port));
            prop_assert_eq!((t.container_concurrency, t.timeout_seconds), (concurrency, timeout));
            let read_env: BTreeMap<String, String> = t.env.iter().map(|v| (v.name.clone(), v.value.clone())).collect();
            prop_assert_eq!(&read_env, &env);
            prop_assert_eq!(&declared.labels, &labels);

            let (mut service, _) = crate::Service::create(&name, t.clone(), Utc::now());
            service.labels = declared.labels.clone();
            let printed = serde_norway::to_string(&crate::knative::service_object(&service, None)).unwrap();
            let back = parse(&printed).map_err(|e| TestCaseError::fail(format!("{e:?}\n{printed}")))?;
            let Resource::Service(back) = &back[0].resource else {
                return Err(TestCaseError::fail("not a service"));
            };
            prop_assert_eq!(&back.template, t, "{}", printed);
            prop_assert_eq!(&back.labels, &labels);
        }

        /// Any text, and a valid manifest with one byte changed: documents or errors that
        /// name a document of the file, never a panic.
        #[test]
        fn any_text_gets_an_answer(
            noise in "\\PC{0,80}",
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut changed = TWO.as_bytes().to_vec();
            changed[at.index(TWO.len())] = byte;
            let changed = String::from_utf8_lossy(&changed).into_owned();
            for text in [noise.as_str(), changed.as_str()] {
                let documents = text.split("\n---").count() + text.split("\n...").count();
                match parse(text) {
                    Ok(docs) => prop_assert!(docs.iter().all(|d| d.index >= 1 && d.index <= documents)),
                    Err(errors) => {
                        prop_assert!(!errors.is_empty());
                        prop_assert!(errors.iter().all(|e| e.document >= 1 && e.document <= documents), "{:?}", errors);
                    }
                }
            }
        }
    }
}
