//! Eventing resources: brokers, triggers (filters, subscriber, delivery options) and ping sources.
//!
//! These are the records the daemon stores and the admin API speaks; the Knative-shaped objects
//! (`eventing.knative.dev/v1` Broker and Trigger, `sources.knative.dev/v1` PingSource) convert
//! to and from them in [`crate::eventing_knative`].
//!
//! Besides the records, this module holds what is decided about them without I/O: their
//! validation, the CLI spellings of sinks (`service:NAME`) and filters (`type=VALUE`), trigger
//! filter evaluation, and ISO-8601 durations (`PT0.2S`) for delivery options. A ping source's
//! schedule is only checked lightly here; `rouse_eventing::ping::Schedule` parses it fully.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::name::validate_name;

/// The broker that exists from the start.
mod filter;
mod iso8601;
mod ping;

pub use filter::{parse_filter_flag, validate_attribute_name};
pub use iso8601::{format_iso8601_duration, parse_iso8601_duration};
pub(crate) use ping::{check_ping_data, check_schedule};

pub const DEFAULT_BROKER: &str = "default";

/// A broker: a named, durable event log with an ingress URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broker {
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Labels the user gave (`metadata.labels`), kept and shown.
    #[serde(default)]
    pub labels: Vec<(String, String)>,
    /// Delivery options triggers of this broker inherit when they give none (`spec.delivery`).
    #[serde(default)]
    pub delivery: Option<Delivery>,
}

/// Where events go: a service (through the activator), a broker, or a URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sink {
    /// `service:NAME`: a Rouse service, reached through the activator (so it wakes from zero).
    Service(String),
    /// `broker:NAME`: another broker's ingress.
    Broker(String),
    /// An absolute `http://` URL; one on the host's loopback is dialled from the daemon.
    Url(String),
}

/// One trigger filter, in the `spec.filters` dialect (`spec.filter.attributes` is a list of `Exact`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    /// The attribute exists and equals the value (an empty value matches any value present).
    Exact {
        attribute: String,
        value: String,
    },
    Prefix {
        attribute: String,
        value: String,
    },
    Suffix {
        attribute: String,
        value: String,
    },
    /// Every filter matches.
    All(Vec<Filter>),
    /// At least one filter matches.
    Any(Vec<Filter>),
    /// The filter does not match.
    Not(Box<Filter>),
}

/// How the backoff delay grows between attempts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackoffPolicy {
    /// delay × 2^n
    #[default]
    Exponential,
    /// delay × n
    Linear,
}

/// Delivery options (`spec.delivery`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Retries after the first attempt (Knative `retry`); 0 = one attempt only.
    #[serde(default)]
    pub retry: u32,
    #[serde(default)]
    pub backoff_policy: BackoffPolicy,
    /// Base backoff delay (`backoffDelay`, ISO-8601 in YAML and flags).
    #[serde(default)]
    pub backoff_delay: Option<Duration>,
    /// Per-attempt timeout (`timeout`, ISO-8601).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Where an event goes after its last failed attempt.
    #[serde(default)]
    pub dead_letter_sink: Option<Sink>,
}

impl Delivery {
    /// What a trigger gets when neither it nor its broker gives delivery options: Knative's
    /// broker defaults (`config-br-defaults`), 10 retries with exponential backoff from
    /// 200 ms. "At least once" needs retries: one failed attempt must not lose an event.
    pub fn broker_default() -> Self {
        Self {
            retry: 10,
            backoff_policy: BackoffPolicy::Exponential,
            backoff_delay: Some(Duration::from_millis(200)),
            timeout: None,
            dead_letter_sink: None,
        }
    }
}

/// A trigger: events of `broker` that pass every filter go to `subscriber`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub name: String,
    pub broker: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub labels: Vec<(String, String)>,
    /// All must match (an empty list passes every event).
    #[serde(default)]
    pub filters: Vec<Filter>,
    pub subscriber: Sink,
    #[serde(default)]
    pub delivery: Delivery,
}

/// The payload a ping source sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PingData {
    /// `data`: sent as is.
    Text(String),
    /// `dataBase64`: decoded and sent as bytes.
    Base64(String),
}

/// A ping source: sends an event to `sink` on a cron schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingSource {
    pub name: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub labels: Vec<(String, String)>,
    /// Five fields (minute precision) or six (with seconds first); an optional `CRON_TZ=` prefix.
    pub schedule: String,
    /// IANA time zone name; UTC when absent.
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub data: Option<PingData>,
    pub sink: Sink,
}

/// The three ways to write a sink, for messages.
const SINK_FORMS: &str = "write service:NAME (a Rouse service), broker:NAME (a broker) or an http:// URL (e.g. http://127.0.0.1:9000/events)";

/// Most retries a delivery may ask for: Knative's `retry` is an int32.
pub const MAX_RETRY: u32 = i32::MAX as u32;

/// Deepest nesting of `all`, `any` and `not` a filter may have. Real filters are a few levels
/// deep; the bound keeps evaluation's recursion far from the stack's limit.
pub const MAX_FILTER_DEPTH: usize = 16;

// === impl Sink ===

impl Sink {
    /// Parses a sink as flags write it: `service:NAME`, `broker:NAME` or an `http://` URL.
    /// Errors name the field `sink`; callers with another flag set [`ValidationError::field`].
    pub fn parse(s: &str) -> Result<Sink, ValidationError> {
        let sink = if let Some(name) = s.strip_prefix("service:") {
            Sink::Service(name.to_string())
        } else if let Some(name) = s.strip_prefix("broker:") {
            Sink::Broker(name.to_string())
        } else if s.starts_with("http://") || s.starts_with("https://") {
            Sink::Url(s.to_string())
        } else {
            return Err(ValidationError::new("sink", s, format!("not a sink; {SINK_FORMS}")));
        };
        sink.check("sink")?;
        Ok(sink)
    }

    /// Checks the name or URL the sink holds.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.check("sink")
    }

    pub(crate) fn check(&self, field: &str) -> Result<(), ValidationError> {
        match self {
            Sink::Service(name) | Sink::Broker(name) => validate_name(field, name),
            Sink::Url(url) => validate_http_url(field, url),
        }
    }
}

impl fmt::Display for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sink::Service(name) => write!(f, "service:{name}"),
            Sink::Broker(name) => write!(f, "broker:{name}"),
            Sink::Url(url) => f.write_str(url),
        }
    }
}

impl FromStr for Sink {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sink::parse(s)
    }
}

/// Checks that `url` is an absolute `http://` URL with a host (and a valid port, if any).
///
/// Only plain HTTP: sinks are services behind Rouse's own ingress or local receivers; TLS to
/// outside endpoints would need a TLS client and trust configuration Rouse does not have yet.
pub fn validate_http_url(field: &str, url: &str) -> Result<(), ValidationError> {
    let fail = |reason: &str| Err(ValidationError::new(field, url, reason));
    let Some(rest) = url.strip_prefix("http://") else {
        if url.starts_with("https://") {
            return fail("https:// is not supported yet (Rouse delivers events over plain HTTP); use an http:// URL");
        }
        return fail("must be an absolute http:// URL, e.g. http://127.0.0.1:9000/events");
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return fail("must not contain spaces or control characters; percent-encode them (e.g. %20)");
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return fail("must not carry credentials (user@host); put them in a header or the receiver's config");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return fail("has an IPv6 host without its closing ']', e.g. http://[::1]:9000/");
        };
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return fail("has text after the IPv6 host; write http://[::1]:9000/"),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return fail("has no host, e.g. http://127.0.0.1:9000/events");
    }
    let host_chars_ok = if authority.starts_with('[') {
        host.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    } else {
        host.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    };
    if !host_chars_ok {
        return fail("has a host that is neither a DNS name nor an IP address");
    }
    if let Some(port) = port
        && !matches!(port.parse::<u16>(), Ok(p) if p > 0)
    {
        return fail("has an invalid port; a port is a number from 1 to 65535");
    }
    Ok(())
}

// === impl BackoffPolicy ===

impl BackoffPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            BackoffPolicy::Exponential => "exponential",
            BackoffPolicy::Linear => "linear",
        }
    }
}

impl fmt::Display for BackoffPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackoffPolicy {
    type Err = String;

    /// Knative's spellings: `exponential` or `linear`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exponential" => Ok(BackoffPolicy::Exponential),
            "linear" => Ok(BackoffPolicy::Linear),
            _ => Err("the backoff policy is exponential (delay × 2^n) or linear (delay × n)".to_string()),
        }
    }
}

// === impl Delivery ===

impl Delivery {
    /// Checks the retry count, the timeout and the dead-letter sink.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.check("delivery")
    }

    pub(crate) fn check(&self, field: &str) -> Result<(), ValidationError> {
        if self.retry > MAX_RETRY {
            return Err(ValidationError::new(
                format!("{field}.retry"),
                self.retry,
                format!("must be at most {MAX_RETRY}"),
            ));
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(ValidationError::new(
                format!("{field}.timeout"),
                "PT0S",
                "must be more than zero, e.g. PT30S; leave it out for no per-attempt timeout",
            ));
        }
        if let Some(sink) = &self.dead_letter_sink {
            sink.check(&format!("{field}.dead_letter_sink"))?;
        }
        Ok(())
    }
}

// === impl Broker, Trigger ===

/// Checks labels: each key given once and not empty.
pub(crate) fn check_labels(field: &str, labels: &[(String, String)]) -> Result<(), ValidationError> {
    for (i, (key, _)) in labels.iter().enumerate() {
        if key.is_empty() {
            return Err(ValidationError::new(
                field,
                "",
                "a label needs a key, e.g. team=payments",
            ));
        }
        if labels[..i].iter().any(|(k, _)| k == key) {
            return Err(ValidationError::new(
                field,
                key,
                "this label key is given more than once; keep one",
            ));
        }
    }
    Ok(())
}

impl Broker {
    /// Checks the name, labels and delivery defaults.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("name", &self.name)?;
        check_labels("labels", &self.labels)?;
        if let Some(delivery) = &self.delivery {
            delivery.check("delivery")?;
        }
        Ok(())
    }
}

impl Trigger {
    /// Checks the names, filters, subscriber and delivery options.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("name", &self.name)?;
        validate_name("broker", &self.broker)?;
        check_labels("labels", &self.labels)?;
        for (i, filter) in self.filters.iter().enumerate() {
            filter.check(&format!("filters[{i}]"))?;
        }
        self.subscriber.check("subscriber")?;
        self.delivery.check("delivery")
    }

    /// Whether an event passes every filter of this trigger (no filters: every event does).
    pub fn matches(&self, attr: &dyn Fn(&str) -> Option<String>) -> bool {
        self.filters.iter().all(|f| f.matches(attr))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// Breaks one field of a valid record.
    type Break<T> = fn(&mut T);

    /// An event's attributes, as the lookup `Filter::matches` takes.
    fn event(attrs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let attrs: HashMap<String, String> = attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name: &str| attrs.get(name).cloned()
    }

    fn order_created() -> impl Fn(&str) -> Option<String> {
        event(&[
            ("type", "com.example.order.created"),
            ("source", "/shop/orders"),
            ("region", "eu"),
        ])
    }

    fn trigger() -> Trigger {
        Trigger {
            name: "orders".to_string(),
            broker: DEFAULT_BROKER.to_string(),
            created_at: DateTime::UNIX_EPOCH,
            labels: vec![],
            filters: vec![Filter::exact("type", "com.example.order.created")],
            subscriber: Sink::Service("billing".to_string()),
            delivery: Delivery::default(),
        }
    }

    fn ping_source() -> PingSource {
        PingSource {
            name: "heartbeat".to_string(),
            created_at: DateTime::UNIX_EPOCH,
            labels: vec![],
            schedule: "*/5 * * * *".to_string(),
            timezone: None,
            content_type: Some("application/json".to_string()),
            data: Some(PingData::Text(r#"{"beat": true}"#.to_string())),
            sink: Sink::Broker(DEFAULT_BROKER.to_string()),
        }
    }

    // --- sinks ---

    #[test]
    fn sinks_parse_and_print_back() {
        for (text, sink) in [
            ("service:billing", Sink::Service("billing".to_string())),
            ("broker:default", Sink::Broker("default".to_string())),
            (
                "http://127.0.0.1:9000/events",
                Sink::Url("http://127.0.0.1:9000/events".to_string()),
            ),
            ("http://localhost", Sink::Url("http://localhost".to_string())),
            (
                "http://[::1]:8080/x?y=1",
                Sink::Url("http://[::1]:8080/x?y=1".to_string()),
            ),
            (
                "http://host.docker.internal:8080",
                Sink::Url("http://host.docker.internal:8080".to_string()),
            ),
        ] {
            assert_eq!(Sink::parse(text).unwrap(), sink, "{text}");
            assert_eq!(sink.to_string(), text);
            assert_eq!(text.parse::<Sink>().unwrap(), sink);
        }
    }

    #[test]
    fn unknown_sink_forms_list_the_three_forms() {
        for bad in [
            "billing",
            "ksvc:billing",
            "channel:x",
            "ftp://host/",
            "",
            "HTTP://host/",
        ] {
            let err = Sink::parse(bad).unwrap_err();
            assert_eq!(err.field, "sink");
            for form in ["service:NAME", "broker:NAME", "http://"] {
                assert!(err.reason.contains(form), "{bad}: {err}");
            }
        }
    }

    #[test]
    fn https_sinks_are_refused_with_the_reason() {
        let err = Sink::parse("https://example.com/").unwrap_err();
        assert!(err.reason.contains("https:// is not supported"), "{err}");
    }

    #[test]
    fn sink_names_and_urls_are_checked() {
        for bad in [
            "service:",
            "service:Billing",
            "broker:a_b",
            "http://",
            "http:///path",
            "http://host:0/",
            "http://host:99999/",
            "http://host:port/",
            "http://ho st/",
            "http://user:pw@host/",
            "http://[::1/",
            "http://[::1]x/",
            "http://exa$mple.com/",
        ] {
            let err = Sink::parse(bad).unwrap_err();
            assert_eq!(err.field, "sink", "{bad}");
        }
        assert!(Sink::Service("UPPER".to_string()).validate().is_err());
        assert!(Sink::Url("https://x".to_string()).validate().is_err());
        assert!(Sink::Broker("default".to_string()).validate().is_ok());
    }

    // --- filters ---

    #[test]
    fn filter_flags_parse_to_exact_matches() {
        assert_eq!(
            parse_filter_flag("type=com.example.order").unwrap(),
            Filter::exact("type", "com.example.order")
        );
        // Only the first '=' splits: values may contain more.
        assert_eq!(
            parse_filter_flag("subject=a=b").unwrap(),
            Filter::exact("subject", "a=b")
        );
        assert_eq!(parse_filter_flag("myext1=").unwrap(), Filter::exact("myext1", ""));
    }

    #[test]
    fn bad_filter_flags_say_how_to_write_them() {
        let err = parse_filter_flag("type").unwrap_err();
        assert_eq!(err.field, "--filter");
        assert!(err.reason.contains("ATTRIBUTE=VALUE"), "{err}");
        for bad in ["=x", "Type=x", "my-ext=x", "my_ext=x", "tÿpe=x"] {
            let err = parse_filter_flag(bad).unwrap_err();
            assert_eq!((err.field.as_str(), err.value.as_str()), ("--filter", bad));
        }
    }

    #[test]
    fn exact_needs_the_attribute_present_and_equal() {
        let e = order_created();
        assert!(Filter::exact("type", "com.example.order.created").matches(&e));
        assert!(!Filter::exact("type", "com.example.order").matches(&e));
        assert!(
            !Filter::exact("type", "COM.EXAMPLE.ORDER.CREATED").matches(&e),
            "case-sensitive"
        );
        assert!(!Filter::exact("missing", "x").matches(&e));
    }

    #[test]
    fn exact_with_an_empty_value_matches_any_value_present() {
        let e = order_created();
        assert!(Filter::exact("region", "").matches(&e));
        assert!(!Filter::exact("missing", "").matches(&e));
    }

    #[test]
    fn prefix_and_suffix_match_the_ends_of_present_attributes() {
        let e = order_created();
        assert!(Filter::prefix("type", "com.example.").matches(&e));
        assert!(Filter::prefix("type", "com.example.order.created").matches(&e));
        assert!(!Filter::prefix("type", "example").matches(&e));
        assert!(!Filter::prefix("missing", "x").matches(&e));
        assert!(Filter::suffix("type", ".created").matches(&e));
        assert!(!Filter::suffix("type", ".deleted").matches(&e));
        assert!(!Filter::suffix("missing", "x").matches(&e));
    }

    #[test]
    fn all_any_not_combine() {
        let e = order_created();
        let yes = Filter::exact("region", "eu");
        let no = Filter::exact("region", "us");
        assert!(Filter::All(vec![yes.clone(), Filter::prefix("source", "/shop")]).matches(&e));
        assert!(!Filter::All(vec![yes.clone(), no.clone()]).matches(&e));
        assert!(Filter::All(vec![]).matches(&e), "all of nothing passes");
        assert!(Filter::Any(vec![no.clone(), yes.clone()]).matches(&e));
        assert!(!Filter::Any(vec![no.clone(), no.clone()]).matches(&e));
        assert!(!Filter::Any(vec![]).matches(&e));
        assert!(Filter::Not(Box::new(no.clone())).matches(&e));
        assert!(!Filter::Not(Box::new(yes.clone())).matches(&e));
        // A missing attribute fails the inner filter, so `not` passes.
        assert!(Filter::Not(Box::new(Filter::exact("missing", "x"))).matches(&e));
    }

    #[test]
    fn nested_filters_evaluate_inside_out() {
        // type starts with com.example. AND (region is us OR NOT source ends with /orders)
        let filter = Filter::All(vec![
            Filter::prefix("type", "com.example."),
            Filter::Any(vec![
                Filter::exact("region", "us"),
                Filter::Not(Box::new(Filter::suffix("source", "/orders"))),
            ]),
        ]);
        assert!(!filter.matches(&order_created()));
        assert!(filter.matches(&event(&[("type", "com.example.x"), ("region", "us")])));
        assert!(filter.matches(&event(&[("type", "com.example.x"), ("source", "/shop/carts")])));
        assert!(!filter.matches(&event(&[("type", "org.other"), ("region", "us")])));
    }

    #[test]
    fn a_trigger_needs_every_filter_to_pass() {
        let mut t = trigger();
        assert!(t.matches(&order_created()));
        t.filters.push(Filter::exact("region", "us"));
        assert!(!t.matches(&order_created()));
        t.filters.clear();
        assert!(t.matches(&event(&[])), "no filters pass every event");
    }

    #[test]
    fn filters_validate_names_values_and_nesting() {
        assert!(Filter::exact("type", "").validate().is_ok());
        assert!(Filter::All(vec![]).validate().is_ok());
        let err = Filter::prefix("type", "").validate().unwrap_err();
        assert!(err.reason.contains("needs a value"), "{err}");
        assert!(Filter::suffix("Type", "x").validate().is_err());
        let err = Filter::Any(vec![]).validate().unwrap_err();
        assert!(err.reason.contains("at least one"), "{err}");
        let nested = Filter::All(vec![
            Filter::exact("type", "x"),
            Filter::Not(Box::new(Filter::exact("BAD", "x"))),
        ]);
        assert_eq!(nested.validate().unwrap_err().field, "filter.all[1].not");
        let nested = Filter::Any(vec![Filter::All(vec![
            Filter::exact("a", "1"),
            Filter::prefix("b", ""),
        ])]);
        assert_eq!(nested.validate().unwrap_err().field, "filter.any[0].all[1]");
    }

    #[test]
    fn filters_nest_at_most_max_depth() {
        let mut filter = Filter::exact("type", "x");
        for _ in 1..MAX_FILTER_DEPTH {
            filter = Filter::Not(Box::new(filter));
        }
        assert!(filter.validate().is_ok());
        let err = Filter::Not(Box::new(filter)).validate().unwrap_err();
        assert!(err.reason.contains("at most"), "{err}");
    }

    // --- records ---

    #[test]
    fn valid_records_pass() {
        let broker = Broker {
            name: "default".to_string(),
            created_at: DateTime::UNIX_EPOCH,
            labels: vec![("team".to_string(), "shop".to_string())],
            delivery: Some(Delivery {
                retry: 3,
                backoff_delay: Some(Duration::from_millis(200)),
                ..Delivery::default()
            }),
        };
        broker.validate().unwrap();
        trigger().validate().unwrap();
        ping_source().validate().unwrap();
    }

    #[test]
    fn broker_validation_names_the_field() {
        let mut broker = Broker {
            name: "Default".to_string(),
            created_at: DateTime::UNIX_EPOCH,
            labels: vec![],
            delivery: None,
        };
        assert_eq!(broker.validate().unwrap_err().field, "name");
        broker.name = "default".to_string();
        broker.labels = vec![("a".to_string(), "1".to_string()), ("a".to_string(), "2".to_string())];
        let err = broker.validate().unwrap_err();
        assert!(err.reason.contains("more than once"), "{err}");
        broker.labels = vec![(String::new(), "1".to_string())];
        assert_eq!(broker.validate().unwrap_err().field, "labels");
        broker.labels.clear();
        broker.delivery = Some(Delivery {
            timeout: Some(Duration::ZERO),
            ..Delivery::default()
        });
        assert_eq!(broker.validate().unwrap_err().field, "delivery.timeout");
    }

    #[test]
    fn trigger_validation_names_the_field() {
        let cases: Vec<(&str, Break<Trigger>)> = vec![
            ("name", |t| t.name = "-x".to_string()),
            ("broker", |t| t.broker = String::new()),
            ("filters[1]", |t| t.filters.push(Filter::exact("Type", "x"))),
            ("subscriber", |t| t.subscriber = Sink::Url("ftp://x".to_string())),
            ("delivery.dead_letter_sink", |t| {
                t.delivery.dead_letter_sink = Some(Sink::Service("A".to_string()))
            }),
            ("delivery.retry", |t| t.delivery.retry = MAX_RETRY + 1),
        ];
        for (field, break_it) in cases {
            let mut t = trigger();
            break_it(&mut t);
            assert_eq!(t.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn ping_source_validation_names_the_field() {
        let cases: Vec<(&str, Break<PingSource>)> = vec![
            ("name", |p| p.name = "UPPER".to_string()),
            ("schedule", |p| p.schedule = " ".to_string()),
            ("schedule", |p| p.schedule = "@every 5m".to_string()),
            ("timezone", |p| p.timezone = Some(String::new())),
            ("timezone", |p| p.timezone = Some("Europe / Berlin".to_string())),
            ("content_type", |p| p.content_type = Some(String::new())),
            ("data", |p| p.data = Some(PingData::Text(String::new()))),
            ("data", |p| p.data = Some(PingData::Text("not json".to_string()))),
            ("data", |p| p.data = Some(PingData::Base64("!!!".to_string()))),
            // Valid base64 of "not json".
            ("data", |p| p.data = Some(PingData::Base64("bm90IGpzb24=".to_string()))),
            ("sink", |p| p.sink = Sink::Broker(String::new())),
        ];
        for (field, break_it) in cases {
            let mut p = ping_source();
            break_it(&mut p);
            let err = p.validate().unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn ping_data_is_json_only_when_the_content_type_says_so() {
        let mut p = ping_source();
        p.content_type = Some("text/plain".to_string());
        p.data = Some(PingData::Text("not json".to_string()));
        p.validate().unwrap();
        p.content_type = Some("Application/JSON; charset=utf-8".to_string());
        assert!(p.validate().is_err());
        p.data = Some(PingData::Base64("eyJhIjogMX0=".to_string())); // {"a": 1}
        p.validate().unwrap();
        p.content_type = None;
        p.data = Some(PingData::Text("anything".to_string()));
        p.validate().unwrap();
    }

    #[test]
    fn ping_payloads_decode() {
        assert_eq!(PingData::Text("hi".to_string()).payload().unwrap(), b"hi");
        assert_eq!(PingData::Base64("aGk=".to_string()).payload().unwrap(), b"hi");
        let err = PingData::Base64("aGk".to_string()).payload().unwrap_err();
        assert!(err.contains("base64"), "{err}");
    }

    #[test]
    fn backoff_policies_spell_like_knative() {
        for policy in [BackoffPolicy::Exponential, BackoffPolicy::Linear] {
            assert_eq!(policy.to_string().parse::<BackoffPolicy>().unwrap(), policy);
        }
        assert!("Linear".parse::<BackoffPolicy>().unwrap_err().contains("exponential"));
    }

    // --- ISO-8601 durations ---

    #[test]
    fn iso8601_durations_parse() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("PT0.2S", ms(200)),
            ("PT1S", ms(1_000)),
            ("PT1.5S", ms(1_500)),
            ("PT0,5S", ms(500)),
            ("PT1M", ms(60_000)),
            ("PT1M30S", ms(90_000)),
            ("PT1.5M", ms(90_000)),
            ("PT2H", ms(7_200_000)),
            ("P1D", ms(86_400_000)),
            ("P1DT1H1M1.001S", ms(90_061_001)),
            ("P2W", ms(14 * 86_400_000)),
            ("PT0S", ms(0)),
            ("pt10s", ms(10_000)),
            ("PT0.000000001S", Duration::from_nanos(1)),
            ("PT0.0000000019S", Duration::from_nanos(1)),
            ("PT90S", ms(90_000)),
        ] {
            assert_eq!(parse_iso8601_duration(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn bad_iso8601_durations_say_why_and_show_examples() {
        for (text, why) in [
            ("0.2s", "starts with P"),
            ("200ms", "starts with P"),
            ("P", "no amount"),
            ("PT", "no amount"),
            ("P1DT", "T is followed"),
            ("P1M", "months"),
            ("P1Y", "years"),
            ("PT1D", "before T"),
            ("P1H", "after T"),
            ("PT1S1M", "largest first"),
            ("PT1M1M", "largest first"),
            ("PTS", "no number"),
            ("PT1.5M2S", "only the last part"),
            ("PT1.S", "malformed"),
            ("PT.5S", "malformed"),
            ("PT1.2.3S", "malformed"),
            ("PT5", "no unit"),
            ("PT1X", "not a unit"),
            ("-PT1S", "starts with P"),
            ("PTT1S", "T comes once"),
            ("P99999999999999999999W", "too long"),
        ] {
            let err = parse_iso8601_duration(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(err.contains("PT0.2S"), "{text}: {err}");
        }
    }

    #[test]
    fn iso8601_durations_format() {
        let ms = Duration::from_millis;
        for (d, want) in [
            (ms(0), "PT0S"),
            (ms(200), "PT0.2S"),
            (ms(1_500), "PT1.5S"),
            (ms(60_000), "PT1M"),
            (ms(90_000), "PT1M30S"),
            (ms(3_600_000), "PT1H"),
            (ms(86_400_000), "P1D"),
            (ms(90_061_001), "P1DT1H1M1.001S"),
            (Duration::from_nanos(1), "PT0.000000001S"),
        ] {
            assert_eq!(format_iso8601_duration(d), want);
        }
    }

    proptest! {
        #[test]
        fn iso8601_durations_round_trip(secs in 0u64..=u64::MAX / 2, nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            prop_assert_eq!(parse_iso8601_duration(&format_iso8601_duration(d)).unwrap(), d);
        }

        /// A service or broker sink with a valid name, or an `http://` URL with a host and a
        /// port: parsed, and printed back to the same text.
        #[test]
        fn sinks_print_back_to_what_parses(
            name in "[a-z]([a-z0-9-]{0,40}[a-z0-9])?",
            host in "[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?|\\[[0-9a-f:]{2,20}\\]",
            port in proptest::option::of(1u16..),
            path in "(/[a-zA-Z0-9._~%!$&'()*+,;=:@-]{0,10}){0,3}(\\?[a-z=&]{0,10})?",
            kind in 0usize..3,
        ) {
            let text = match kind {
                0 => format!("service:{name}"),
                1 => format!("broker:{name}"),
                _ => format!("http://{host}{}{path}", port.map(|p| format!(":{p}")).unwrap_or_default()),
            };
            let sink = Sink::parse(&text);
            prop_assert!(sink.is_ok(), "{}: {:?}", text, sink);
            let sink = sink.unwrap();
            prop_assert_eq!(sink.to_string(), text);
            prop_assert_eq!(Sink::parse(&sink.to_string()), Ok(sink));
        }

        /// Any text: a valid sink that prints back to itself, or an error naming the field.
        #[test]
        fn any_text_gets_an_answer(s in "\\PC{0,40}|(service:|broker:|http://|https://)\\PC{0,30}") {
            match Sink::parse(&s) {
                Ok(sink) => {
                    prop_assert!(sink.validate().is_ok());
                    prop_assert_eq!(Sink::parse(&sink.to_string()), Ok(sink));
                }
                Err(e) => prop_assert_eq!(e.field, "sink"),
            }
        }

        /// Credentials, spaces and ports out of range are never part of a URL sink.
        #[test]
        fn bad_urls_are_refused(user in "[a-z]{1,8}@", port in 65_536u32.., space in "[ \\t\\n]") {
            for bad in [format!("http://{user}host/"), format!("http://host:{port}/"), format!("http://host/a{space}b")] {
                prop_assert!(Sink::parse(&bad).is_err(), "{:?}", bad);
            }
        }

        #[test]
        fn not_not_is_the_filter_itself(value in "[a-z.]{0,8}", present in any::<bool>()) {
            let f = Filter::prefix("type", &value);
            let attrs: Vec<(&str, &str)> = if present { vec![("type", "com.example")] } else { vec![] };
            let e = event(&attrs);
            prop_assert_eq!(Filter::Not(Box::new(Filter::Not(Box::new(f.clone())))).matches(&e), f.matches(&e));
            prop_assert_eq!(Filter::Any(vec![f.clone()]).matches(&e), Filter::All(vec![f.clone()]).matches(&e));
        }
    }
}
