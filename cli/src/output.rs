//! Printing resources: tables and descriptions for people, Knative-shaped JSON or YAML for tools.

use std::collections::BTreeMap;
use std::io::Write;

use rouse_api::eventing::{Delivery, Filter, format_iso8601_duration};
use rouse_api::knative::{Condition, KService};
use rouse_api::status::ServiceDescription;
use serde::Serialize;

use crate::args::Format;

/// Prints `value` as JSON or YAML on stdout.
pub(crate) fn print_as<T: Serialize>(value: &T, format: Format) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut stdout, value)?;
            writeln!(stdout)?;
        }
        Format::Yaml => stdout.write_all(serde_norway::to_string(value)?.as_bytes())?,
        Format::Name => {
            for name in names(&serde_json::to_value(value)?) {
                writeln!(stdout, "{name}")?;
            }
        }
    }
    Ok(())
}

/// `-o name`: the `metadata.name` of each item of a list, or of the one object, one per
/// line, for scripts (`rouse list -o name | xargs -n1 rouse delete`).
fn names(value: &serde_json::Value) -> Vec<String> {
    let name = |object: &serde_json::Value| object["metadata"]["name"].as_str().map(str::to_string);
    match value.get("items").and_then(|items| items.as_array()) {
        Some(items) => items.iter().filter_map(name).collect(),
        None => name(value).into_iter().collect(),
    }
}

/// A Knative list object, as `kn service list -o json` prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceList<'a> {
    api_version: &'static str,
    kind: &'static str,
    items: Vec<&'a KService>,
}

impl<'a> ServiceList<'a> {
    pub(crate) fn new(items: Vec<&'a KService>) -> Self {
        Self {
            api_version: rouse_api::knative::SERVING_API_VERSION,
            kind: "ServiceList",
            items,
        }
    }
}

/// A Knative list object of any kind (`BrokerList`, `TriggerList`, ...).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObjectList<'a, T> {
    api_version: &'static str,
    kind: &'static str,
    items: &'a [T],
}

impl<'a, T> ObjectList<'a, T> {
    pub(crate) fn new(api_version: &'static str, kind: &'static str, items: &'a [T]) -> Self {
        Self {
            api_version,
            kind,
            items,
        }
    }
}

/// The Ready condition of a service.
pub(crate) fn ready_condition(service: &KService) -> Option<&Condition> {
    service.status.as_ref()?.conditions.iter().find(|c| c.kind == "Ready")
}

/// `ready/desired` instances of the routed revision.
pub(crate) fn instances(description: &ServiceDescription) -> String {
    let ready: usize = description.revisions.iter().map(|r| r.ready()).sum();
    let desired: u32 = description
        .revisions
        .iter()
        .filter(|r| r.routed)
        .map(|r| r.desired)
        .sum();
    let frozen: usize = description.revisions.iter().map(|r| r.frozen()).sum();
    if frozen > 0 {
        format!("{ready}/{desired} ({frozen} frozen)")
    } else {
        format!("{ready}/{desired}")
    }
}

/// The status of the Ready condition among `conditions`: `True`, `False` or `Unknown`.
pub(crate) fn ready(conditions: &[Condition]) -> String {
    conditions
        .iter()
        .find(|c| c.kind == "Ready")
        .map_or("Unknown".to_string(), |c| c.status.clone())
}

/// The reason of the Ready condition when it is not true, else nothing.
pub(crate) fn not_ready_reason(conditions: &[Condition]) -> String {
    conditions
        .iter()
        .find(|c| c.kind == "Ready" && c.status != "True")
        .and_then(|c| c.reason.clone())
        .unwrap_or_default()
}

/// Conditions as an indented table: `++` true, `!!` false, `??` unknown.
pub(crate) fn conditions_table(conditions: &[Condition]) -> String {
    let mut rows = vec![["OK", "TYPE", "REASON", "MESSAGE"].map(String::from).to_vec()];
    for c in conditions {
        let ok = match c.status.as_str() {
            "True" => "++",
            "False" => "!!",
            _ => "??",
        };
        rows.push(vec![
            ok.to_string(),
            c.kind.clone(),
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        ]);
    }
    indent(&table(&rows))
}

/// Each line of `text`, indented by two spaces.
pub(crate) fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// Labels as `k=v, k=v`.
/// The lines a broker's, trigger's or ping source's description ends with: its labels, when it
/// was created, and its conditions.
pub(crate) fn eventing_footer(
    out: &mut String,
    object_labels: &BTreeMap<String, String>,
    created_at: chrono::DateTime<chrono::Utc>,
    conditions: &[Condition],
) {
    use std::fmt::Write as _;
    if !object_labels.is_empty() {
        let _ = writeln!(out, "Labels:       {}", labels(object_labels));
    }
    let _ = writeln!(out, "Created:      {}", created_at.to_rfc3339());
    if !conditions.is_empty() {
        let _ = writeln!(out, "\nConditions:");
        out.push_str(&conditions_table(conditions));
    }
}

pub(crate) fn labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Delivery options in one line: `3 retries, exponential backoff from PT0.2S, timeout PT10S,
/// dead letters to service:dlq`.
pub(crate) fn delivery(delivery: &Delivery) -> String {
    let mut parts = vec![match delivery.retry {
        0 => "no retries".to_string(),
        1 => "1 retry".to_string(),
        n => format!("{n} retries"),
    }];
    if delivery.retry > 0 {
        let policy = delivery.backoff_policy;
        match delivery.backoff_delay {
            Some(delay) => parts.push(format!("{policy} backoff from {}", format_iso8601_duration(delay))),
            None => parts.push(format!("{policy} backoff")),
        }
    }
    if let Some(timeout) = delivery.timeout {
        parts.push(format!("timeout {}", format_iso8601_duration(timeout)));
    }
    if let Some(sink) = &delivery.dead_letter_sink {
        parts.push(format!("dead letters to {sink}"));
    }
    parts.join(", ")
}

/// A trigger's filters in one line, as flags write them where they can: `type=a, source=b`;
/// `prefix(type=com.)`, `any(...)`, `not(...)` otherwise. `-` when there are none.
pub(crate) fn filters(filters: &[Filter]) -> String {
    if filters.is_empty() {
        return "-".to_string();
    }
    filters.iter().map(filter).collect::<Vec<_>>().join(", ")
}

fn filter(filter: &Filter) -> String {
    let list = |filters: &[Filter]| filters.iter().map(self::filter).collect::<Vec<_>>().join(", ");
    match filter {
        Filter::Exact { attribute, value } => format!("{attribute}={value}"),
        Filter::Prefix { attribute, value } => format!("prefix({attribute}={value})"),
        Filter::Suffix { attribute, value } => format!("suffix({attribute}={value})"),
        Filter::All(filters) => format!("all({})", list(filters)),
        Filter::Any(filters) => format!("any({})", list(filters)),
        Filter::Not(inner) => format!("not({})", self::filter(inner)),
    }
}

/// Left-aligned columns separated by three spaces.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["NAME".to_string(), "URL".to_string()],
            vec!["hello-world".to_string(), "http://x".to_string()],
        ];
        assert_eq!(table(&rows), "NAME          URL\nhello-world   http://x\n");
    }

    #[test]
    fn filters_read_like_flags() {
        let exact = |a: &str, v: &str| Filter::Exact {
            attribute: a.to_string(),
            value: v.to_string(),
        };
        assert_eq!(filters(&[]), "-");
        assert_eq!(filters(&[exact("type", "t"), exact("region", "")]), "type=t, region=");
        let nested = Filter::Any(vec![
            Filter::Prefix {
                attribute: "type".to_string(),
                value: "com.".to_string(),
            },
            Filter::Not(Box::new(Filter::Suffix {
                attribute: "source".to_string(),
                value: "/x".to_string(),
            })),
            Filter::All(vec![exact("a", "1")]),
        ]);
        assert_eq!(
            filters(&[nested]),
            "any(prefix(type=com.), not(suffix(source=/x)), all(a=1))"
        );
    }

    #[test]
    fn delivery_reads_in_one_line() {
        use rouse_api::eventing::BackoffPolicy;
        use std::time::Duration;
        assert_eq!(delivery(&Delivery::default()), "no retries");
        let full = Delivery {
            retry: 3,
            backoff_policy: BackoffPolicy::Linear,
            backoff_delay: Some(Duration::from_millis(200)),
            timeout: Some(Duration::from_secs(10)),
            dead_letter_sink: Some(rouse_api::eventing::Sink::Service("dlq".to_string())),
        };
        assert_eq!(
            delivery(&full),
            "3 retries, linear backoff from PT0.2S, timeout PT10S, dead letters to service:dlq"
        );
    }

    #[test]
    fn names_of_a_list_or_of_one_object() {
        let list = serde_json::json!({"kind": "ServiceList", "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]});
        assert_eq!(names(&list), ["a", "b"]);
        assert_eq!(names(&serde_json::json!({"metadata": {"name": "one"}})), ["one"]);
        assert!(names(&serde_json::json!({"kind": "ServiceList", "items": []})).is_empty());
    }
}
