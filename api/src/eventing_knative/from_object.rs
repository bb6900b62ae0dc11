//! Knative objects (as applied) as records, checked field by field with YAML paths in errors.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::ValidationError;
use crate::eventing::{
    BackoffPolicy, Broker, Delivery, Filter, MAX_RETRY, PingData, PingSource, Sink, Trigger, check_labels,
    check_ping_data, check_schedule, parse_iso8601_duration, validate_attribute_name, validate_http_url,
};
use crate::knative::{ObjectMeta, SERVING_API_VERSION};
use crate::manifest::check_namespace;
use crate::name::validate_name;

use super::*;

/// The broker record an object describes. `now` is its creation time unless the object
/// carries a `metadata.creationTimestamp`.
pub fn broker_from_object(object: &KBroker, now: DateTime<Utc>) -> Result<Broker, ValidationError> {
    check_type(&object.api_version, &object.kind, EVENTING_API_VERSION, "Broker")?;
    let RecordMeta {
        name,
        created_at,
        labels,
    } = from_metadata(&object.metadata, now)?;
    let delivery = match &object.spec.delivery {
        Some(delivery) => Some(delivery_from_object("spec.delivery", delivery)?),
        None => None,
    };
    Ok(Broker {
        name,
        created_at,
        labels,
        delivery,
    })
}

/// The trigger record an object describes. `now` is its creation time unless the object
/// carries a `metadata.creationTimestamp`.
///
/// `spec.filter.attributes` become exact filters in attribute order. An `exact`, `prefix` or
/// `suffix` map with several attributes means all of them (Knative's webhook allows one).
pub fn trigger_from_object(object: &KTrigger, now: DateTime<Utc>) -> Result<Trigger, ValidationError> {
    check_type(&object.api_version, &object.kind, EVENTING_API_VERSION, "Trigger")?;
    let RecordMeta {
        name,
        created_at,
        labels,
    } = from_metadata(&object.metadata, now)?;
    let spec = &object.spec;
    if spec.broker.is_empty() {
        return Err(ValidationError::new(
            "spec.broker",
            "",
            "name the broker this trigger reads from, e.g. default",
        ));
    }
    validate_name("spec.broker", &spec.broker)?;
    let attributes = spec.filter.as_ref().map(|f| &f.attributes).filter(|a| !a.is_empty());
    let filters = match attributes {
        Some(_) if !spec.filters.is_empty() => {
            return Err(ValidationError::new(
                "spec.filter",
                "attributes",
                "give spec.filter or spec.filters, not both (Knative would ignore spec.filter)",
            ));
        }
        Some(attributes) => attributes
            .iter()
            .map(|(attribute, value)| {
                validate_attribute_name("spec.filter.attributes", attribute)?;
                Ok(Filter::Exact {
                    attribute: attribute.clone(),
                    value: value.clone(),
                })
            })
            .collect::<Result<Vec<_>, ValidationError>>()?,
        None => spec
            .filters
            .iter()
            .enumerate()
            .map(|(i, f)| filter_from_object(&format!("spec.filters[{i}]"), f, 1))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let delivery = match &spec.delivery {
        Some(delivery) => delivery_from_object("spec.delivery", delivery)?,
        None => Delivery::default(),
    };
    Ok(Trigger {
        name,
        broker: spec.broker.clone(),
        created_at,
        labels,
        filters,
        subscriber: sink_from_destination("spec.subscriber", &spec.subscriber)?,
        delivery,
    })
}

/// The ping source record an object describes. `now` is its creation time unless the object
/// carries a `metadata.creationTimestamp`. The schedule is only checked lightly here:
/// `rouse_eventing::ping::Schedule::parse` is the full check.
pub fn ping_source_from_object(object: &KPingSource, now: DateTime<Utc>) -> Result<PingSource, ValidationError> {
    check_type(&object.api_version, &object.kind, SOURCES_API_VERSION, "PingSource")?;
    let RecordMeta {
        name,
        created_at,
        labels,
    } = from_metadata(&object.metadata, now)?;
    let spec = &object.spec;
    let schedule = match spec.schedule.as_str() {
        "" => DEFAULT_PING_SCHEDULE.to_string(),
        given => given.to_string(),
    };
    check_schedule("spec.schedule", &schedule)?;
    let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
    let timezone = non_empty(&spec.timezone);
    if let Some(zone) = &timezone
        && zone.contains(char::is_whitespace)
    {
        return Err(ValidationError::new(
            "spec.timezone",
            zone,
            "must be an IANA time zone name, e.g. Europe/Berlin; leave it out for UTC",
        ));
    }
    let content_type = non_empty(&spec.content_type);
    let data = match (spec.data.is_empty(), spec.data_base64.is_empty()) {
        (true, true) => None,
        (false, true) => Some(("spec.data", PingData::Text(spec.data.clone()))),
        (true, false) => Some(("spec.dataBase64", PingData::Base64(spec.data_base64.clone()))),
        (false, false) => {
            return Err(ValidationError::new(
                "spec.dataBase64",
                &spec.data_base64,
                "data and dataBase64 are mutually exclusive; keep one",
            ));
        }
    };
    if let Some((field, data)) = &data {
        check_ping_data(field, content_type.as_deref(), data)?;
    }
    Ok(PingSource {
        name,
        created_at,
        labels,
        schedule,
        timezone,
        content_type,
        data: data.map(|(_, data)| data),
        sink: sink_from_destination("spec.sink", &spec.sink)?,
    })
}

pub(super) fn check_type(
    api_version: &str,
    kind: &str,
    want_api_version: &str,
    want_kind: &str,
) -> Result<(), ValidationError> {
    if kind != want_kind {
        return Err(ValidationError::new("kind", kind, format!("expected {want_kind}")));
    }
    if api_version != want_api_version {
        return Err(ValidationError::new(
            "apiVersion",
            api_version,
            format!("a {want_kind} is {want_api_version}"),
        ));
    }
    Ok(())
}

/// What a record keeps of an object's metadata.
pub(super) struct RecordMeta {
    name: String,
    created_at: DateTime<Utc>,
    labels: Vec<(String, String)>,
}

/// Name, creation time and labels from an object's metadata.
pub(super) fn from_metadata(meta: &ObjectMeta, now: DateTime<Utc>) -> Result<RecordMeta, ValidationError> {
    validate_name("metadata.name", &meta.name)?;
    check_namespace("metadata.namespace", meta.namespace.as_deref())?;
    let created_at = match &meta.creation_timestamp {
        None => now,
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|_| {
                ValidationError::new(
                    "metadata.creationTimestamp",
                    text,
                    "must be an RFC 3339 time, e.g. 2025-01-31T12:00:00Z; or leave it out",
                )
            })?
            .with_timezone(&Utc),
    };
    let labels: Vec<(String, String)> = meta.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    check_labels("metadata.labels", &labels)?;
    Ok(RecordMeta {
        name: meta.name.clone(),
        created_at,
        labels,
    })
}

/// A record filter from a `spec.filters` entry at `field`, `depth` levels deep.
pub(super) fn filter_from_object(field: &str, filter: &KFilter, depth: usize) -> Result<Filter, ValidationError> {
    if depth > crate::eventing::MAX_FILTER_DEPTH {
        return Err(ValidationError::new(
            field,
            "",
            format!(
                "filters nest at most {} deep; flatten all/any/not",
                crate::eventing::MAX_FILTER_DEPTH
            ),
        ));
    }
    if filter.sql.is_some() {
        return Err(ValidationError::new(
            format!("{field}.sql"),
            filter.sql.as_deref().unwrap_or_default(),
            "CloudEvents SQL filters are not supported yet; use exact, prefix, suffix, all, any or not",
        ));
    }
    let dialects: Vec<&str> = [
        ("exact", filter.exact.is_some()),
        ("prefix", filter.prefix.is_some()),
        ("suffix", filter.suffix.is_some()),
        ("all", filter.all.is_some()),
        ("any", filter.any.is_some()),
        ("not", filter.not.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if dialects.len() > 1 {
        return Err(ValidationError::new(
            field,
            dialects.join(", "),
            "a filter has one dialect; put several under all (or any)",
        ));
    }
    let list = |dialect: &str, filters: &[KFilter]| -> Result<Vec<Filter>, ValidationError> {
        if filters.is_empty() {
            return Err(ValidationError::new(
                format!("{field}.{dialect}"),
                "[]",
                format!("{dialect} needs at least one filter"),
            ));
        }
        filters
            .iter()
            .enumerate()
            .map(|(i, f)| filter_from_object(&format!("{field}.{dialect}[{i}]"), f, depth + 1))
            .collect()
    };
    if let Some(map) = &filter.exact {
        return attribute_map(&format!("{field}.exact"), map, |attribute, value| Filter::Exact {
            attribute,
            value,
        });
    }
    if let Some(map) = &filter.prefix {
        return attribute_map(&format!("{field}.prefix"), map, |attribute, value| Filter::Prefix {
            attribute,
            value,
        });
    }
    if let Some(map) = &filter.suffix {
        return attribute_map(&format!("{field}.suffix"), map, |attribute, value| Filter::Suffix {
            attribute,
            value,
        });
    }
    if let Some(filters) = &filter.all {
        return Ok(Filter::All(list("all", filters)?));
    }
    if let Some(filters) = &filter.any {
        return Ok(Filter::Any(list("any", filters)?));
    }
    if let Some(inner) = &filter.not {
        return Ok(Filter::Not(Box::new(filter_from_object(
            &format!("{field}.not"),
            inner,
            depth + 1,
        )?)));
    }
    // `{}`: Knative's filter that passes every event.
    Ok(Filter::All(vec![]))
}

/// An `exact`/`prefix`/`suffix` map: one attribute is one filter, several are all of them.
pub(super) fn attribute_map(
    field: &str,
    map: &BTreeMap<String, String>,
    make: fn(String, String) -> Filter,
) -> Result<Filter, ValidationError> {
    let mut filters = Vec::with_capacity(map.len());
    for (attribute, value) in map {
        let filter = make(attribute.clone(), value.clone());
        filter.check(field)?;
        filters.push(filter);
    }
    match filters.len() {
        0 => Err(ValidationError::new(
            field,
            "{}",
            "give an attribute and its value, e.g. {type: com.example.order}",
        )),
        1 => Ok(filters.remove(0)),
        _ => Ok(Filter::All(filters)),
    }
}

pub(super) fn delivery_from_object(field: &str, delivery: &KDelivery) -> Result<Delivery, ValidationError> {
    let retry = match delivery.retry {
        None => 0,
        Some(retry) => u32::try_from(retry).ok().filter(|r| *r <= MAX_RETRY).ok_or_else(|| {
            ValidationError::new(
                format!("{field}.retry"),
                retry,
                format!("must be from 0 to {MAX_RETRY}: the retries after the first attempt"),
            )
        })?,
    };
    let backoff_policy = match &delivery.backoff_policy {
        None => BackoffPolicy::default(),
        Some(policy) => policy
            .parse()
            .map_err(|reason: String| ValidationError::new(format!("{field}.backoffPolicy"), policy, reason))?,
    };
    let duration = |name: &str, text: &Option<String>| match text {
        None => Ok(None),
        Some(text) => parse_iso8601_duration(text)
            .map(Some)
            .map_err(|reason| ValidationError::new(format!("{field}.{name}"), text, reason)),
    };
    let timeout = duration("timeout", &delivery.timeout)?;
    if timeout == Some(Duration::ZERO) {
        return Err(ValidationError::new(
            format!("{field}.timeout"),
            delivery.timeout.as_deref().unwrap_or_default(),
            "must be more than zero, e.g. PT30S; leave it out for no per-attempt timeout",
        ));
    }
    Ok(Delivery {
        retry,
        backoff_policy,
        backoff_delay: duration("backoffDelay", &delivery.backoff_delay)?,
        timeout,
        dead_letter_sink: match &delivery.dead_letter_sink {
            Some(sink) => Some(sink_from_destination(&format!("{field}.deadLetterSink"), sink)?),
            None => None,
        },
    })
}

/// The sink a `Destination` at `field` names: a Knative Service, a Broker, or an http:// URI.
pub(super) fn sink_from_destination(field: &str, destination: &Destination) -> Result<Sink, ValidationError> {
    match (&destination.reference, &destination.uri) {
        (Some(_), Some(uri)) => Err(ValidationError::new(
            field,
            uri,
            "give ref or uri, not both (Rouse does not resolve a uri relative to a ref)",
        )),
        (None, None) => Err(ValidationError::new(
            field,
            "",
            "give a ref (a Service or Broker) or a uri (http://...)",
        )),
        (None, Some(uri)) => {
            validate_http_url(&format!("{field}.uri"), uri)?;
            Ok(Sink::Url(uri.clone()))
        }
        (Some(reference), None) => {
            let field = format!("{field}.ref");
            check_namespace(&format!("{field}.namespace"), reference.namespace.as_deref())?;
            let kinds = "a ref names a Knative Service (apiVersion serving.knative.dev/v1) or a Broker \
                         (apiVersion eventing.knative.dev/v1); for anything else give a uri";
            let want_api_version = match reference.kind.as_str() {
                "Service" => SERVING_API_VERSION,
                "Broker" => EVENTING_API_VERSION,
                other => return Err(ValidationError::new(format!("{field}.kind"), other, kinds)),
            };
            let api_version = reference.api_version.as_deref().unwrap_or_default();
            if api_version != want_api_version {
                return Err(ValidationError::new(format!("{field}.apiVersion"), api_version, kinds));
            }
            validate_name(&format!("{field}.name"), &reference.name)?;
            Ok(match reference.kind.as_str() {
                "Service" => Sink::Service(reference.name.clone()),
                _ => Sink::Broker(reference.name.clone()),
            })
        }
    }
}
