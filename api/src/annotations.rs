//! Knative's `autoscaling.knative.dev/*` annotations, read into a revision's scale settings.
//!
//! The same keys work on `rouse deploy --annotation KEY=VALUE` and in Knative YAML, and
//! [`scale_annotations`] writes them back, so an object round-trips.

use std::collections::BTreeMap;

use crate::duration::parse_duration;
use crate::error::ValidationError;
use crate::template::ScaleBounds;

/// Prefix of every autoscaling annotation.
pub const AUTOSCALING: &str = "autoscaling.knative.dev/";
/// The only autoscaler class Rouse has: Knative's KPA.
pub const KPA_CLASS: &str = "kpa.autoscaling.knative.dev";
/// Rouse's own annotation for `--frozen-retention`.
pub const FROZEN_RETENTION: &str = "rouse.dev/frozen-retention";

/// Rouse's annotation for a revision's sink binding (`--sink`): `service:NAME`, `broker:NAME` or
/// a URL, given to the container as `K_SINK`.
pub const SINK: &str = "rouse.dev/sink";
/// Rouse's annotation for `--ce-override`: a JSON object of extension names to values.
pub const CE_OVERRIDES: &str = "rouse.dev/ce-overrides";
/// Set by `rouse deploy --refresh` to the time of the deploy: a template that differs only
/// here is a new revision, whose instances read secrets and config maps anew (as kubectl's
/// `kubectl.kubernetes.io/restartedAt`).
pub const REFRESHED_AT: &str = "rouse.dev/refreshed-at";

/// The service label that makes it private (`cluster-local`): it answers only requests that
/// come from containers, at the address they reach the daemon by, never the host's ingress.
pub const VISIBILITY: &str = "networking.knative.dev/visibility";
/// The one value of [`VISIBILITY`].
pub const CLUSTER_LOCAL: &str = "cluster-local";

/// Whether a service with `labels` is cluster-local.
pub fn is_cluster_local(labels: &BTreeMap<String, String>) -> bool {
    labels.get(VISIBILITY).is_some_and(|v| v == CLUSTER_LOCAL)
}

/// Checks a label of a service's own metadata (at `field`): [`VISIBILITY`] takes only
/// `cluster-local`; other keys as [`check_metadata_key`].
pub fn check_service_label(field: &str, key: &str, value: &str) -> Result<(), ValidationError> {
    if key != VISIBILITY {
        return check_metadata_key(field, key);
    }
    if value == CLUSTER_LOCAL {
        return Ok(());
    }
    Err(ValidationError::new(
        format!("{field}[{key}]"),
        value,
        "takes only cluster-local (answer containers only); remove the label for a public service",
    ))
}

/// Prefixes whose keys mean something to Knative or Rouse: each key under them is honoured or
/// refused by name, never kept and ignored (a user could believe a service private when it
/// is not). Keys under any other prefix are the user's metadata, kept as given.
pub const RESERVED_PREFIXES: [&str; 5] = [
    AUTOSCALING,
    "serving.knative.dev/",
    "networking.knative.dev/",
    "features.knative.dev/",
    "rouse.dev/",
];

/// Keys under those prefixes that are honoured as metadata, beside the scale settings: the
/// ones Knative's webhook writes (kept as given) and Rouse's own.
const HONOURED_METADATA: [&str; 5] = [
    "serving.knative.dev/creator",
    "serving.knative.dev/lastModifier",
    REFRESHED_AT,
    SINK,
    CE_OVERRIDES,
];

/// Refuses a label or annotation `key` (at `field`) under a reserved prefix that Rouse does
/// not implement, naming it; other keys pass.
pub fn check_metadata_key(field: &str, key: &str) -> Result<(), ValidationError> {
    if !RESERVED_PREFIXES.iter().any(|p| key.starts_with(p)) {
        return Ok(());
    }
    // Every honoured key but the service's visibility (checked by `check_service_label`) is
    // an annotation: as a label it would be kept and ignored.
    let label = field.ends_with("labels");
    // Scale settings are read (and checked) by `apply_annotation`.
    let honoured = HONOURED_METADATA.contains(&key) || is_scale_annotation(key);
    if honoured && !label {
        return Ok(());
    }
    let reason = match key {
        _ if honoured => "is an annotation, not a label: as a label nothing would read it; move it under annotations",
        VISIBILITY => {
            "is a label of the service (metadata.labels, `rouse deploy --cluster-local`), not of a \
             revision or an annotation: here the service would stay public"
        }
        "serving.knative.dev/visibility" => {
            "is Knative's old spelling; write the label networking.knative.dev/visibility: cluster-local"
        }
        crate::rollout::ROLLOUT_DURATION => {
            "is an annotation of the service (metadata.annotations, `rouse deploy --rollout-duration`), \
             not of a revision or a label: here no rollout would be gradual"
        }
        _ => "is not a key Rouse implements, and it is not kept and ignored; remove it",
    };
    Err(ValidationError::new(format!("{field}[{key}]"), key, reason))
}

/// Whether `key` is a scale setting (read by [`apply_annotation`]) rather than a free-form note.
pub fn is_scale_annotation(key: &str) -> bool {
    key.starts_with(AUTOSCALING) || key == FROZEN_RETENTION
}

fn number<T: std::str::FromStr>(key: &str, value: &str, what: &str) -> Result<T, ValidationError> {
    value
        .trim()
        .parse()
        .map_err(|_| ValidationError::new(key, value, format!("must be {what}")))
}

fn millis(key: &str, value: &str) -> Result<u64, ValidationError> {
    // Knative writes durations as "60s", "1m30s" is not accepted here; "90s" is.
    let duration = parse_duration(value).map_err(|reason| ValidationError::new(key, value, reason))?;
    Ok(duration.as_millis() as u64)
}

/// Applies one annotation to `scale`. Unknown `autoscaling.knative.dev/*` keys and other
/// prefixes are refused by name rather than silently ignored.
/// Takes the setting of an annotation back to its default (`--annotation KEY-`), as if the
/// annotation had never been given.
pub fn remove_annotation(scale: &mut ScaleBounds, key: &str) -> Result<(), ValidationError> {
    let default = ScaleBounds::default();
    let name = key.strip_prefix(AUTOSCALING).unwrap_or_default();
    match name {
        _ if key == FROZEN_RETENTION => scale.frozen_retention_ms = default.frozen_retention_ms,
        "min-scale" | "minScale" => scale.min = default.min,
        "max-scale" | "maxScale" => scale.max = default.max,
        "initial-scale" | "initialScale" => scale.initial = default.initial,
        "target" => scale.target = default.target,
        "target-utilization-percentage" => scale.utilization = default.utilization,
        "metric" => scale.metric = default.metric,
        "window" => scale.window_ms = default.window_ms,
        "panic-window-percentage" => scale.panic_window_percentage = default.panic_window_percentage,
        "panic-threshold-percentage" => scale.panic_threshold_percentage = default.panic_threshold_percentage,
        "scale-to-zero-pod-retention-period" => scale.last_instance_retention_ms = default.last_instance_retention_ms,
        "scale-down-delay" => scale.scale_down_delay_ms = None,
        "activation-scale" => scale.activation_scale = None,
        "target-burst-capacity" => scale.target_burst_capacity_milli = None,
        "class" => {}
        // The same error as setting it: not an annotation Rouse knows.
        _ => return apply_annotation(scale, key, ""),
    }
    Ok(())
}

pub fn apply_annotation(scale: &mut ScaleBounds, key: &str, value: &str) -> Result<(), ValidationError> {
    if key == FROZEN_RETENTION {
        scale.frozen_retention_ms = Some(millis(key, value)?);
        return Ok(());
    }
    let Some(name) = key.strip_prefix(AUTOSCALING) else {
        return Err(ValidationError::new(
            "annotation",
            key,
            format!(
                "only {AUTOSCALING}* and {FROZEN_RETENTION} annotations are supported, e.g. {AUTOSCALING}target=10"
            ),
        ));
    };
    match name {
        "min-scale" | "minScale" => scale.min = number(key, value, "a whole number ≥ 0")?,
        "max-scale" | "maxScale" => scale.max = number(key, value, "a whole number ≥ 0 (0 = unlimited)")?,
        "initial-scale" | "initialScale" => scale.initial = number(key, value, "a whole number ≥ 0")?,
        "target" => scale.target = Some(number(key, value, "a whole number ≥ 1")?),
        "target-utilization-percentage" => scale.utilization = Some(number(key, value, "a percentage 1-100")?),
        "metric" => {
            scale.metric = value
                .parse()
                .map_err(|_| ValidationError::new(key, value, "must be 'concurrency' or 'rps'"))?
        }
        "window" => scale.window_ms = Some(millis(key, value)?),
        "panic-window-percentage" => scale.panic_window_percentage = Some(number(key, value, "a percentage 1-100")?),
        "panic-threshold-percentage" => {
            scale.panic_threshold_percentage = Some(number(key, value, "a percentage 110-1000")?)
        }
        "scale-to-zero-pod-retention-period" => scale.last_instance_retention_ms = Some(millis(key, value)?),
        "scale-down-delay" => scale.scale_down_delay_ms = Some(millis(key, value)?),
        "activation-scale" => scale.activation_scale = Some(number(key, value, "a whole number ≥ 1")?),
        "target-burst-capacity" => {
            // -1 (always in the path) or a number ≥ 0; Rouse's activator is always in it.
            let capacity: f64 = number(key, value, "a number ≥ 0, or -1")?;
            if capacity < 0.0 && capacity != -1.0 {
                return Err(ValidationError::new(key, value, "must be a number ≥ 0, or -1"));
            }
            scale.target_burst_capacity_milli = Some((capacity * 1000.0).round() as i64);
        }
        "class" if value == KPA_CLASS => {}
        "class" => {
            return Err(ValidationError::new(
                key,
                value,
                format!("Rouse only has the KPA autoscaler: use {KPA_CLASS}"),
            ));
        }
        _ => {
            return Err(ValidationError::new(
                "annotation",
                key,
                "is not an autoscaling annotation Rouse knows: min-scale, max-scale, initial-scale, target, \
                 target-utilization-percentage, metric, window, panic-window-percentage, \
                 panic-threshold-percentage, scale-to-zero-pod-retention-period, scale-down-delay, \
                 activation-scale, target-burst-capacity, class",
            ));
        }
    }
    Ok(())
}

/// Parses `--annotation KEY=VALUE`.
pub fn parse_annotation(s: &str) -> Result<(String, String), ValidationError> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(ValidationError::new(
            "--annotation",
            s,
            format!("expected KEY=VALUE, e.g. --annotation {AUTOSCALING}target=10"),
        )),
    }
}

fn seconds(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The annotations that describe `scale`, as Knative writes them.
pub fn scale_annotations(scale: &ScaleBounds) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut put = |name: &str, value: String| {
        out.insert(format!("{AUTOSCALING}{name}"), value);
    };
    put("min-scale", scale.min.to_string());
    put("max-scale", scale.max.to_string());
    put("initial-scale", scale.initial.to_string());
    put("metric", scale.metric.to_string());
    if let Some(target) = scale.target {
        put("target", target.to_string());
    }
    if let Some(utilization) = scale.utilization {
        put("target-utilization-percentage", utilization.to_string());
    }
    if let Some(window) = scale.window_ms {
        put("window", seconds(window));
    }
    if let Some(p) = scale.panic_window_percentage {
        put("panic-window-percentage", p.to_string());
    }
    if let Some(p) = scale.panic_threshold_percentage {
        put("panic-threshold-percentage", p.to_string());
    }
    if let Some(r) = scale.last_instance_retention_ms {
        put("scale-to-zero-pod-retention-period", seconds(r));
    }
    if let Some(d) = scale.scale_down_delay_ms {
        put("scale-down-delay", seconds(d));
    }
    if let Some(n) = scale.activation_scale {
        put("activation-scale", n.to_string());
    }
    if let Some(milli) = scale.target_burst_capacity_milli {
        let text = if milli % 1000 == 0 {
            (milli / 1000).to_string()
        } else {
            (milli as f64 / 1000.0).to_string()
        };
        put("target-burst-capacity", text);
    }
    if let Some(r) = scale.frozen_retention_ms {
        out.insert(FROZEN_RETENTION.to_string(), seconds(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_removed_annotation_is_as_if_never_given() {
        let mut scale = ScaleBounds::default();
        apply_annotation(&mut scale, "autoscaling.knative.dev/max-scale", "3").unwrap();
        apply_annotation(&mut scale, "autoscaling.knative.dev/window", "90s").unwrap();
        remove_annotation(&mut scale, "autoscaling.knative.dev/max-scale").unwrap();
        remove_annotation(&mut scale, "autoscaling.knative.dev/window").unwrap();
        assert_eq!(scale, ScaleBounds::default());
        assert!(remove_annotation(&mut scale, "example.com/other").is_err());
    }
    use crate::template::ScaleMetric;

    #[test]
    fn knative_annotations_set_scale_settings_and_round_trip() {
        let mut scale = ScaleBounds::default();
        for (k, v) in [
            ("autoscaling.knative.dev/min-scale", "1"),
            ("autoscaling.knative.dev/max-scale", "5"),
            ("autoscaling.knative.dev/target", "10"),
            ("autoscaling.knative.dev/target-utilization-percentage", "80"),
            ("autoscaling.knative.dev/metric", "rps"),
            ("autoscaling.knative.dev/window", "40s"),
            ("autoscaling.knative.dev/panic-window-percentage", "20"),
            ("autoscaling.knative.dev/panic-threshold-percentage", "150"),
            ("autoscaling.knative.dev/scale-to-zero-pod-retention-period", "5s"),
            ("autoscaling.knative.dev/class", "kpa.autoscaling.knative.dev"),
            ("rouse.dev/frozen-retention", "2m"),
        ] {
            apply_annotation(&mut scale, k, v).unwrap();
        }
        assert_eq!(
            (scale.min, scale.max, scale.target, scale.utilization),
            (1, 5, Some(10), Some(80))
        );
        assert_eq!(scale.metric, ScaleMetric::Rps);
        assert_eq!(scale.window_ms, Some(40_000));
        assert_eq!(scale.frozen_retention_ms, Some(120_000));
        let mut again = ScaleBounds::default();
        for (k, v) in scale_annotations(&scale) {
            apply_annotation(&mut again, &k, &v).unwrap();
        }
        assert_eq!(again, scale);
    }

    #[test]
    fn unknown_or_malformed_annotations_are_named() {
        let mut scale = ScaleBounds::default();
        let err = apply_annotation(&mut scale, "autoscaling.knative.dev/bogus", "1").unwrap_err();
        assert!(err.to_string().contains("autoscaling.knative.dev/bogus"), "{err}");
        let err = apply_annotation(&mut scale, "example.com/x", "1").unwrap_err();
        assert!(err.reason.contains("only autoscaling.knative.dev/*"), "{err}");
        let err = apply_annotation(&mut scale, "autoscaling.knative.dev/target", "ten").unwrap_err();
        assert_eq!(err.field, "autoscaling.knative.dev/target");
        assert!(
            apply_annotation(
                &mut scale,
                "autoscaling.knative.dev/class",
                "hpa.autoscaling.knative.dev"
            )
            .is_err()
        );
        assert!(parse_annotation("novalue").is_err());
        assert_eq!(
            parse_annotation("a/b=c=d").unwrap(),
            ("a/b".to_string(), "c=d".to_string())
        );
    }

    /// Milliseconds as annotations hold them: any count up to `parse_duration`'s bound.
    fn millis() -> impl Strategy<Value = Option<u64>> {
        proptest::option::of(prop_oneof![
            0u64..=1_000_000_000_000,
            (0u64..=1_000_000_000).prop_map(|s| s * 1000)
        ])
    }

    fn scale_bounds() -> impl Strategy<Value = ScaleBounds> {
        let counts = (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(any::<u32>()),
        );
        let percentages = (
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
        );
        let times = (millis(), millis(), millis(), any::<bool>());
        let knative = (
            millis(),
            proptest::option::of(1u32..1000),
            proptest::option::of(prop_oneof![Just(-1000i64), 0i64..10_000_000]),
        );
        (counts, percentages, times, knative).prop_map(
            |(
                (min, max, initial, target),
                (utilization, panic_window, panic_threshold),
                (window, retention, frozen, rps),
                (delay, activation, burst),
            )| {
                ScaleBounds {
                    min,
                    max,
                    initial,
                    target,
                    utilization,
                    window_ms: window,
                    metric: if rps {
                        ScaleMetric::Rps
                    } else {
                        ScaleMetric::Concurrency
                    },
                    frozen_retention_ms: frozen,
                    panic_window_percentage: panic_window,
                    panic_threshold_percentage: panic_threshold,
                    last_instance_retention_ms: retention,
                    scale_down_delay_ms: delay,
                    activation_scale: activation,
                    target_burst_capacity_milli: burst,
                }
            },
        )
    }

    proptest! {
        /// Any scale settings print as annotations that read back to the same settings (what
        /// `describe -o yaml | apply -f -` relies on).
        #[test]
        fn scale_settings_round_trip(scale in scale_bounds()) {
            let mut again = ScaleBounds::default();
            for (key, value) in scale_annotations(&scale) {
                prop_assert!(apply_annotation(&mut again, &key, &value).is_ok(), "{}={}", key, value);
            }
            prop_assert_eq!(again, scale);
        }

        /// `KEY=VALUE` splits at the first `=`; a key is needed, a value may be empty.
        #[test]
        fn flags_split_at_the_first_equals(key in "[^=]{1,30}", value in "\\PC{0,30}") {
            prop_assert_eq!(parse_annotation(&format!("{key}={value}")), Ok((key.clone(), value.clone())));
            prop_assert!(parse_annotation(&key).is_err());
            let keyless = format!("={value}");
            prop_assert!(parse_annotation(&keyless).is_err(), "{}", keyless);
        }

        /// Any value of any autoscaling key: applied or refused naming the key, never a panic.
        #[test]
        fn any_value_gets_an_answer(
            name in "(min-scale|max-scale|initial-scale|target|target-utilization-percentage|metric|window|panic-window-percentage|panic-threshold-percentage|scale-to-zero-pod-retention-period|class|[a-z-]{0,12})",
            value in "\\PC{0,16}|[0-9. ]{0,12}(ms|s|m|h)?",
        ) {
            let key = format!("{AUTOSCALING}{name}");
            let mut scale = ScaleBounds::default();
            if let Err(e) = apply_annotation(&mut scale, &key, &value) {
                prop_assert!(e.field == key || e.value == key, "{}", e);
            }
        }
    }
}
