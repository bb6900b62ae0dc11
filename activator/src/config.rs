//! Limits and timeouts of the ingress.

use std::time::Duration;

use serde::Deserialize;

/// Default of [`IngressConfig::max_header_bytes`].
pub(crate) const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Default of [`IngressConfig::max_body_bytes`].
pub(crate) const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024 * 1024;
/// Default of [`IngressConfig::idle_timeout`].
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long in-flight requests may take to finish when the daemon shuts down.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default of [`IngressConfig::body_idle_timeout`].
pub(crate) const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`IngressConfig::write_timeout`].
pub(crate) const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`IngressConfig::max_connections`].
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default of [`IngressConfig::max_connections_per_client`].
pub(crate) const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 2_000;
/// Default of [`IngressConfig::max_waiting`].
pub(crate) const DEFAULT_MAX_WAITING: usize = 10_000;

/// Ingress settings (`[ingress]` in `rouse.toml`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct IngressConfig {
    /// Domain under which services answer: `{name}.{domain}`.
    pub domain: String,
    /// Largest request head (request line and headers) accepted, in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// Largest request body accepted, in bytes; larger gets 413. Generous because uploads stream.
    pub max_body_bytes: u64,
    /// How long a connection may sit without sending a request head before it is closed.
    #[serde(deserialize_with = "rouse_api::duration::deserialize_duration")]
    pub idle_timeout: Duration,
    /// How long every listener waits for the next part of a request body before it gives up
    /// on it (the ingress answers 408 if no answer started, else cuts the connection); a
    /// client that stalls midway holds no instance, handler or buffer longer.
    #[serde(deserialize_with = "rouse_api::duration::deserialize_duration")]
    pub body_idle_timeout: Duration,
    /// How long every listener waits for a client to read the next part of a response (or
    /// of a websocket) before it cuts the connection; a client that never reads frees the
    /// instance slot its request held after this long.
    #[serde(deserialize_with = "rouse_api::duration::deserialize_duration")]
    pub write_timeout: Duration,
    /// Most connections open at once on each listener (the ingress, the admin API, the broker
    /// ingress); more are answered 503 and closed. The daemon raises its file limit at start
    /// to make room for them.
    pub max_connections: usize,
    /// Most connections open at once from one client IP on each listener, so one client
    /// cannot take them all.
    pub max_connections_per_client: usize,
    /// Most requests that may wait for a revision's instances at once; more get 503.
    pub max_waiting: usize,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            domain: "localhost".to_string(),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            max_waiting: DEFAULT_MAX_WAITING,
        }
    }
}
