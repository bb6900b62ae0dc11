//! Flag values several commands share, parsed into the api's records: `KEY=VALUE` pairs
//! (labels, CloudEvent overrides), sinks and delivery options.
//!
//! Errors name the flag the user typed, not the record's field: [`on_flags`] renames the fields
//! a record's `validate()` reports.

use rouse_api::ValidationError;
use rouse_api::eventing::{BackoffPolicy, Delivery, Sink, parse_iso8601_duration};

use crate::args::DeliveryArgs;

/// Parses repeated `--flag KEY=VALUE` values, in the order given; a key given twice is refused.
pub(crate) fn key_values(flag: &str, values: &[String]) -> Result<Vec<(String, String)>, ValidationError> {
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(values.len());
    for value in values {
        let Some((key, v)) = value.split_once('=').filter(|(key, _)| !key.is_empty()) else {
            return Err(ValidationError::new(
                flag,
                value,
                format!("expected KEY=VALUE, e.g. {flag} team=payments"),
            ));
        };
        if pairs.iter().any(|(k, _)| k == key) {
            return Err(ValidationError::new(
                flag,
                value,
                format!("the key '{key}' is given more than once; keep one"),
            ));
        }
        pairs.push((key.to_string(), v.to_string()));
    }
    Ok(pairs)
}

/// Parses a sink given by `flag`: `service:NAME`, `broker:NAME` or an `http://` URL.
pub(crate) fn sink(flag: &str, value: &str) -> Result<Sink, ValidationError> {
    Sink::parse(value).map_err(|e| ValidationError {
        field: flag.to_string(),
        ..e
    })
}

/// The delivery options the flags give; `None` when no delivery flag is given.
pub(crate) fn delivery(args: &DeliveryArgs) -> Result<Option<Delivery>, ValidationError> {
    let DeliveryArgs {
        retry,
        backoff_policy,
        backoff_delay,
        delivery_timeout,
        dead_letter_sink,
    } = args;
    if retry.is_none()
        && backoff_policy.is_none()
        && backoff_delay.is_none()
        && delivery_timeout.is_none()
        && dead_letter_sink.is_none()
    {
        return Ok(None);
    }
    let duration = |flag: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| parse_iso8601_duration(v).map_err(|reason| ValidationError::new(flag, v, reason)))
            .transpose()
    };
    let delivery = Delivery {
        retry: retry.unwrap_or(0),
        backoff_policy: match backoff_policy {
            None => BackoffPolicy::default(),
            Some(p) => p
                .parse()
                .map_err(|reason: String| ValidationError::new("--backoff-policy", p, reason))?,
        },
        backoff_delay: duration("--backoff-delay", backoff_delay)?,
        timeout: duration("--delivery-timeout", delivery_timeout)?,
        dead_letter_sink: dead_letter_sink
            .as_deref()
            .map(|s| sink("--dead-letter-sink", s))
            .transpose()?,
    };
    delivery.validate().map_err(on_flags)?;
    Ok(Some(delivery))
}

/// Renames the record field an error names to the flag that sets it (`delivery.timeout` is
/// `--delivery-timeout`, `filters[1]` is `--filter`); other fields are left as they are.
pub(crate) fn on_flags(error: ValidationError) -> ValidationError {
    let field = error.field.as_str();
    let flag = match field {
        "broker" => "--broker",
        "labels" => "--label",
        "subscriber" | "sink" => "--sink",
        "schedule" => "--schedule",
        "timezone" => "--timezone",
        "content_type" => "--content-type",
        "data" => "--data",
        "delivery.retry" => "--retry",
        "delivery.timeout" => "--delivery-timeout",
        _ if field.starts_with("delivery.dead_letter_sink") => "--dead-letter-sink",
        _ if field.starts_with("filters[") => "--filter",
        _ => return error,
    };
    ValidationError {
        field: flag.to_string(),
        ..error
    }
}

/// The `NAME=VALUE` lines of a file `flag` names, as Docker's `--env-file` reads them: blank
/// lines and `#` comments skipped, the value kept as written (no quotes removed).
pub(crate) fn env_file(flag: &str, path: &std::path::Path) -> Result<Vec<String>, ValidationError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ValidationError::new(flag, path.display().to_string(), format!("cannot be read: {e}")))?;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !line.contains('=') {
            return Err(ValidationError::new(
                flag,
                format!("{}:{}", path.display(), n + 1),
                format!("'{line}' is not NAME=VALUE"),
            ));
        }
        lines.push(line.to_string());
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn key_values_keep_order_and_split_at_the_first_equals() {
        let pairs = key_values("--label", &strings(&["team=shop", "note=a=b", "empty="])).unwrap();
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("team", "shop"), ("note", "a=b"), ("empty", "")]);
    }

    #[test]
    fn bad_key_values_name_the_flag() {
        for bad in [&["team"][..], &["=x"], &["a=1", "a=2"]] {
            let err = key_values("--label", &strings(bad)).unwrap_err();
            assert_eq!(err.field, "--label", "{bad:?}");
        }
        let err = key_values("--label", &strings(&["team"])).unwrap_err();
        assert!(err.reason.contains("KEY=VALUE"), "{err}");
    }

    #[test]
    fn sinks_name_their_flag() {
        assert_eq!(
            sink("--sink", "service:billing").unwrap(),
            Sink::Service("billing".to_string())
        );
        let err = sink("--dead-letter-sink", "billing").unwrap_err();
        assert_eq!(err.field, "--dead-letter-sink");
        assert!(err.reason.contains("service:NAME"), "{err}");
    }

    #[test]
    fn no_delivery_flags_give_no_delivery() {
        assert_eq!(delivery(&DeliveryArgs::default()).unwrap(), None);
    }

    #[test]
    fn delivery_flags_fill_the_record() {
        let args = DeliveryArgs {
            retry: Some(3),
            backoff_policy: Some("linear".to_string()),
            backoff_delay: Some("PT0.2S".to_string()),
            delivery_timeout: Some("PT10S".to_string()),
            dead_letter_sink: Some("http://127.0.0.1:9000/dead".to_string()),
        };
        assert_eq!(
            delivery(&args).unwrap(),
            Some(Delivery {
                retry: 3,
                backoff_policy: BackoffPolicy::Linear,
                backoff_delay: Some(Duration::from_millis(200)),
                timeout: Some(Duration::from_secs(10)),
                dead_letter_sink: Some(Sink::Url("http://127.0.0.1:9000/dead".to_string())),
            })
        );
        let only_retry = DeliveryArgs {
            retry: Some(1),
            ..DeliveryArgs::default()
        };
        assert_eq!(
            delivery(&only_retry).unwrap().unwrap().backoff_policy,
            BackoffPolicy::Exponential
        );
    }

    #[test]
    fn bad_delivery_flags_name_the_flag_and_the_fix() {
        let cases: [(DeliveryArgs, &str, &str); 5] = [
            (
                DeliveryArgs {
                    backoff_policy: Some("Linear".to_string()),
                    ..DeliveryArgs::default()
                },
                "--backoff-policy",
                "exponential",
            ),
            (
                DeliveryArgs {
                    backoff_delay: Some("200ms".to_string()),
                    ..DeliveryArgs::default()
                },
                "--backoff-delay",
                "PT0.2S",
            ),
            (
                DeliveryArgs {
                    delivery_timeout: Some("PT0S".to_string()),
                    ..DeliveryArgs::default()
                },
                "--delivery-timeout",
                "more than zero",
            ),
            (
                DeliveryArgs {
                    dead_letter_sink: Some("https://x/".to_string()),
                    ..DeliveryArgs::default()
                },
                "--dead-letter-sink",
                "https",
            ),
            (
                DeliveryArgs {
                    retry: Some(u32::MAX),
                    ..DeliveryArgs::default()
                },
                "--retry",
                "at most",
            ),
        ];
        for (args, flag, reason) in cases {
            let err = delivery(&args).unwrap_err();
            assert_eq!(err.field, flag, "{err}");
            assert!(err.reason.contains(reason), "{err}");
        }
    }
}
