//! Records (brokers, triggers, ping sources as stored) as the Knative objects users read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::eventing::{Broker, Delivery, Filter, PingData, PingSource, Sink, Trigger, format_iso8601_duration};
use crate::knative::{ObjectMeta, SERVING_API_VERSION, timestamp};
use crate::manifest::NAMESPACE;

use super::*;

/// A broker's ingress URL: `{ingress_base}/default/{name}`, the path Knative's multi-tenant
/// broker uses (`/{namespace}/{name}`).
pub fn broker_url(ingress_base: &str, broker: &str) -> String {
    format!("{}/{NAMESPACE}/{broker}", ingress_base.trim_end_matches('/'))
}

pub(super) fn metadata(name: &str, created_at: DateTime<Utc>, labels: &[(String, String)]) -> ObjectMeta {
    ObjectMeta {
        name: name.to_string(),
        namespace: Some(NAMESPACE.to_string()),
        creation_timestamp: Some(timestamp(created_at)),
        labels: labels.iter().cloned().collect(),
        ..ObjectMeta::default()
    }
}

/// The Knative object for a broker; its status carries the ingress URL (see [`broker_url`]).
/// Conditions are the caller's to add.
pub fn broker_object(broker: &Broker, ingress_base: &str) -> KBroker {
    KBroker {
        api_version: EVENTING_API_VERSION.to_string(),
        kind: "Broker".to_string(),
        metadata: metadata(&broker.name, broker.created_at, &broker.labels),
        spec: BrokerSpec {
            delivery: broker.delivery.as_ref().map(delivery_object),
        },
        status: Some(BrokerStatus {
            address: Some(Addressable {
                url: Some(broker_url(ingress_base, &broker.name)),
            }),
            conditions: vec![],
        }),
    }
}

/// The Knative object for a trigger, with `status.subscriberUri` when the caller resolved it.
///
/// Filters print as `spec.filter.attributes` when that form says the same thing (only exact
/// matches, one per attribute, in attribute order), else as `spec.filters`.
pub fn trigger_object(trigger: &Trigger, subscriber_uri: Option<&str>) -> KTrigger {
    let attributes_only = !trigger.filters.is_empty()
        && trigger.filters.iter().all(|f| matches!(f, Filter::Exact { .. }))
        && trigger.filters.windows(2).all(|w| match (&w[0], &w[1]) {
            (Filter::Exact { attribute: a, .. }, Filter::Exact { attribute: b, .. }) => a < b,
            _ => false,
        });
    let (filter, filters) = if attributes_only {
        let attributes = trigger
            .filters
            .iter()
            .filter_map(|f| match f {
                Filter::Exact { attribute, value } => Some((attribute.clone(), value.clone())),
                _ => None,
            })
            .collect();
        (Some(TriggerFilter { attributes }), vec![])
    } else {
        (None, trigger.filters.iter().map(filter_object).collect())
    };
    KTrigger {
        api_version: EVENTING_API_VERSION.to_string(),
        kind: "Trigger".to_string(),
        metadata: metadata(&trigger.name, trigger.created_at, &trigger.labels),
        spec: TriggerSpec {
            broker: trigger.broker.clone(),
            filter,
            filters,
            subscriber: destination(&trigger.subscriber),
            delivery: (trigger.delivery != Delivery::default()).then(|| delivery_object(&trigger.delivery)),
        },
        status: subscriber_uri.map(|uri| TriggerStatus {
            subscriber_uri: Some(uri.to_string()),
            conditions: vec![],
        }),
    }
}

/// The Knative object for a ping source, with `status.sinkUri` when the caller resolved it.
pub fn ping_source_object(source: &PingSource, sink_uri: Option<&str>) -> KPingSource {
    let (data, data_base64) = match &source.data {
        None => (String::new(), String::new()),
        Some(PingData::Text(text)) => (text.clone(), String::new()),
        Some(PingData::Base64(encoded)) => (String::new(), encoded.clone()),
    };
    KPingSource {
        api_version: SOURCES_API_VERSION.to_string(),
        kind: "PingSource".to_string(),
        metadata: metadata(&source.name, source.created_at, &source.labels),
        spec: PingSourceSpec {
            schedule: source.schedule.clone(),
            timezone: source.timezone.clone().unwrap_or_default(),
            content_type: source.content_type.clone().unwrap_or_default(),
            data,
            data_base64,
            sink: destination(&source.sink),
        },
        status: sink_uri.map(|uri| PingSourceStatus {
            sink_uri: Some(uri.to_string()),
            conditions: vec![],
        }),
    }
}

pub(super) fn filter_object(filter: &Filter) -> KFilter {
    let one = |attribute: &str, value: &str| Some(BTreeMap::from([(attribute.to_string(), value.to_string())]));
    match filter {
        Filter::Exact { attribute, value } => KFilter {
            exact: one(attribute, value),
            ..KFilter::default()
        },
        Filter::Prefix { attribute, value } => KFilter {
            prefix: one(attribute, value),
            ..KFilter::default()
        },
        Filter::Suffix { attribute, value } => KFilter {
            suffix: one(attribute, value),
            ..KFilter::default()
        },
        // `{}` is Knative's filter that passes everything; `all: []` would be refused on input.
        Filter::All(filters) if filters.is_empty() => KFilter::default(),
        Filter::All(filters) => KFilter {
            all: Some(filters.iter().map(filter_object).collect()),
            ..KFilter::default()
        },
        Filter::Any(filters) => KFilter {
            any: Some(filters.iter().map(filter_object).collect()),
            ..KFilter::default()
        },
        Filter::Not(filter) => KFilter {
            not: Some(Box::new(filter_object(filter))),
            ..KFilter::default()
        },
    }
}

pub(super) fn delivery_object(delivery: &Delivery) -> KDelivery {
    KDelivery {
        dead_letter_sink: delivery.dead_letter_sink.as_ref().map(destination),
        retry: (delivery.retry > 0).then_some(i64::from(delivery.retry)),
        backoff_policy: Some(delivery.backoff_policy.to_string()),
        backoff_delay: delivery.backoff_delay.map(format_iso8601_duration),
        timeout: delivery.timeout.map(format_iso8601_duration),
    }
}

pub(super) fn destination(sink: &Sink) -> Destination {
    let reference = |api_version: &str, kind: &str, name: &str| {
        Some(KReference {
            api_version: Some(api_version.to_string()),
            kind: kind.to_string(),
            name: name.to_string(),
            namespace: None,
        })
    };
    match sink {
        Sink::Service(name) => Destination {
            reference: reference(SERVING_API_VERSION, "Service", name),
            uri: None,
        },
        Sink::Broker(name) => Destination {
            reference: reference(EVENTING_API_VERSION, "Broker", name),
            uri: None,
        },
        Sink::Url(url) => Destination {
            reference: None,
            uri: Some(url.clone()),
        },
    }
}
