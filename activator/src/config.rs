//! Limits and timeouts of the ingress.

use std::time::Duration;

use serde::Deserialize;

/// Largest request head (request line and headers) accepted, in bytes; larger gets 431.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest request body accepted, in bytes; larger gets 413. Generous because uploads stream.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024 * 1024;
/// How long a connection may sit without sending a request head before it is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long in-flight requests may take to finish when the daemon shuts down.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Most requests that may wait for a revision's instances at once; more get 503.
pub const DEFAULT_MAX_WAITING: usize = 10_000;

/// Ingress settings (`[ingress]` in `rouse.toml`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct IngressConfig {
    /// Domain under which services answer: `{name}.{domain}`.
    pub domain: String,
    /// See [`DEFAULT_MAX_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// See [`DEFAULT_MAX_BODY_BYTES`].
    pub max_body_bytes: u64,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    #[serde(with = "humantime_serde_compat")]
    pub idle_timeout: Duration,
    /// See [`DEFAULT_MAX_WAITING`].
    pub max_waiting: usize,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            domain: "localhost".to_string(),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_waiting: DEFAULT_MAX_WAITING,
        }
    }
}

/// Durations in config files are strings like `"60s"` or `"500ms"`.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        crate::config::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// Parses `"60s"`, `"1.5s"`, `"250ms"`, `"2m"`: a number and a unit (ms, s, m, h).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{s}' is not a duration; write a number and a unit, e.g. \"60s\" or \"500ms\""))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("'{s}' has no known unit; use ms, s, m or h, e.g. \"60s\"")),
    };
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("60").unwrap_err().contains("unit"));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
