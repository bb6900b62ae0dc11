//! One reconcile pass: what the store declares against what the runtime lists, and the
//! repairs for instances changed behind Rouse's back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rouse_api::Service;
use rouse_runtime::{Instance, InstanceState};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::ControlError;

use super::Serving;
use super::phase::Phase;
use super::state::{InstanceRecord, RevisionState, State, desired_instances, route_for};

impl Serving {
    /// Drops the live state of revisions matching `doomed`; returns the ids of their instances.
    pub(super) fn forget_revisions(&self, doomed: impl Fn(&str) -> bool) -> Vec<String> {
        let mut state = self.state();
        let names: Vec<String> = state.revisions.keys().filter(|n| doomed(n)).cloned().collect();
        let mut ids = Vec::new();
        for name in names {
            if let Some(revision) = state.revisions.remove(&name) {
                revision.close();
                self.metrics.forget(&revision.revision.service, &revision.revision.name);
                for instance in revision.instances {
                    revision.endpoints.remove(&instance.id);
                    ids.push(instance.id);
                }
            }
        }
        for id in &ids {
            state.stopping.insert(id.clone());
        }
        ids
    }

    /// Stops instances concurrently and waits for all of them.
    pub(super) async fn stop_all(&self, ids: Vec<String>) -> Vec<String> {
        let grace = self.config.stop_grace_period;
        let stops = ids.iter().map(|id| async move {
            match self.runtime.stop(id, grace).await {
                Ok(()) => None,
                Err(e) => {
                    tracing::warn!(instance = %id, error = %e, "stopping instance failed; retrying at the next pass");
                    Some(id.clone())
                }
            }
        });
        let failed: Vec<String> = futures_util::future::join_all(stops)
            .await
            .into_iter()
            .flatten()
            .collect();
        let mut state = self.state();
        for id in &ids {
            state.stopping.remove(id);
        }
        failed
    }

    /// Stops an instance in [`Phase::Stopping`] and drops its record; when the stop fails
    /// (a process frozen through its cgroup ignores even SIGKILL), the record stays, so the
    /// instance is neither forgotten nor adopted again, and a later pass retries.
    pub(super) async fn stop_record(&self, revision: &str, id: &str) {
        let failed = self.stop_all(vec![id.to_string()]).await;
        if failed.is_empty() {
            self.state().gone(revision, id);
        }
        self.wake();
    }

    /// One pass: compare store and runtime, then act.
    /// One pass; returns when the next one is due at the latest because of a timer (a frozen
    /// instance's retention, a crash backoff), if any.
    pub(super) async fn reconcile(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Result<Option<Instant>, ControlError> {
        // The runtime first: the store is read after the await, so a deploy that landed while
        // the runtime answered is seen (a snapshot from before it would drop the new
        // revision's live state, and the route a request already waits on with it).
        let listed = self.runtime.list().await?;
        let services: HashMap<String, Service> = self
            .store
            .services()?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let mut revisions = self.store.revisions()?;
        self.collect_garbage(&services, &mut revisions)?;
        let now = Instant::now();
        let mut state = self.state();
        let mut next_wake: Option<Instant> = None;

        // Live state for every stored revision; none for revisions gone from the store.
        for revision in &revisions {
            let Some(service) = services.get(&revision.service) else {
                continue;
            };
            // Found again after a restart: the autoscaler starts from what runs.
            let was_ready = || {
                (service.latest_ready_revision.as_deref() == Some(revision.name.as_str())).then(|| {
                    listed
                        .iter()
                        .filter(|i| i.revision == revision.name && i.state == InstanceState::Running)
                        .count() as u32
                })
            };
            match state.revisions.get_mut(&revision.name) {
                None => {
                    let live = RevisionState::new(revision.clone(), &self.autoscaler, &self.demand, was_ready());
                    state.revisions.insert(revision.name.clone(), live);
                }
                Some(live) if live.restored => {
                    live.scaling.desired = was_ready();
                    live.restored = false;
                }
                Some(_) => {}
            }
        }
        let stored: HashSet<&str> = revisions.iter().map(|r| r.name.as_str()).collect();
        let forgotten: Vec<String> = state
            .revisions
            .keys()
            .filter(|n| !stored.contains(n.as_str()))
            .cloned()
            .collect();
        for name in forgotten {
            if let Some(revision) = state.revisions.remove(&name) {
                revision.close();
                self.metrics.forget(&revision.revision.service, &revision.revision.name);
            }
        }

        // What runs versus what we know.
        let listed_ids: HashSet<&str> = listed.iter().map(|i| i.id.as_str()).collect();
        for revision in state.revisions.values_mut() {
            let endpoints = revision.endpoints.clone();
            revision.instances.retain(|i| {
                let present = listed_ids.contains(i.id.as_str());
                if !present {
                    endpoints.remove(&i.id);
                }
                present
            });
        }
        for instance in &listed {
            if state.stopping.contains(&instance.id) {
                continue;
            }
            let known = state
                .revisions
                .get(&instance.revision)
                .and_then(|r| r.instances.iter().find(|i| i.id == instance.id).cloned());
            let creating = state.revisions.get(&instance.revision).map(|r| r.creating);
            match (creating, known) {
                // Nobody declared it (deleted service or abandoned revision): remove it.
                (None, _) => self.spawn_stop(&mut state, tasks, instance.id.clone()),
                // A start task may have just created it and not recorded it yet: look again
                // at the next pass.
                (Some(creating), None) if creating > 0 => {}
                // Found after a restart: adopt it if it runs, else clear it away.
                (Some(_), None) => match (&instance.state, instance.endpoint) {
                    (InstanceState::Running, Some(endpoint)) => {
                        self.spawn_adopt(&mut state, tasks, instance.clone(), endpoint)
                    }
                    (InstanceState::Paused, Some(endpoint)) => {
                        self.adopt_frozen(&mut state, tasks, instance, endpoint, now)
                    }
                    _ => self.spawn_stop(&mut state, tasks, instance.id.clone()),
                },
                // Known: what runs may have changed behind our back.
                (Some(_), Some(record)) => self.repair_drift(&mut state, tasks, instance, &record),
            }
        }

        // Routes, then instance counts.
        for service in services.values() {
            self.reroute(service, &state);
        }
        let names: Vec<String> = state.revisions.keys().cloned().collect();
        for name in names {
            let Some(revision) = state.revisions.get(&name) else {
                continue;
            };
            let Some(service) = services.get(&revision.revision.service) else {
                continue;
            };
            let desired = desired_instances(
                service,
                &revision.revision,
                revision.scaling.desired,
                revision.endpoints.waiting(),
            ) as usize;
            let active = revision.active();
            let retention = revision.scaling.spec.frozen_retention;
            if active < desired && revision.retry_at.is_none_or(|at| at <= now) {
                // Thaw frozen instances first (the most recently frozen), then start fresh ones.
                let mut frozen: Vec<(Instant, String)> = revision
                    .instances
                    .iter()
                    .filter(|i| i.phase == Phase::Frozen)
                    .filter_map(|i| Some((i.frozen_at?, i.id.clone())))
                    .collect();
                frozen.sort_by_key(|f| std::cmp::Reverse(f.0));
                let mut thawed = 0;
                for (_, id) in frozen.into_iter().take(desired - active) {
                    self.spawn_thaw(&mut state, tasks, &name, &id, Phase::Frozen);
                    thawed += 1;
                }
                for _ in active + thawed..desired {
                    self.spawn_start(&mut state, tasks, &name);
                }
            } else if active > desired {
                // Going to zero: freeze rather than remove, unless freezing is off.
                let freeze = desired == 0 && !retention.is_zero();
                self.spawn_scale_down(&mut state, tasks, &name, active - desired, freeze);
            }
            // Frozen past the retention: removed (thawed first, so it gets its SIGTERM).
            let expired: Vec<String> = state.revisions.get(&name).map_or_else(Vec::new, |r| {
                r.instances
                    .iter()
                    .filter(|i| i.phase == Phase::Frozen)
                    .filter(|i| {
                        i.frozen_at
                            .is_some_and(|at| now.saturating_duration_since(at) >= retention)
                    })
                    .map(|i| i.id.clone())
                    .collect()
            });
            for id in expired {
                tracing::info!(revision = %name, instance = %id, "frozen retention over: removing instance");
                self.spawn_remove_frozen(&mut state, tasks, &name, &id);
            }
            // Stops that failed: again.
            let stuck: Vec<String> = state.revisions.get(&name).map_or_else(Vec::new, |r| {
                r.instances
                    .iter()
                    .filter(|i| i.phase == Phase::Stopping)
                    .map(|i| i.id.clone())
                    .collect()
            });
            for id in stuck {
                if !state.stopping.contains(&id) {
                    self.spawn_stop_record(&mut state, tasks, &name, &id);
                }
            }
            // Come back when the oldest frozen instance expires, or when the backoff ends.
            if let Some(r) = state.revisions.get(&name) {
                let expires = r
                    .instances
                    .iter()
                    .filter_map(|i| i.frozen_at)
                    .min()
                    .map(|at| at + retention);
                let retry = r.retry_at.filter(|at| *at > now);
                next_wake = [next_wake, expires, retry].into_iter().flatten().min();
            }
        }
        self.enforce_frozen_budget(&mut state, tasks);
        Ok(next_wake)
    }

    /// Brings a known instance back to its phase when the runtime shows it in another state:
    /// someone paused, unpaused, stopped or killed it, or its exit event was lost.
    pub(super) fn repair_drift(
        self: &Arc<Self>,
        state: &mut State,
        tasks: &mut JoinSet<()>,
        seen: &Instance,
        record: &InstanceRecord,
    ) {
        let revision = &seen.revision;
        let id = seen.id.clone();
        match (&seen.state, record.phase) {
            // It died and the exit event was missed.
            (InstanceState::Exited { code }, Phase::Ready) => {
                let (serving, code) = (self.clone(), *code);
                tasks.spawn(async move { serving.instance_exited(&id, Some(code)).await });
            }
            // Frozen and then killed: nothing to keep.
            (InstanceState::Exited { .. }, Phase::Frozen) => {
                tracing::info!(%revision, instance = %record.name, "frozen instance exited; removing it");
                self.spawn_remove_frozen(state, tasks, revision, &id);
            }
            // Paused while serving: requests sent to it would hang. Out of the endpoints,
            // thawed and probed, as a frozen one.
            (InstanceState::Paused, Phase::Ready) => {
                tracing::warn!(%revision, instance = %record.name, "instance paused behind our back; thawing it");
                self.spawn_thaw(state, tasks, revision, &id, Phase::Ready);
            }
            // Unpaused while frozen: it holds CPU nobody asked for, and the state says frozen.
            (InstanceState::Running, Phase::Frozen) => {
                tracing::warn!(%revision, instance = %record.name, "frozen instance unpaused behind our back; freezing it again");
                self.spawn_refreeze(state, tasks, revision, &id);
            }
            _ => {}
        }
    }

    /// Sets the service's route from its traffic, if it changed.
    pub(super) fn reroute(&self, service: &Service, state: &State) {
        let Some(route) = route_for(service, state) else { return };
        if self
            .routes
            .get(&service.name)
            .is_some_and(|current| current.same_as(&route))
        {
            return;
        }
        tracing::info!(service = %service.name, route = ?route.shape(), "routing traffic");
        self.routes.set(&service.name, route);
    }

    pub(super) fn spawn_stop(self: &Arc<Self>, state: &mut State, tasks: &mut JoinSet<()>, id: String) {
        if !state.stopping.insert(id.clone()) {
            return;
        }
        tracing::info!(instance = %id, "removing instance nobody declared");
        let serving = self.clone();
        tasks.spawn(async move {
            serving.stop_all(vec![id]).await;
        });
    }
}
