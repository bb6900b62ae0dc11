//! Gradual rollouts (`serving.knative.dev/rollout-duration`), as Knative's: a new latest ready
//! revision does not take the latest's traffic at once but a growing share of it, from 1 %
//! to all of it over the duration, while the revision before keeps the rest.
//!
//! The state is a list of stages, oldest first: the revision that had the traffic (the base),
//! then each newer latest ready revision with the time it became ready. The shares at any
//! moment are a pure function of the stages, the duration and the time, so nothing needs
//! writing as a rollout moves on, and a daemon restarted mid-rollout goes on where it was.
//! A revision that becomes ready during a rollout starts a rollout of its own over the shares
//! of the ones before it, as Knative's does.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// The service annotation that sets the duration.
pub const ROLLOUT_DURATION: &str = "serving.knative.dev/rollout-duration";
/// The longest rollout: a day.
pub const MAX_ROLLOUT_SECONDS: u64 = 24 * 60 * 60;

/// One revision of a rollout, and when it became the latest ready one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    pub revision: String,
    pub since: DateTime<Utc>,
}

/// Reads the annotation's value (`380s`, `5m`, `0` for none).
pub fn parse_rollout_duration(value: &str) -> Result<std::time::Duration, ValidationError> {
    let field = format!("metadata.annotations[{ROLLOUT_DURATION}]");
    // Go's time.ParseDuration, which Knative reads it with, takes a bare 0.
    if value.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let duration =
        crate::duration::parse_duration(value).map_err(|reason| ValidationError::new(&field, value, reason))?;
    if duration.as_secs() > MAX_ROLLOUT_SECONDS {
        return Err(ValidationError::new(
            field,
            value,
            format!("must be at most {MAX_ROLLOUT_SECONDS}s (a day)"),
        ));
    }
    Ok(duration)
}

/// The stages after `ready` became the latest ready revision at `now`, `previous` having
/// had the traffic: stages whose rollout is over are dropped (the newest finished one
/// becomes the base), and `ready` starts its own. With no duration, no rollout.
pub fn begin(
    stages: &[Stage],
    previous: Option<&str>,
    ready: &str,
    duration: std::time::Duration,
    now: DateTime<Utc>,
) -> Vec<Stage> {
    let Some(previous) = previous.filter(|p| *p != ready && !duration.is_zero()) else {
        return Vec::new();
    };
    // Stages that still describe the traffic: from the newest one that is complete on.
    let current = match stages.last() {
        Some(last) if last.revision == previous => {
            let done = stages
                .iter()
                .rposition(|s| fraction(s, duration, now) >= 1.0)
                .unwrap_or(0);
            stages[done..].to_vec()
        }
        // No rollout under way, or one of other revisions: the previous one has it all.
        _ => Vec::new(),
    };
    let mut next = if current.is_empty() {
        vec![Stage {
            revision: previous.to_string(),
            since: DateTime::<Utc>::UNIX_EPOCH,
        }]
    } else {
        current
    };
    next.push(Stage {
        revision: ready.to_string(),
        since: now,
    });
    next
}

/// How far `stage` is through its rollout at `now`, 0 to 1.
fn fraction(stage: &Stage, duration: std::time::Duration, now: DateTime<Utc>) -> f64 {
    if duration.is_zero() {
        return 1.0;
    }
    let elapsed = (now - stage.since).to_std().unwrap_or_default();
    (elapsed.as_secs_f64() / duration.as_secs_f64()).min(1.0)
}

/// How `percent` (the latest revision's share of the traffic) splits at `now` over the stages
/// of a rollout toward `latest`: the newest stage takes its fraction of it (at least 1 %), the
/// one before its fraction of the rest, and the base what is left. Newest first; shares of 0
/// are left out. Without a rollout toward `latest` (none, over, or of another revision), all
/// of it goes to `latest`.
pub fn shares(
    stages: &[Stage],
    latest: &str,
    duration: std::time::Duration,
    now: DateTime<Utc>,
    percent: u32,
) -> Vec<(String, u32)> {
    let rolling = stages.len() >= 2 && stages.last().is_some_and(|s| s.revision == latest);
    if !rolling || percent <= 1 {
        return vec![(latest.to_string(), percent)];
    }
    let mut out = Vec::new();
    let mut rest = percent;
    for stage in stages[1..].iter().rev() {
        let f = fraction(stage, duration, now);
        let share = if f >= 1.0 {
            rest
        } else {
            ((f * f64::from(rest)) as u32).max(1).min(rest)
        };
        if share > 0 {
            out.push((stage.revision.clone(), share));
        }
        rest -= share;
        if rest == 0 {
            break;
        }
    }
    if rest > 0 {
        out.push((stages[0].revision.clone(), rest));
    }
    out
}

/// When the rollout toward `latest` is over, if one is under way at `now`.
pub fn ends_at(
    stages: &[Stage],
    latest: &str,
    duration: std::time::Duration,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let newest = stages.last().filter(|s| stages.len() >= 2 && s.revision == latest)?;
    let end = newest.since + chrono::Duration::from_std(duration).ok()?;
    (end > now).then_some(end)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    const D: Duration = Duration::from_secs(100);

    #[test]
    fn a_new_revision_grows_from_one_percent_to_all_over_the_duration() {
        let stages = begin(&[], Some("v1"), "v2", D, at(0));
        assert_eq!(stages.len(), 2);
        let split = |secs| shares(&stages, "v2", D, at(secs), 100);
        assert_eq!(split(0), [("v2".to_string(), 1), ("v1".to_string(), 99)]);
        assert_eq!(split(25), [("v2".to_string(), 25), ("v1".to_string(), 75)]);
        assert_eq!(split(99), [("v2".to_string(), 99), ("v1".to_string(), 1)]);
        assert_eq!(split(100), [("v2".to_string(), 100)]);
        assert_eq!(split(500), [("v2".to_string(), 100)]);
        assert_eq!(ends_at(&stages, "v2", D, at(30)), Some(at(100)));
        assert_eq!(ends_at(&stages, "v2", D, at(100)), None);
        // Only the latest's share rolls: 40 % of the traffic pinned elsewhere stays.
        assert_eq!(
            shares(&stages, "v2", D, at(50), 60),
            [("v2".to_string(), 30), ("v1".to_string(), 30)]
        );
    }

    #[test]
    fn no_duration_or_no_previous_revision_is_no_rollout() {
        assert!(begin(&[], Some("v1"), "v2", Duration::ZERO, at(0)).is_empty());
        assert!(begin(&[], None, "v1", D, at(0)).is_empty());
        assert_eq!(shares(&[], "v1", D, at(0), 100), [("v1".to_string(), 100)]);
        // A rollout toward another revision says nothing about this one.
        let stages = begin(&[], Some("v1"), "v2", D, at(0));
        assert_eq!(shares(&stages, "v3", D, at(10), 100), [("v3".to_string(), 100)]);
    }

    #[test]
    fn a_revision_ready_mid_rollout_rolls_over_both_before_it() {
        let first = begin(&[], Some("v1"), "v2", D, at(0));
        let second = begin(&first, Some("v2"), "v3", D, at(50));
        assert_eq!(second.len(), 3, "v1 still has traffic: {second:?}");
        assert_eq!(
            shares(&second, "v3", D, at(50), 100),
            [("v3".to_string(), 1), ("v2".to_string(), 49), ("v1".to_string(), 50)]
        );
        // Once v2 would have been done, it is all v2 under v3.
        assert_eq!(
            shares(&second, "v3", D, at(100), 100),
            [("v3".to_string(), 50), ("v2".to_string(), 50)]
        );
        // A fourth once v2 is done drops v1 from the stages.
        let third = begin(&second, Some("v3"), "v4", D, at(120));
        assert_eq!(
            third.iter().map(|s| s.revision.as_str()).collect::<Vec<_>>(),
            ["v2", "v3", "v4"]
        );
        // And one after everything finished starts from the newest alone.
        let later = begin(&third, Some("v4"), "v5", D, at(1000));
        assert_eq!(
            later.iter().map(|s| s.revision.as_str()).collect::<Vec<_>>(),
            ["v4", "v5"]
        );
    }

    #[test]
    fn durations_parse_and_are_bounded() {
        assert_eq!(parse_rollout_duration("380s").unwrap(), Duration::from_secs(380));
        assert_eq!(parse_rollout_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_rollout_duration("2d").is_err());
        assert!(parse_rollout_duration("soon").is_err());
    }

    proptest! {
        #[test]
        fn shares_always_add_up_and_the_newest_only_grows(
            percent in 0u32..=100,
            second in 0i64..200,
            t in 0i64..400,
            dt in 0i64..50,
        ) {
            let first = begin(&[], Some("v1"), "v2", D, at(0));
            let stages = begin(&first, Some("v2"), "v3", D, at(second));
            let now = at(second.max(t));
            let split = shares(&stages, "v3", D, now, percent);
            prop_assert_eq!(split.iter().map(|(_, p)| p).sum::<u32>(), percent);
            prop_assert!(split.iter().all(|(_, p)| *p > 0) || percent == 0);
            let newest = |split: &[(String, u32)]| split.iter().find(|(r, _)| r == "v3").map_or(0, |(_, p)| *p);
            let later = shares(&stages, "v3", D, now + chrono::Duration::seconds(dt), percent);
            prop_assert!(newest(&later) >= newest(&split));
        }
    }
}
