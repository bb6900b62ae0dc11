//! Where an instance is in its life, as the loop tracks it: an explicit state machine.
//!
//! Every change goes through [`State::advance`], which moves an instance only from the
//! phases the caller expects and only along [`Phase::may_become`]. A task that finds its
//! instance elsewhere when it reports (thawed meanwhile, failed, removed with its revision)
//! changes nothing, so no late report can put an instance where nothing will take it out.
//! An instance leaves the machine (gone) when its record is dropped after its stop.

use rouse_api::status::InstancePhase;

use super::state::{InstanceRecord, State};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Phase {
    /// Created or found running; probed until it answers.
    Starting,
    /// In its revision's endpoints, taking requests.
    Ready,
    /// Out of the endpoints, finishing its requests; then frozen or stopped.
    Draining,
    /// Being paused.
    Freezing,
    /// Paused at zero, memory kept, until thawed or its retention ends.
    Frozen,
    /// Being unpaused and probed; a thaw that fails stops it and a fresh one starts.
    Thawing,
    /// Being stopped and removed.
    Stopping,
}

impl Phase {
    /// The transitions the loop makes, each on an observed fact.
    pub(super) fn may_become(self, next: Phase) -> bool {
        use Phase::*;
        matches!(
            (self, next),
            // probe answered / scaled down before it answered / probe failed or it exited
            (Starting, Ready | Draining | Stopping)
            // scaled down / exited or failed / seen paused behind our back
            | (Ready, Draining | Stopping | Thawing)
            // drained, going to zero / drained
            | (Draining, Freezing | Stopping)
            // paused / pause failed
            | (Freezing, Frozen | Stopping)
            // wanted again / retention, budget, exited / seen running behind our back
            | (Frozen, Thawing | Stopping | Freezing)
            // answered again / did not
            | (Thawing, Ready | Stopping)
        )
    }

    /// Whether it serves or is about to: what counts against the revision's desired scale.
    pub(super) fn is_active(self) -> bool {
        matches!(self, Phase::Starting | Phase::Ready | Phase::Thawing)
    }

    /// The phase users see in status and describe.
    pub(super) fn public(self) -> InstancePhase {
        match self {
            Phase::Starting | Phase::Thawing => InstancePhase::Starting,
            Phase::Ready => InstancePhase::Ready,
            Phase::Draining | Phase::Freezing | Phase::Stopping => InstancePhase::Draining,
            Phase::Frozen => InstancePhase::Frozen,
        }
    }
}

impl InstanceRecord {
    /// Moves the instance to `to` if [`Phase::may_become`] allows it: leaving
    /// [`Phase::Ready`] stops its probes, leaving the frozen phases forgets when it froze.
    /// Whether it moved.
    pub(super) fn become_(&mut self, to: Phase) -> bool {
        debug_assert!(self.phase.may_become(to), "{:?} -> {to:?}", self.phase);
        if !self.phase.may_become(to) {
            return false;
        }
        if self.phase == Phase::Ready {
            self.unwatch();
        }
        self.phase = to;
        if to != Phase::Frozen && to != Phase::Freezing {
            self.frozen_at = None;
        }
        true
    }
}

impl State {
    /// Moves instance `id` of `revision` to `to` if it is in one of `from`; the record, if it
    /// moved.
    pub(super) fn advance(
        &mut self,
        revision: &str,
        id: &str,
        from: &[Phase],
        to: Phase,
    ) -> Option<&mut InstanceRecord> {
        let record = self
            .revisions
            .get_mut(revision)?
            .instances
            .iter_mut()
            .find(|i| i.id == id && from.contains(&i.phase))?;
        record.become_(to).then_some(record)
    }

    /// Drops the record of a stopped instance.
    pub(super) fn gone(&mut self, revision: &str, id: &str) {
        if let Some(rev) = self.revisions.get_mut(revision) {
            for record in rev.instances.iter_mut().filter(|i| i.id == id) {
                record.unwatch();
            }
            rev.instances.retain(|i| i.id != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Phase; 7] = [
        Phase::Starting,
        Phase::Ready,
        Phase::Draining,
        Phase::Freezing,
        Phase::Frozen,
        Phase::Thawing,
        Phase::Stopping,
    ];

    #[test]
    fn every_phase_but_stopping_can_reach_stopping_and_stopping_is_final() {
        for phase in ALL {
            assert_eq!(phase.may_become(Phase::Stopping), phase != Phase::Stopping, "{phase:?}");
            assert!(!Phase::Stopping.may_become(phase));
        }
    }

    #[test]
    fn only_ready_and_thawed_instances_take_requests_and_only_frozen_ones_thaw() {
        let into = |to| ALL.into_iter().filter(|p| p.may_become(to)).collect::<Vec<_>>();
        assert_eq!(into(Phase::Ready), [Phase::Starting, Phase::Thawing]);
        assert_eq!(into(Phase::Thawing), [Phase::Ready, Phase::Frozen]);
        assert_eq!(into(Phase::Frozen), [Phase::Freezing]);
        assert_eq!(
            into(Phase::Starting),
            Vec::<Phase>::new(),
            "only a create or an adoption starts"
        );
    }

    #[test]
    fn active_phases_count_against_the_desired_scale() {
        let active: Vec<_> = ALL.into_iter().filter(|p| p.is_active()).collect();
        assert_eq!(active, [Phase::Starting, Phase::Ready, Phase::Thawing]);
        assert_eq!(Phase::Freezing.public(), InstancePhase::Draining);
        assert_eq!(Phase::Thawing.public(), InstancePhase::Starting);
    }
}
