//! Probing instances while they serve, as the kubelet does: a readiness probe that fails
//! `failureThreshold` times in a row takes the instance out of its revision's endpoints
//! (requests go to the others, or wait for one), and `successThreshold` passes bring it
//! back; a liveness probe that fails `failureThreshold` times in a row ends the instance as a
//! crash (its last answer in `describe`), and the next pass starts a replacement.
//!
//! One watch task per ready instance with such probes, started each time it becomes ready
//! (first start, adoption, thaw) and cancelled when it leaves [`Phase::Ready`] (draining,
//! freezing, failing), so a frozen instance is never probed. Each probe runs on its own
//! period; what the answers mean is [`Verdict`], pure.

use std::sync::Arc;

use rouse_api::RevisionTemplate;
use rouse_api::probe::{Probe, ProbeKind};
use rouse_runtime::{Answer, Instance};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::Serving;
use super::contract::check;
use super::phase::Phase;

/// Whether a probe passes, from the answers in a row that disagree with its current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Verdict {
    passing: bool,
    /// Answers in a row against `passing`.
    against: u32,
    success_threshold: u32,
    failure_threshold: u32,
}

impl Verdict {
    /// A verdict that starts passing: the instance was just found ready.
    pub(super) fn new(probe: &Probe) -> Self {
        Self {
            passing: true,
            against: 0,
            success_threshold: probe.success_threshold(),
            failure_threshold: probe.failure_threshold(),
        }
    }

    /// Counts one answer; the new state when it changes.
    pub(super) fn observe(&mut self, passed: bool) -> Option<bool> {
        if passed == self.passing {
            self.against = 0;
            return None;
        }
        self.against += 1;
        let threshold = if self.passing {
            self.failure_threshold
        } else {
            self.success_threshold
        };
        if self.against < threshold {
            return None;
        }
        self.passing = passed;
        self.against = 0;
        Some(passed)
    }

    /// Answers in a row against the current state.
    pub(super) fn against(&self) -> u32 {
        self.against
    }
}

/// The probes watched while an instance is ready.
pub(super) struct Watched {
    readiness: Option<Probe>,
    liveness: Option<Probe>,
}

impl Watched {
    /// The probes of `template` to watch; `None` when it declares neither, so that an
    /// instance without them costs nothing when it gets ready (a thaw, say).
    pub(super) fn of(template: &RevisionTemplate) -> Option<Self> {
        (template.readiness.is_some() || template.liveness.is_some()).then(|| Self {
            readiness: template.readiness.clone(),
            liveness: template.liveness.clone(),
        })
    }
}

impl Serving {
    /// Starts watching a just-ready instance's probes; the returned token, kept on its
    /// record, ends the watch.
    pub(super) fn spawn_watch(
        self: &Arc<Self>,
        revision: &str,
        instance: &Instance,
        watched: Watched,
        parent: &CancellationToken,
    ) -> CancellationToken {
        let cancel = parent.child_token();
        for (kind, probe) in [
            (ProbeKind::Readiness, watched.readiness),
            (ProbeKind::Liveness, watched.liveness),
        ] {
            let Some(probe) = probe else { continue };
            let serving = self.clone();
            let (revision, instance, cancel) = (revision.to_string(), instance.clone(), cancel.clone());
            let span = tracing::info_span!("watch", %revision, instance = %instance.name, probe = kind.field());
            tokio::spawn(tracing::Instrument::instrument(
                async move { serving.watch(&revision, &instance, kind, &probe, &cancel).await },
                span,
            ));
        }
        cancel
    }

    /// Probes `instance` every period until `cancel`, acting on what the answers mean.
    async fn watch(
        self: &Arc<Self>,
        revision: &str,
        instance: &Instance,
        kind: ProbeKind,
        probe: &Probe,
        cancel: &CancellationToken,
    ) {
        let check = check(probe);
        let mut verdict = Verdict::new(probe);
        // It has just passed (readiness) or just started: the first attempt is a period on,
        // and a liveness probe's initial delay counts from its start.
        let mut next = Instant::now() + probe.period().max(probe.initial_delay());
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = sleep_until(next) => {}
            }
            next = Instant::now() + probe.period();
            let answer = self.runtime.check(instance, &check, probe.timeout()).await;
            // Frozen, drained or failed meanwhile: the answer says nothing any more.
            if cancel.is_cancelled() {
                return;
            }
            let passed = match &answer {
                Answer::Passed(_) => true,
                Answer::Failed(_) => false,
                Answer::Unchecked(why) => {
                    tracing::debug!(%why, "probe not made: this host is out of resources");
                    continue;
                }
            };
            let failures = verdict.against() + 1;
            match (kind, verdict.observe(passed)) {
                (ProbeKind::Readiness, Some(ready)) => self.rotate(revision, &instance.id, ready, answer.text()),
                (ProbeKind::Liveness, Some(false)) => {
                    let message = format!(
                        "liveness probe ({check}) failed {failures} times in a row; last answer: {}",
                        answer.text()
                    );
                    self.instance_failed(revision, &instance.id, "LivenessProbeFailed", message, None)
                        .await;
                    return;
                }
                _ => {}
            }
        }
    }

    /// Takes a ready instance out of its revision's endpoints (`ready` false) or puts it back.
    fn rotate(&self, revision: &str, id: &str, ready: bool, answer: &str) {
        let mut state = self.state();
        let Some(rev) = state.revisions.get_mut(revision) else {
            return;
        };
        let Some(record) = rev.instances.iter_mut().find(|i| i.id == id && i.phase == Phase::Ready) else {
            return;
        };
        record.unready = !ready;
        if ready {
            if let Some(slot) = record.slot.clone() {
                rev.endpoints.add(slot);
            }
            tracing::info!(instance = %record.name, %answer, "readiness probe passes again: back in rotation");
        } else {
            rev.endpoints.remove(id);
            tracing::warn!(instance = %record.name, %answer, "readiness probe fails: out of rotation");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rouse_api::probe::ProbeAction;

    fn verdict(success: u32, failure: u32) -> Verdict {
        let mut probe = Probe::new(ProbeAction::TcpSocket);
        probe.success_threshold = Some(success);
        probe.failure_threshold = Some(failure);
        Verdict::new(&probe)
    }

    #[test]
    fn it_takes_failure_threshold_failures_in_a_row_to_fail() {
        let mut v = verdict(1, 3);
        assert_eq!(v.observe(false), None);
        assert_eq!(v.observe(false), None);
        assert_eq!(v.observe(true), None, "a pass resets the count");
        assert_eq!(v.observe(false), None);
        assert_eq!(v.observe(false), None);
        assert_eq!(v.observe(false), Some(false));
        assert_eq!(v.observe(false), None, "already failing");
    }

    #[test]
    fn it_takes_success_threshold_passes_in_a_row_to_pass_again() {
        let mut v = verdict(2, 1);
        assert_eq!(v.observe(false), Some(false));
        assert_eq!(v.observe(true), None);
        assert_eq!(v.observe(false), None, "a failure resets the count");
        assert_eq!(v.observe(true), None);
        assert_eq!(v.observe(true), Some(true));
        assert_eq!(v.observe(true), None);
    }

    proptest::proptest! {
        /// Whatever the answers, the state changes only after a threshold of answers in a
        /// row against it, and always then.
        #[test]
        fn state_follows_runs_of_answers(answers in proptest::collection::vec(proptest::bool::ANY, 0..64),
                                          success in 1u32..4, failure in 1u32..4) {
            let mut v = verdict(success, failure);
            let (mut state, mut run) = (true, 0u32);
            for passed in answers {
                let flipped = v.observe(passed);
                if passed == state {
                    run = 0;
                    proptest::prop_assert_eq!(flipped, None);
                } else {
                    run += 1;
                    let threshold = if state { failure } else { success };
                    if run == threshold {
                        proptest::prop_assert_eq!(flipped, Some(passed));
                        state = passed;
                        run = 0;
                    } else {
                        proptest::prop_assert_eq!(flipped, None);
                    }
                }
            }
        }
    }
}
