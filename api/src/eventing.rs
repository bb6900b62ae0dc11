//! Eventing resources: brokers, triggers (filters, subscriber, delivery options) and ping sources.
//!
//! These are the records the daemon stores and the admin API speaks; the Knative-shaped objects
//! (`eventing.knative.dev/v1` Broker and Trigger, `sources.knative.dev/v1` PingSource) convert
//! to and from them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The broker that exists from the start.
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
    Exact { attribute: String, value: String },
    Prefix { attribute: String, value: String },
    Suffix { attribute: String, value: String },
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
