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
use super::plan::{Action, Capped, Facts, Removal, plan};
use super::state::{RevisionState, State, next_traffic_step, route_for};

impl Serving {
    /// Drops the live state of revisions matching `doomed` and marks their instances
    /// stopping; returns the ids of those instances.
    pub(super) fn forget_revisions(&self, doomed: impl Fn(&str) -> bool) -> Vec<String> {
        let mut state = self.state();
        let ids = self.drop_revisions(&mut state, doomed);
        for id in &ids {
            state.stopping.insert(id.clone());
        }
        ids
    }

    /// Drops the live state of revisions matching `doomed`: their endpoints are closed (a
    /// request waiting there gets a prompt 503) and their gauges go. Returns their instances'
    /// ids.
    fn drop_revisions(&self, state: &mut State, doomed: impl Fn(&str) -> bool) -> Vec<String> {
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
        ids
    }

    /// Stops instances concurrently and waits for all of them; returns those that failed.
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
        let now = Instant::now();
        for id in &ids {
            state.stopping.remove(id);
            if !failed.contains(id) {
                state.stopped.insert(id.clone(), now);
            }
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

    /// One pass: observe (the runtime's listing, then the store, into the live state), plan
    /// ([`plan`], pure), apply. Returns when the next pass is due at the latest because of a
    /// timer (a frozen instance's retention, a crash backoff), if any.
    pub(super) async fn reconcile(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Result<Option<Instant>, ControlError> {
        // The runtime first: the store is read after the await, so a deploy that landed while
        // the runtime answered is seen (a snapshot from before it would drop the new
        // revision's live state, and the route a request already waits on with it).
        let listed_at = Instant::now();
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
        // Revisions gone from the store: their instances are undeclared now, and the plan
        // stops them.
        let stored: HashSet<&str> = revisions.iter().map(|r| r.name.as_str()).collect();
        self.drop_revisions(&mut state, |name| !stored.contains(name));

        // What runs versus what we know: records of instances the runtime no longer lists
        // are dropped (they were removed, behind our back or by us).
        let listed_ids: HashSet<&str> = listed.iter().map(|i| i.id.as_str()).collect();
        for revision in state.revisions.values_mut() {
            let endpoints = revision.endpoints.clone();
            revision.instances.retain(|i| {
                let present = listed_ids.contains(i.id.as_str()) || i.since >= listed_at;
                if !present {
                    endpoints.remove(&i.id);
                }
                present
            });
        }
        // Instances stopped since the listing began are in it still: not to be adopted.
        state.stopped.retain(|_, at| *at >= listed_at);
        let listed: Vec<Instance> = listed
            .into_iter()
            .filter(|i| !state.stopped.contains_key(&i.id))
            .collect();
        for service in services.values() {
            self.reroute(service, &state);
        }
        let facts = Facts {
            services: &services,
            listed: &listed,
            now,
            frozen_budget: self.frozen_budget,
            max_instances: self.cap.max,
        };
        let plan = plan(&state, &facts);
        self.report_cap(&mut state, plan.capped.as_ref());
        for action in plan.actions {
            self.apply(&mut state, tasks, action, now);
        }
        // A rollout under way moves the route by itself: come back for its next step.
        let wall = chrono::Utc::now();
        let step = services
            .values()
            .filter_map(|s| next_traffic_step(s, wall))
            .min()
            .map(|step| now + step);
        Ok(plan.next_wake.into_iter().chain(step).min())
    }

    /// Carries out one action of a plan: the slow part in a task of the loop's `JoinSet`,
    /// every change of phase through [`State::advance`].
    fn apply(self: &Arc<Self>, state: &mut State, tasks: &mut JoinSet<()>, action: Action, now: Instant) {
        match action {
            Action::StopUndeclared { id } => self.spawn_stop(state, tasks, id),
            Action::Adopt { instance, endpoint } => self.spawn_adopt(state, tasks, instance, endpoint),
            Action::AdoptFrozen { instance, endpoint } => self.adopt_frozen(state, tasks, &instance, endpoint, now),
            Action::Exited { id, code } => {
                let serving = self.clone();
                tasks.spawn(async move { serving.instance_exited(&id, Some(code)).await });
            }
            Action::RemoveFrozen { revision, id, why } => {
                match why {
                    Removal::Retention => {
                        tracing::info!(%revision, instance = %id, "frozen retention over: removing instance")
                    }
                    Removal::Budget => tracing::info!(
                        %revision,
                        instance = %id,
                        budget = self.frozen_budget,
                        "frozen memory over budget: removing the least recently used"
                    ),
                    Removal::Exited => tracing::info!(%revision, instance = %id, "frozen instance exited; removing it"),
                    Removal::Cap => tracing::info!(
                        %revision,
                        instance = %id,
                        "removing the least recently frozen instance to make room under {}",
                        self.cap
                    ),
                }
                self.spawn_remove_frozen(state, tasks, &revision, &id);
            }
            Action::Thaw { revision, id, from } => {
                if from == Phase::Ready {
                    tracing::warn!(%revision, instance = %id, "instance paused behind our back; thawing it");
                }
                self.spawn_thaw(state, tasks, &revision, &id, from);
            }
            Action::Refreeze { revision, id } => {
                tracing::warn!(%revision, instance = %id, "frozen instance unpaused behind our back; freezing it again");
                self.spawn_refreeze(state, tasks, &revision, &id);
            }
            Action::Start { revision } => self.spawn_start(state, tasks, &revision),
            Action::ScaleDown {
                revision,
                count,
                freeze,
            } => self.spawn_scale_down(state, tasks, &revision, count, freeze),
            Action::Stop { revision, id } => self.spawn_stop_record(state, tasks, &revision, &id),
        }
    }

    /// Logs when the host's cap starts holding starts back, and when it stops, once each (a
    /// pass at the cap every resync would otherwise repeat it), and marks the revisions held
    /// back for `describe`.
    fn report_cap(&self, state: &mut State, capped: Option<&Capped>) {
        let held_back: HashSet<&str> = capped.map_or_else(HashSet::new, |c| {
            c.held_back.iter().map(|(revision, _)| revision.as_str()).collect()
        });
        for revision in state.revisions.values_mut() {
            revision.held_back = held_back.contains(revision.revision.name.as_str());
        }
        match (capped, state.capped) {
            (Some(capped), false) => {
                let waiting: Vec<String> = capped
                    .held_back
                    .iter()
                    .map(|(revision, n)| format!("{revision} (+{n})"))
                    .collect();
                tracing::warn!(
                    instances = capped.held,
                    held_back = %waiting.join(", "),
                    "the host's instance cap is reached: {}; starts wait for room and their requests wait in the \
                     activator; raise the limit there or lower the services' scale",
                    self.cap
                );
                state.capped = true;
            }
            (None, true) => {
                tracing::info!(
                    "no start waits for room under the host's instance cap any more ({})",
                    self.cap
                );
                state.capped = false;
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
