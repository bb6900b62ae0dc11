//! Going to zero and back: draining, freezing, thawing, the frozen retention and the memory
//! budget for frozen instances.

use std::net::SocketAddr;
use std::sync::Arc;

use rouse_runtime::{Instance, InstanceState, RuntimeError};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::metrics::StartPath;

use super::phase::Phase;
use super::state::{InstanceRecord, State};
use super::{Serving, THAW_PROBE_TIMEOUT, spawn_in};

impl Serving {
    /// Removes a frozen instance (at the end of its retention, over the budget, or dead).
    pub(super) fn spawn_remove_frozen(
        self: &Arc<Self>,
        state: &mut State,
        tasks: &mut JoinSet<()>,
        revision: &str,
        id: &str,
    ) {
        if state.advance(revision, id, &[Phase::Frozen], Phase::Stopping).is_none() {
            return;
        }
        self.spawn_stop_record(state, tasks, revision, id);
    }

    /// Stops an instance already moved to [`Phase::Stopping`], then drops its record.
    pub(super) fn spawn_stop_record(
        self: &Arc<Self>,
        state: &mut State,
        tasks: &mut JoinSet<()>,
        revision: &str,
        id: &str,
    ) {
        state.stopping.insert(id.to_string());
        let serving = self.clone();
        let (revision, id) = (revision.to_string(), id.to_string());
        let span = tracing::info_span!("stop", %revision, instance = %id);
        spawn_in(tasks, span, async move { serving.stop_record(&revision, &id).await });
    }

    /// Thaws an instance and makes it available once it answers; if it does not, it is
    /// removed and the next pass starts a fresh one. `from` is [`Phase::Frozen`] for one we
    /// froze, or [`Phase::Ready`] for one found paused behind our back (taken out of the
    /// endpoints first, since requests sent to it would hang).
    pub(super) fn spawn_thaw(
        self: &Arc<Self>,
        state: &mut State,
        tasks: &mut JoinSet<()>,
        revision: &str,
        id: &str,
        from: Phase,
    ) {
        let Some((service, endpoints, answering)) = state.revisions.get(revision).map(|r| {
            (
                r.revision.service.clone(),
                r.endpoints.clone(),
                super::contract::answering(&r.revision.template),
            )
        }) else {
            return;
        };
        let Some(record) = state.advance(revision, id, &[from], Phase::Thawing) else {
            return;
        };
        record.memory = 0;
        let record = record.clone();
        endpoints.remove(id);
        let serving = self.clone();
        let revision = revision.to_string();
        let span = tracing::info_span!("thaw", %revision, instance = %record.name);
        spawn_in(tasks, span, async move {
            let began = Instant::now();
            let instance = Instance {
                id: record.id.clone(),
                name: record.name.clone(),
                service: service.clone(),
                revision: revision.clone(),
                state: InstanceState::Running,
                endpoint: record.endpoint,
            };
            let thawed = match serving.runtime.unpause(&record.id).await {
                // It answered before it froze: any answer (in its port's protocol) shows it
                // runs again; its readiness probe goes on on its period once it is back.
                Ok(()) => {
                    serving
                        .runtime
                        .wait_ready(&instance, &answering, THAW_PROBE_TIMEOUT)
                        .await
                }
                Err(e) => Err(e),
            };
            let thawed = match thawed {
                // The probe could not even connect for want of file descriptors (or ports):
                // that is the host's trouble, not the instance's, which answered before it
                // froze. Removing it would turn a passing shortage into lost instances.
                Err(RuntimeError::HostExhausted { source, .. }) => {
                    tracing::warn!(%revision, instance = %record.name, error = %source, "thawed instance not checked: this host is out of resources; kept");
                    Ok(())
                }
                other => other,
            };
            match thawed {
                Ok(()) => {
                    let seconds = began.elapsed().as_secs_f64();
                    serving
                        .metrics
                        .instance_started(&service, &revision, StartPath::Frozen, seconds);
                    tracing::info!(%revision, instance = %record.name, ms = seconds * 1000.0, "instance thawed");
                    serving.instance_ready(&revision, &instance);
                }
                Err(e) => {
                    tracing::warn!(%revision, instance = %record.name, error = %e, "thawed instance is dead; starting a fresh one");
                    serving.stop_at_next_pass(&revision, &record.id, Phase::Thawing);
                }
            }
        });
    }

    /// Freezes again an instance someone unpaused behind our back.
    pub(super) fn spawn_refreeze(
        self: &Arc<Self>,
        state: &mut State,
        tasks: &mut JoinSet<()>,
        revision: &str,
        id: &str,
    ) {
        let Some(record) = state.advance(revision, id, &[Phase::Frozen], Phase::Freezing) else {
            return;
        };
        let frozen_at = record.frozen_at;
        let serving = self.clone();
        let (revision, id) = (revision.to_string(), id.to_string());
        let span = tracing::info_span!("refreeze", %revision, instance = %id);
        spawn_in(tasks, span, async move {
            serving.freeze(&revision, &id, frozen_at).await;
        });
    }

    /// Drains `count` instances of a revision (starting ones first), then stops them, or
    /// freezes them when `freeze` (the revision is going to zero and keeps frozen instances).
    pub(super) fn spawn_scale_down(
        self: &Arc<Self>,
        state: &mut State,
        tasks: &mut JoinSet<()>,
        revision: &str,
        count: usize,
        freeze: bool,
    ) {
        let Some(rev) = state.revisions.get_mut(revision) else {
            return;
        };
        let mut chosen = Vec::new();
        // Starting ones first, then ready ones out of rotation, then the others.
        let order = |i: &super::state::InstanceRecord| match (i.phase, i.unready) {
            (Phase::Starting, _) => Some(0),
            (Phase::Ready, true) => Some(1),
            (Phase::Ready, false) => Some(2),
            _ => None,
        };
        for rank in 0..3 {
            for instance in rev.instances.iter_mut().filter(|i| order(i) == Some(rank)) {
                if chosen.len() < count {
                    let phase = instance.phase;
                    instance.become_(Phase::Draining);
                    // A starting instance has nothing worth keeping: only ready ones freeze.
                    let keep = freeze && phase == Phase::Ready;
                    chosen.push((instance.id.clone(), keep, instance.slot.clone()));
                }
            }
        }
        let endpoints = rev.endpoints.clone();
        for (id, freeze, slot) in chosen {
            let serving = self.clone();
            let endpoints = endpoints.clone();
            let revision = revision.to_string();
            let span = tracing::info_span!("drain", %revision, instance = %id);
            spawn_in(tasks, span, async move {
                tracing::info!(freeze, "draining instance");
                endpoints.remove(&id);
                if let Some(slot) = slot {
                    slot.drained(Instant::now() + endpoints.timeout).await;
                }
                let next = if freeze { Phase::Freezing } else { Phase::Stopping };
                let moved = serving
                    .state()
                    .advance(&revision, &id, &[Phase::Draining], next)
                    .is_some();
                if !moved {
                    // It failed meanwhile, or its revision went away: someone else stops it.
                    return;
                }
                if freeze {
                    serving.freeze(&revision, &id, None).await;
                    return;
                }
                // Stopped by the next pass.
                serving.wake();
            });
        }
    }

    /// Moves an instance from `from` to [`Phase::Stopping`], for the next pass to stop (in the
    /// loop's tasks); nothing if it is no longer in `from`.
    pub(super) fn stop_at_next_pass(&self, revision: &str, id: &str, from: Phase) {
        if self.state().advance(revision, id, &[from], Phase::Stopping).is_some() {
            self.wake();
        }
    }

    /// Pauses an instance in [`Phase::Freezing`] and records it frozen (since `since`, or
    /// now); when it cannot be paused, stops it.
    pub(super) async fn freeze(self: &Arc<Self>, revision: &str, id: &str, since: Option<Instant>) {
        if let Err(e) = self.runtime.pause(id).await {
            tracing::warn!(%revision, instance = %id, error = %e, "cannot freeze instance; removing it");
            self.stop_at_next_pass(revision, id, Phase::Freezing);
            return;
        }
        let (frozen, orphaned) = {
            let mut state = self.state();
            let frozen = match state.advance(revision, id, &[Phase::Freezing], Phase::Frozen) {
                Some(record) => {
                    record.frozen_at = Some(since.unwrap_or_else(Instant::now));
                    true
                }
                None => false,
            };
            // Its revision went away meanwhile: nothing keeps it. (If it failed instead, the
            // failure stops it.)
            (frozen, !frozen && !state.revisions.contains_key(revision))
        };
        if !frozen {
            if orphaned {
                self.stop_all(vec![id.to_string()]).await;
            }
            return;
        }
        tracing::info!(%revision, instance = %id, "instance frozen");
        self.measure_frozen(revision, id).await;
    }

    /// Records how much memory a frozen instance holds, then lets the budget be checked.
    pub(super) async fn measure_frozen(&self, revision: &str, id: &str) {
        let memory = match self.runtime.memory_usage(id).await {
            Ok(memory) => memory,
            Err(e) => {
                tracing::debug!(instance = %id, error = %e, "cannot read memory use of a frozen instance");
                return;
            }
        };
        {
            let mut state = self.state();
            if let Some(record) = state
                .revisions
                .get_mut(revision)
                .and_then(|r| r.instances.iter_mut().find(|i| i.id == id && i.phase == Phase::Frozen))
            {
                record.memory = memory;
            }
        }
        self.wake();
    }

    /// Re-admits an instance found frozen after a restart: it stays frozen, its retention
    /// counting from now.
    pub(super) fn adopt_frozen(
        self: &Arc<Self>,
        state: &mut State,
        tasks: &mut JoinSet<()>,
        instance: &Instance,
        endpoint: SocketAddr,
        now: Instant,
    ) {
        let Some(rev) = state.revisions.get_mut(&instance.revision) else {
            return;
        };
        tracing::info!(revision = %instance.revision, instance = %instance.name, "adopting frozen instance");
        let mut record = InstanceRecord::new(instance, Some(endpoint), Phase::Frozen);
        record.frozen_at = Some(now);
        rev.instances.push(record);
        let serving = self.clone();
        let (revision, id) = (instance.revision.clone(), instance.id.clone());
        tasks.spawn(async move { serving.measure_frozen(&revision, &id).await });
    }
}

/// A frozen instance, as the memory budget sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FrozenInstance {
    pub(super) since: Instant,
    pub(super) memory: u64,
    pub(super) revision: String,
    pub(super) id: String,
}

/// The frozen instances to remove so the rest fit in `budget`: least recently frozen first.
pub(super) fn over_budget(mut frozen: Vec<FrozenInstance>, budget: u64) -> Vec<FrozenInstance> {
    let mut total: u64 = frozen.iter().map(|f| f.memory).sum();
    frozen.sort_by_key(|f| f.since);
    let mut evicted = Vec::new();
    for instance in frozen {
        if total <= budget {
            break;
        }
        total = total.saturating_sub(instance.memory);
        evicted.push(instance);
    }
    evicted
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_least_recently_frozen_go_first_until_the_rest_fit() {
        let t0 = Instant::now();
        let frozen = |secs, memory, id: &str| FrozenInstance {
            since: t0 + Duration::from_secs(secs),
            memory,
            revision: "r".to_string(),
            id: id.to_string(),
        };
        let all = vec![frozen(2, 30, "b"), frozen(1, 30, "a"), frozen(3, 30, "c")];
        let ids = |v: Vec<FrozenInstance>| v.into_iter().map(|f| f.id).collect::<Vec<_>>();
        assert_eq!(ids(over_budget(all.clone(), 90)), Vec::<String>::new());
        assert_eq!(ids(over_budget(all.clone(), 89)), ["a"]);
        assert_eq!(ids(over_budget(all.clone(), 30)), ["a", "b"]);
        assert_eq!(ids(over_budget(all, 0)), ["a", "b", "c"]);
    }
}
