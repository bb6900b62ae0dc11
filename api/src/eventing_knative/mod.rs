//! Knative-shaped eventing objects: `eventing.knative.dev/v1` Broker and Trigger, and
//! `sources.knative.dev/v1` PingSource, as `rouse apply -f` reads them and `-o yaml|json` prints them.
//!
//! Field names and nesting follow Knative so that manifests written for a cluster apply here.
//! Input refuses, by name, any spec field Rouse does not support (`deny_unknown_fields`), and
//! accepts what a cluster adds to exported manifests (`status`, `uid`, `resourceVersion`, ...).
//! Converting an object to a record checks everything and names the failing field by its full
//! path (`spec.filters[1].prefix`); an object printed from a record reads back to the same record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::knative::{Condition, ObjectMeta};

mod from_object;
mod to_object;

pub use from_object::{broker_from_object, ping_source_from_object, trigger_from_object};
pub use to_object::{broker_object, broker_url, ping_source_object, trigger_object};

pub const EVENTING_API_VERSION: &str = "eventing.knative.dev/v1";
pub const SOURCES_API_VERSION: &str = "sources.knative.dev/v1";

/// Knative's schedule when a PingSource gives none: every minute.
pub const DEFAULT_PING_SCHEDULE: &str = "* * * * *";

// === objects ===

/// A Knative Broker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KBroker {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: BrokerSpec,
    /// Output only: ignored on input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BrokerStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrokerSpec {
    /// Delivery options for the broker's triggers that give none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<KDelivery>,
}

/// A broker's status. Not strict: whatever else a cluster wrote there is ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Addressable>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Where a broker accepts events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Addressable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A Knative Trigger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KTrigger {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: TriggerSpec,
    /// Output only: ignored on input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TriggerStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerSpec {
    #[serde(default)]
    pub broker: String,
    /// The original dialect: exact matches on attributes, all of which must pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<TriggerFilter>,
    /// The CloudEvents Subscriptions API dialect; all must pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<KFilter>,
    pub subscriber: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<KDelivery>,
}

/// `spec.filter`: attribute name → value; an empty value matches any value present.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerFilter {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// One `spec.filters` entry: exactly one dialect (none at all matches every event).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<KFilter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<KFilter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<KFilter>>,
    /// CloudEvents SQL: read so that the refusal can say it is not supported, never written.
    #[serde(default, skip_serializing)]
    pub sql: Option<String>,
}

/// A trigger's status. Not strict: whatever else a cluster wrote there is ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Knative's `DeliverySpec`. Durations are ISO-8601 strings (`PT0.2S`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KDelivery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink: Option<Destination>,
    /// Signed so that a negative count gets a message naming the field, not a type error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_delay: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Knative's `Destination`: a reference to a Service or Broker, or a URI.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<KReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A Knative PingSource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KPingSource {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: PingSourceSpec,
    /// Output only: ignored on input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PingSourceStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PingSourceSpec {
    /// Cron schedule; Knative's default, every minute, when absent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub schedule: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timezone: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data_base64: String,
    pub sink: Destination,
}

/// A ping source's status. Not strict: whatever else a cluster wrote there is ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PingSourceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::error::ValidationError;
    use crate::eventing::{
        BackoffPolicy, Broker, DEFAULT_BROKER, Delivery, Filter, PingData, PingSource, Sink, Trigger,
    };

    /// Breaks one field of a valid object.
    type Break<T> = fn(&mut T);

    fn created() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-03-01T10:20:30Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn full_delivery() -> Delivery {
        Delivery {
            retry: 5,
            backoff_policy: BackoffPolicy::Linear,
            backoff_delay: Some(Duration::from_millis(200)),
            timeout: Some(Duration::from_secs(90)),
            dead_letter_sink: Some(Sink::Url("http://127.0.0.1:9999/dead".to_string())),
        }
    }

    fn broker() -> Broker {
        Broker {
            name: "orders".to_string(),
            created_at: created(),
            labels: vec![("team".to_string(), "shop".to_string())],
            delivery: Some(full_delivery()),
        }
    }

    fn trigger(filters: Vec<Filter>) -> Trigger {
        Trigger {
            name: "billing".to_string(),
            broker: DEFAULT_BROKER.to_string(),
            created_at: created(),
            labels: vec![("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())],
            filters,
            subscriber: Sink::Service("billing".to_string()),
            delivery: Delivery::default(),
        }
    }

    fn ping_source(data: Option<PingData>) -> PingSource {
        PingSource {
            name: "heartbeat".to_string(),
            created_at: created(),
            labels: vec![],
            schedule: "CRON_TZ=Europe/Berlin 0 9 * * 1-5".to_string(),
            timezone: None,
            content_type: Some("application/json".to_string()),
            data,
            sink: Sink::Broker(DEFAULT_BROKER.to_string()),
        }
    }

    fn trigger_yaml(spec: &str) -> Result<Trigger, ValidationError> {
        let yaml = format!("apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\nspec:\n{spec}");
        let object: KTrigger = serde_norway::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        trigger_from_object(&object, now())
    }

    /// The trigger `spec` (indented YAML, with no broker) describes, reading from `default`.
    fn trigger_ok(spec: &str) -> Trigger {
        trigger_yaml(&format!("  broker: default\n{spec}")).unwrap()
    }

    fn trigger_error(spec: &str) -> ValidationError {
        trigger_yaml(spec).unwrap_err()
    }

    const SUBSCRIBER: &str = "  subscriber:\n    uri: http://127.0.0.1:9000/\n";

    // --- round trips ---

    #[test]
    fn brokers_round_trip_through_json_and_yaml() {
        for broker in [
            broker(),
            Broker {
                delivery: None,
                labels: vec![],
                ..broker()
            },
        ] {
            let object = broker_object(&broker, "http://127.0.0.1:8080");
            let json: KBroker = serde_json::from_str(&serde_json::to_string(&object).unwrap()).unwrap();
            assert_eq!(json, object);
            assert_eq!(broker_from_object(&json, now()).unwrap(), broker);
            let yaml: KBroker = serde_norway::from_str(&serde_norway::to_string(&object).unwrap()).unwrap();
            assert_eq!(broker_from_object(&yaml, now()).unwrap(), broker);
        }
    }

    #[test]
    fn triggers_round_trip_through_json_and_yaml() {
        let nested = Filter::All(vec![
            Filter::prefix("type", "com.example."),
            Filter::Any(vec![
                Filter::exact("region", "eu"),
                Filter::Not(Box::new(Filter::Suffix {
                    attribute: "source".to_string(),
                    value: "/test".to_string(),
                })),
            ]),
        ]);
        let cases = [
            vec![],
            vec![Filter::exact("source", "/shop"), Filter::exact("type", "order")],
            // Out of attribute order, or repeated: these print as spec.filters to keep the order.
            vec![Filter::exact("type", "order"), Filter::exact("source", "/shop")],
            vec![Filter::exact("type", "a"), Filter::exact("type", "b")],
            vec![Filter::exact("type", "")],
            vec![nested, Filter::exact("type", "x")],
            vec![Filter::All(vec![])],
        ];
        for filters in cases {
            let mut trigger = trigger(filters);
            for delivery in [Delivery::default(), full_delivery()] {
                trigger.delivery = delivery;
                let object = trigger_object(&trigger, Some("http://billing.localhost:8080"));
                let json: KTrigger = serde_json::from_str(&serde_json::to_string(&object).unwrap()).unwrap();
                assert_eq!(json, object);
                assert_eq!(trigger_from_object(&json, now()).unwrap(), trigger);
                let text = serde_norway::to_string(&object).unwrap();
                let yaml: KTrigger = serde_norway::from_str(&text).unwrap();
                assert_eq!(trigger_from_object(&yaml, now()).unwrap(), trigger, "{text}");
            }
        }
    }

    #[test]
    fn ping_sources_round_trip_through_json_and_yaml() {
        for data in [
            None,
            Some(PingData::Text(r#"{"beat": 1}"#.to_string())),
            Some(PingData::Base64("eyJiZWF0IjogMX0=".to_string())),
        ] {
            for timezone in [None, Some("America/New_York".to_string())] {
                let source = PingSource {
                    timezone,
                    ..ping_source(data.clone())
                };
                let object = ping_source_object(&source, None);
                let json: KPingSource = serde_json::from_str(&serde_json::to_string(&object).unwrap()).unwrap();
                assert_eq!(json, object);
                assert_eq!(ping_source_from_object(&json, now()).unwrap(), source);
                let yaml: KPingSource = serde_norway::from_str(&serde_norway::to_string(&object).unwrap()).unwrap();
                assert_eq!(ping_source_from_object(&yaml, now()).unwrap(), source);
            }
        }
    }

    // --- output shape ---

    #[test]
    fn a_broker_prints_like_knative() {
        let object = broker_object(&broker(), "http://127.0.0.1:8080/");
        let json = serde_json::to_value(&object).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Broker",
                "metadata": {
                    "name": "orders",
                    "namespace": "default",
                    "creationTimestamp": "2025-03-01T10:20:30Z",
                    "labels": {"team": "shop"},
                },
                "spec": {"delivery": {
                    "deadLetterSink": {"uri": "http://127.0.0.1:9999/dead"},
                    "retry": 5,
                    "backoffPolicy": "linear",
                    "backoffDelay": "PT0.2S",
                    "timeout": "PT1M30S",
                }},
                "status": {"address": {"url": "http://127.0.0.1:8080/default/orders"}},
            })
        );
    }

    #[test]
    fn a_trigger_prints_like_knative() {
        let object = trigger_object(&trigger(vec![Filter::exact("type", "order")]), None);
        assert_eq!(
            serde_json::to_value(&object.spec).unwrap(),
            serde_json::json!({
                "broker": "default",
                "filter": {"attributes": {"type": "order"}},
                "subscriber": {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "billing"}},
            })
        );
        assert_eq!(object.status, None);
        let object = trigger_object(
            &trigger(vec![
                Filter::prefix("type", "com."),
                Filter::Not(Box::new(Filter::exact("x", "1"))),
            ]),
            Some("http://billing.localhost:8080"),
        );
        assert_eq!(
            serde_json::to_value(&object).unwrap()["spec"]["filters"],
            serde_json::json!([{"prefix": {"type": "com."}}, {"not": {"exact": {"x": "1"}}}])
        );
        assert_eq!(
            object.status.unwrap().subscriber_uri.as_deref(),
            Some("http://billing.localhost:8080")
        );
    }

    #[test]
    fn a_ping_source_prints_like_knative() {
        let source = ping_source(Some(PingData::Base64("e30=".to_string())));
        let object = ping_source_object(&source, Some("http://127.0.0.1:8080/default/default"));
        assert_eq!(
            serde_json::to_value(&object).unwrap()["spec"],
            serde_json::json!({
                "schedule": "CRON_TZ=Europe/Berlin 0 9 * * 1-5",
                "contentType": "application/json",
                "dataBase64": "e30=",
                "sink": {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}},
            })
        );
        assert_eq!(
            object.status.unwrap().sink_uri.as_deref(),
            Some("http://127.0.0.1:8080/default/default")
        );
    }

    // --- real manifests ---

    #[test]
    fn a_manifest_exported_from_a_cluster_applies() {
        let yaml = r#"
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: my-service-trigger
  namespace: default
  uid: 6d5d7c8e-1111-2222-3333-444455556666
  resourceVersion: "12345"
  generation: 2
  creationTimestamp: "2024-05-06T07:08:09Z"
  labels:
    eventing.knative.dev/broker: default
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: "{}"
spec:
  broker: default
  filter:
    attributes:
      type: dev.knative.foo.bar
      myextension: ""
  subscriber:
    ref:
      apiVersion: serving.knative.dev/v1
      kind: Service
      name: my-service
      namespace: default
status:
  observedGeneration: 2
  subscriberUri: http://my-service.default.svc.cluster.local
  conditions:
    - type: Ready
      status: "True"
      lastTransitionTime: "2024-05-06T07:08:10Z"
    - type: BrokerReady
      status: "True"
      severity: Info
  deadLetterSinkUri: http://dls.default.svc.cluster.local
"#;
        let object: KTrigger = serde_norway::from_str(yaml).unwrap();
        let trigger = trigger_from_object(&object, now()).unwrap();
        assert_eq!(
            trigger,
            Trigger {
                name: "my-service-trigger".to_string(),
                broker: "default".to_string(),
                created_at: DateTime::parse_from_rfc3339("2024-05-06T07:08:09Z")
                    .unwrap()
                    .with_timezone(&Utc),
                labels: vec![("eventing.knative.dev/broker".to_string(), "default".to_string())],
                // Attribute order: the map's.
                filters: vec![
                    Filter::exact("myextension", ""),
                    Filter::exact("type", "dev.knative.foo.bar")
                ],
                subscriber: Sink::Service("my-service".to_string()),
                delivery: Delivery::default(),
            }
        );
    }

    #[test]
    fn knative_filter_dialects_convert() {
        let trigger = trigger_ok(&format!(
            r#"  filters:
    - exact: {{type: com.example.order}}
    - prefix: {{source: /shop}}
    - suffix: {{subject: .png}}
    - any:
        - exact: {{region: eu}}
        - not: {{exact: {{region: us}}}}
    - all:
        - exact: {{a: "1"}}
    - {{}}
{SUBSCRIBER}"#
        ));
        assert_eq!(
            trigger.filters,
            vec![
                Filter::exact("type", "com.example.order"),
                Filter::prefix("source", "/shop"),
                Filter::Suffix {
                    attribute: "subject".to_string(),
                    value: ".png".to_string()
                },
                Filter::Any(vec![
                    Filter::exact("region", "eu"),
                    Filter::Not(Box::new(Filter::exact("region", "us")))
                ]),
                Filter::All(vec![Filter::exact("a", "1")]),
                Filter::All(vec![]),
            ]
        );
        assert_eq!(trigger.subscriber, Sink::Url("http://127.0.0.1:9000/".to_string()));
    }

    #[test]
    fn a_map_with_several_attributes_means_all_of_them() {
        let trigger = trigger_ok(&format!(
            "  filters:\n    - exact: {{type: t, source: s}}\n    - prefix: {{type: com., source: /}}\n{SUBSCRIBER}"
        ));
        assert_eq!(
            trigger.filters,
            vec![
                Filter::All(vec![Filter::exact("source", "s"), Filter::exact("type", "t")]),
                Filter::All(vec![Filter::prefix("source", "/"), Filter::prefix("type", "com.")]),
            ]
        );
    }

    #[test]
    fn a_defaulted_empty_filter_goes_with_filters() {
        // Knative's defaulting writes `filter: {}`; that is not a second dialect.
        let trigger = trigger_ok(&format!(
            "  filter: {{}}\n  filters:\n    - exact: {{type: t}}\n{SUBSCRIBER}"
        ));
        assert_eq!(trigger.filters, vec![Filter::exact("type", "t")]);
    }

    #[test]
    fn a_trigger_delivery_converts() {
        let trigger = trigger_ok(&format!(
            r#"{SUBSCRIBER}  delivery:
    retry: 3
    backoffPolicy: exponential
    backoffDelay: PT0.5S
    timeout: PT10S
    deadLetterSink:
      ref:
        apiVersion: serving.knative.dev/v1
        kind: Service
        name: dead-letters
"#
        ));
        assert_eq!(
            trigger.delivery,
            Delivery {
                retry: 3,
                backoff_policy: BackoffPolicy::Exponential,
                backoff_delay: Some(Duration::from_millis(500)),
                timeout: Some(Duration::from_secs(10)),
                dead_letter_sink: Some(Sink::Service("dead-letters".to_string())),
            }
        );
    }

    #[test]
    fn ping_source_defaults_and_data_convert() {
        let object: KPingSource = serde_norway::from_str(
            r#"
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata:
  name: test-ping-source
spec:
  contentType: text/plain
  data: hello
  sink:
    ref:
      apiVersion: serving.knative.dev/v1
      kind: Service
      name: event-display
status:
  sinkUri: http://event-display.default.svc.cluster.local
  ceAttributes:
    - type: dev.knative.sources.ping
"#,
        )
        .unwrap();
        let source = ping_source_from_object(&object, now()).unwrap();
        assert_eq!(
            source,
            PingSource {
                name: "test-ping-source".to_string(),
                created_at: now(),
                labels: vec![],
                schedule: DEFAULT_PING_SCHEDULE.to_string(),
                timezone: None,
                content_type: Some("text/plain".to_string()),
                data: Some(PingData::Text("hello".to_string())),
                sink: Sink::Service("event-display".to_string()),
            }
        );
    }

    // --- errors ---

    #[test]
    fn unsupported_fields_are_refused_by_name() {
        let cases = [
            (
                "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\nspec:\n  config: {kind: ConfigMap, name: c}\n",
                "config",
            ),
            (
                "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\nspec:\n  delivery: {retryAfterMax: PT1S}\n",
                "retryAfterMax",
            ),
            (
                "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\nspec:\n  delivery:\n    deadLetterSink: {uri: 'http://x/', CACerts: abc}\n",
                "CACerts",
            ),
        ];
        for (yaml, field) in cases {
            let err = serde_norway::from_str::<KBroker>(yaml).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        let yaml = "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {name: p}\nspec:\n  ceOverrides: {extensions: {a: b}}\n  sink: {uri: 'http://x/'}\n";
        let err = serde_norway::from_str::<KPingSource>(yaml).unwrap_err().to_string();
        assert!(err.contains("ceOverrides"), "{err}");
        let yaml = "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\nspec:\n  broker: default\n  filters:\n    - exactly: {type: x}\n  subscriber: {uri: 'http://x/'}\n";
        let err = serde_norway::from_str::<KTrigger>(yaml).unwrap_err().to_string();
        assert!(err.contains("exactly"), "{err}");
    }

    #[test]
    fn trigger_errors_name_the_full_path() {
        let cases = [
            (
                format!("  filters:\n    - exact: {{type: t}}\n    - prefix: {{source: ''}}\n{SUBSCRIBER}"),
                "spec.filters[1].prefix",
                "needs a value",
            ),
            (
                format!("  filters:\n    - exact: {{Type: t}}\n{SUBSCRIBER}"),
                "spec.filters[0].exact",
                "lowercase",
            ),
            (
                format!("  filters:\n    - exact: {{}}\n{SUBSCRIBER}"),
                "spec.filters[0].exact",
                "give an attribute",
            ),
            (
                format!("  filters:\n    - exact: {{type: t}}\n      prefix: {{type: t}}\n{SUBSCRIBER}"),
                "spec.filters[0]",
                "one dialect",
            ),
            (
                format!("  filters:\n    - any: []\n{SUBSCRIBER}"),
                "spec.filters[0].any",
                "at least one",
            ),
            (
                format!("  filters:\n    - all: []\n{SUBSCRIBER}"),
                "spec.filters[0].all",
                "at least one",
            ),
            (
                format!("  filters:\n    - all:\n        - not: {{suffix: {{BAD: x}}}}\n{SUBSCRIBER}"),
                "spec.filters[0].all[0].not.suffix",
                "lowercase",
            ),
            (
                format!("  filters:\n    - sql: \"type = 'x'\"\n{SUBSCRIBER}"),
                "spec.filters[0].sql",
                "not supported",
            ),
            (
                format!("  filter:\n    attributes: {{type: t}}\n  filters:\n    - exact: {{type: t}}\n{SUBSCRIBER}"),
                "spec.filter",
                "not both",
            ),
            (
                format!("  filter:\n    attributes: {{my-ext: t}}\n{SUBSCRIBER}"),
                "spec.filter.attributes",
                "lowercase",
            ),
            (
                format!("{SUBSCRIBER}  delivery: {{backoffDelay: 200ms}}\n"),
                "spec.delivery.backoffDelay",
                "ISO-8601",
            ),
            (
                format!("{SUBSCRIBER}  delivery: {{timeout: PT0S}}\n"),
                "spec.delivery.timeout",
                "more than zero",
            ),
            (
                format!("{SUBSCRIBER}  delivery: {{retry: -1}}\n"),
                "spec.delivery.retry",
                "from 0",
            ),
            (
                format!("{SUBSCRIBER}  delivery: {{backoffPolicy: Linear}}\n"),
                "spec.delivery.backoffPolicy",
                "exponential",
            ),
            (
                format!("{SUBSCRIBER}  delivery:\n    deadLetterSink: {{uri: 'https://x/'}}\n"),
                "spec.delivery.deadLetterSink.uri",
                "https",
            ),
            (
                "  subscriber: {}\n".to_string(),
                "spec.subscriber",
                "give a ref",
            ),
            (
                "  subscriber:\n    uri: http://x/\n    ref: {apiVersion: v1, kind: Service, name: s}\n".to_string(),
                "spec.subscriber",
                "not both",
            ),
            (
                "  subscriber:\n    ref: {apiVersion: v1, kind: Service, name: s}\n".to_string(),
                "spec.subscriber.ref.apiVersion",
                "serving.knative.dev/v1",
            ),
            (
                "  subscriber:\n    ref: {apiVersion: messaging.knative.dev/v1, kind: Channel, name: c}\n".to_string(),
                "spec.subscriber.ref.kind",
                "uri",
            ),
            (
                "  subscriber:\n    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: s, namespace: prod}\n"
                    .to_string(),
                "spec.subscriber.ref.namespace",
                "not supported yet",
            ),
            (
                "  subscriber:\n    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: S}\n".to_string(),
                "spec.subscriber.ref.name",
                "DNS label",
            ),
        ];
        for (spec, field, reason) in cases {
            let err = trigger_error(&format!("  broker: default\n{spec}"));
            assert_eq!(err.field, field, "{spec}\n{err}");
            assert!(err.reason.contains(reason), "{spec}\n{err}");
        }
        let err = trigger_error(SUBSCRIBER);
        assert_eq!(err.field, "spec.broker");
        assert!(err.reason.contains("e.g. default"), "{err}");
    }

    #[test]
    fn filters_nest_at_most_max_depth() {
        let mut filter = "{exact: {type: x}}".to_string();
        for _ in 1..crate::eventing::MAX_FILTER_DEPTH {
            filter = format!("{{not: {filter}}}");
        }
        assert!(trigger_yaml(&format!("  broker: default\n  filters: [{filter}]\n{SUBSCRIBER}")).is_ok());
        let err = trigger_error(&format!(
            "  broker: default\n  filters: [{{not: {filter}}}]\n{SUBSCRIBER}"
        ));
        assert!(err.reason.contains("at most"), "{err}");
    }

    #[test]
    fn metadata_errors_name_the_field() {
        let base: KBroker = serde_json::from_value(serde_json::json!({
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "b"},
        }))
        .unwrap();
        let cases: Vec<(&str, &str, Break<KBroker>)> = vec![
            ("metadata.name", "DNS label", |b| b.metadata.name = "B".to_string()),
            ("metadata.name", "required", |b| b.metadata.name = String::new()),
            (
                "metadata.namespace",
                "namespaces other than 'default' are not supported yet",
                |b| b.metadata.namespace = Some("prod".to_string()),
            ),
            ("metadata.creationTimestamp", "RFC 3339", |b| {
                b.metadata.creation_timestamp = Some("yesterday".to_string())
            }),
            ("kind", "Broker", |b| b.kind = "Trigger".to_string()),
            ("apiVersion", "eventing.knative.dev/v1", |b| {
                b.api_version = "eventing.knative.dev/v1beta1".to_string()
            }),
        ];
        for (field, reason, break_it) in cases {
            let mut broker = base.clone();
            break_it(&mut broker);
            let err = broker_from_object(&broker, now()).unwrap_err();
            assert_eq!(err.field, field, "{err}");
            assert!(err.reason.contains(reason), "{err}");
        }
        let ok = broker_from_object(&base, now()).unwrap();
        assert_eq!((ok.created_at, ok.delivery), (now(), None));
    }

    #[test]
    fn ping_source_errors_name_the_full_path() {
        let source = |spec: &str| -> Result<PingSource, ValidationError> {
            let yaml = format!(
                "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: p}}\nspec:\n{spec}  sink: {{uri: 'http://x/'}}\n"
            );
            ping_source_from_object(&serde_norway::from_str(&yaml).unwrap(), now())
        };
        let cases = [
            (
                "  data: a\n  dataBase64: YQ==\n",
                "spec.dataBase64",
                "mutually exclusive",
            ),
            ("  dataBase64: '%%%'\n", "spec.dataBase64", "base64"),
            (
                "  contentType: application/json\n  data: '{oops'\n",
                "spec.data",
                "not JSON",
            ),
            (
                "  contentType: application/json\n  dataBase64: bm9wZQ==\n",
                "spec.dataBase64",
                "not JSON",
            ),
            ("  schedule: '@every 1m'\n", "spec.schedule", "@every"),
            ("  timezone: Europe Berlin\n", "spec.timezone", "IANA"),
        ];
        for (spec, field, reason) in cases {
            let err = source(spec).unwrap_err();
            assert_eq!(err.field, field, "{spec}\n{err}");
            assert!(err.reason.contains(reason), "{spec}\n{err}");
        }
        let ok = source("  timezone: Europe/Berlin\n  schedule: '0 9 * * *'\n").unwrap();
        assert_eq!(
            (ok.timezone.as_deref(), ok.schedule.as_str(), ok.data),
            (Some("Europe/Berlin"), "0 9 * * *", None)
        );
        let yaml = "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {name: p}\nspec:\n  sink: {}\n";
        let err = ping_source_from_object(&serde_norway::from_str(yaml).unwrap(), now()).unwrap_err();
        assert_eq!(err.field, "spec.sink");
    }

    #[test]
    fn broker_urls_follow_knatives_path() {
        assert_eq!(
            broker_url("http://127.0.0.1:8080", "default"),
            "http://127.0.0.1:8080/default/default"
        );
        assert_eq!(
            broker_url("http://localhost:8080/", "orders"),
            "http://localhost:8080/default/orders"
        );
    }
}
