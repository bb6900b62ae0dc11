//! The host-wide cap on instances, `[instances] max-instances`: what counts against it, how
//! the room left is shared between revisions, and the deploy-time refusal of a template that
//! could never fit. The pass applies it in [`plan`](super::plan).
//!
//! What counts is every instance that holds memory: creates in progress and instances
//! starting, ready, draining, freezing, frozen or thawing; not those being stopped, which
//! are on their way out within the stop grace period. Frozen instances count because the
//! cap's default is derived from the host's memory and a paused container keeps all of its
//! memory: leaving them out would let the cap be passed in the very thing it guards. But
//! they are a cache, not demand, and Knative and Cloud Run users expect an idle service never
//! to keep a busy one from scaling: when a start needs room, the least recently frozen
//! instances (of any revision) are removed to make it, as under the frozen memory budget.
//! Only instances that serve, or are about to, hold a start back; a thaw needs no room, as
//! the frozen instance is counted already. Starts held back wait for the next pass that has
//! room, and their requests wait in the activator, as they do at a revision's max-scale.

use rouse_api::ScaleBounds;
use rouse_api::ValidationError;
use rouse_api::template::annotation_field;

use super::phase::Phase;
use crate::config::InstanceCap;

/// Whether an instance in `phase` holds a place under the cap.
pub(super) fn holds_a_place(phase: Phase) -> bool {
    phase != Phase::Stopping
}

/// A revision that asks for starts in a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Want {
    /// Instances it has or is about to have (active, adopted, thawing).
    pub(super) have: usize,
    /// Starts it asks for.
    pub(super) asked: usize,
}

/// Shares `room` starts between `wants` (in name order), one at a time to the revision that
/// has the fewest instances so far (the earliest on a tie): a revision at zero with requests
/// waiting gets its first instance before a busy one gets its tenth. Returns the starts each
/// gets.
pub(super) fn share_room(wants: &[Want], room: usize) -> Vec<usize> {
    let mut granted = vec![0; wants.len()];
    for _ in 0..room {
        let next = wants
            .iter()
            .zip(&granted)
            .enumerate()
            .filter(|(_, (want, granted))| **granted < want.asked)
            .min_by_key(|(i, (want, granted))| (want.have + **granted, *i))
            .map(|(i, _)| i);
        match next {
            Some(i) => granted[i] += 1,
            None => break,
        }
    }
    granted
}

/// Refuses a template whose min-scale or initial-scale is more than the host may ever run,
/// naming the annotation, the cap and its key: such a revision could never be what it asks.
/// (Several services whose floors add up to more are not refused: the cap holds them at run
/// time.)
pub(crate) fn check_scale(scale: &ScaleBounds, cap: InstanceCap) -> Result<(), ValidationError> {
    for (key, value) in [("min-scale", scale.min), ("initial-scale", scale.initial)] {
        if value > cap.max {
            return Err(ValidationError::new(
                annotation_field(&format!("autoscaling.knative.dev/{key}")),
                value,
                format!(
                    "is more instances than this host runs: {cap}; ask for at most {}, or raise the limit",
                    cap.max
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_goes_first_to_the_revisions_with_fewest_instances() {
        let want = |have, asked| Want { have, asked };
        assert_eq!(share_room(&[want(5, 3), want(0, 3)], 2), [0, 2]);
        assert_eq!(share_room(&[want(1, 3), want(1, 3)], 3), [2, 1], "ties go by name");
        assert_eq!(
            share_room(&[want(0, 1), want(0, 4)], 10),
            [1, 4],
            "nobody gets more than asked"
        );
        assert_eq!(share_room(&[want(0, 2)], 0), [0]);
    }

    #[test]
    fn a_floor_or_start_beyond_the_host_is_refused_naming_the_annotation_and_the_key() {
        let cap = InstanceCap { max: 4, derived: false };
        let scale = |min, initial| ScaleBounds {
            min,
            initial,
            ..ScaleBounds::default()
        };
        assert!(check_scale(&scale(4, 4), cap).is_ok());
        let err = check_scale(&scale(0, 100_000), cap).unwrap_err();
        assert_eq!(
            err.field,
            "spec.template.metadata.annotations[autoscaling.knative.dev/initial-scale]"
        );
        assert!(
            err.to_string()
                .contains("[instances] max-instances = 4 in rouse.toml; ask for at most 4"),
            "{err}"
        );
        let err = check_scale(&scale(5, 1), cap).unwrap_err();
        assert!(err.field.ends_with("[autoscaling.knative.dev/min-scale]"), "{err}");
        let derived = check_scale(&scale(9, 1), InstanceCap { max: 4, derived: true }).unwrap_err();
        assert!(derived.reason.contains("not set in rouse.toml"), "{derived}");
    }
}
