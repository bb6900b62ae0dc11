//! Serving: keeping each revision's instances as desired, and each service routed to the
//! revision that should take its traffic.
//!
//! The store says what users declared; the runtime says what runs. Each reconcile pass
//! observes both (the runtime's listing first, then the store), lets [`plan`] decide, a pure
//! function returning actions and the time of the next pass, and applies the actions through
//! the [`Runtime`] trait. Passes run on every change (deploy, delete, an instance ready or
//! dead, a request waiting) and at the resync interval, sleeping on one timer in between; as
//! each derives everything from what it observes, an instance changed behind Rouse's back
//! (paused, unpaused, stopped, killed, removed) is repaired by the next pass.
//!
//! Slow work (create + probe, drain + freeze, thaw + probe, stop) runs in tasks owned by the
//! loop's `JoinSet`; they report back by moving their instance along the phase machine
//! ([`phase`]) and waking the loop. A report that finds its instance in another phase than
//! it left it in changes nothing.
//!
//! Files, in reading order:
//! - `state`: the live state (revisions, instance records, autoscaling) and routes.
//! - `phase`: the instance phases and their transitions.
//! - `plan`: one pass's decisions, pure.
//! - `capacity`: the host-wide cap on instances (`[instances] max-instances`).
//! - `reconcile`: observe and apply; stops; routes.
//! - `start`: starting, adopting, ready, exited, failed.
//! - `freeze`: draining, freezing, thawing, removing frozen instances.
//! - `gc`: deleting old revisions.
//! - `health`: readiness and liveness probes of ready instances.
//! - `autoscale`: sampling demand and asking the KPA.
//! - `contract`: what a container is given (`$PORT`, `K_*`) and how it is probed.
//!
//! Tests: `plan` and `phase` have unit tests; `scenarios` and `invariant` (a proptest of
//! random requests, drift, faults and restarts) run the whole loop against the in-memory
//! runtime (`rouse_runtime::memory`) in paused time, with no Docker engine.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use rouse_activator::{RouteTable, ServiceRoute};
use rouse_api::ValidationError;
use rouse_api::knative::TrafficTarget;
use rouse_api::name::validate_revision_name;
use rouse_api::status::Traffic;
use rouse_api::traffic::{TrafficChange, apply_change};
use rouse_api::{Revision, Service};
use rouse_runtime::{Instance, Runtime, RuntimeError};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{GcConfig, InstanceCap, InstanceConfig};
use crate::data::DataStore;
use crate::error::{ConflictReason, ControlError, ObjectKind};
use crate::metrics::ServingMetrics;
use crate::sinks::SinkAddresses;
use crate::store::Store;
use rouse_autoscaler::AutoscalerConfig;

mod autoscale;
mod capacity;
mod contract;
mod freeze;
mod gc;
mod health;
mod phase;
mod plan;
mod reconcile;
mod start;
mod state;

pub(crate) use state::RevisionLive;
use state::{RevisionState, State, desired_instances, route_for};
pub(crate) use state::{latest_shares, routed_revision, traffic_at};

/// Spawns `task` on the loop's set inside `span`, which names its revision and instance, so
/// the task's log lines carry them.
fn spawn_in(tasks: &mut JoinSet<()>, span: tracing::Span, task: impl Future<Output = ()> + Send + 'static) {
    tasks.spawn(task.instrument(span));
}

/// Where a revision's chosen name is in a Knative Service (the CLI's `--revision-name`):
/// the daemon's messages name the YAML field, the CLI checks its flag itself first.
const REVISION_NAME: &str = "spec.template.metadata.name";

/// How often the autoscaler samples each revision's demand.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Log lines kept from a failed instance.
const CRASH_LOG_LINES: usize = 20;
/// How long a thawed instance gets to answer before it counts as dead.
const THAW_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an adopted instance gets to answer its first probe after a daemon restart.
const ADOPT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `delete` waits for start tasks of the service to notice and give up.
const DELETE_WAIT: Duration = Duration::from_secs(30);

/// The serving control loop and the live state it keeps.
pub(crate) struct Serving {
    runtime: Arc<dyn Runtime>,
    store: Arc<Store>,
    /// Secrets and config maps, which instances read as they start.
    data: Arc<DataStore>,
    routes: Arc<RouteTable>,
    config: InstanceConfig,
    /// Live state. A std mutex: held only for short edits, never across an await.
    state: Mutex<State>,
    /// Serialises read-modify-write of service records (API and tasks both write them).
    writes: Mutex<()>,
    /// Wakes the reconcile loop.
    wake: Notify,
    /// `[autoscaler]` settings.
    autoscaler: AutoscalerConfig,
    /// Raised by the activator when a request has to wait: the autoscaler decides at once.
    demand: Arc<Notify>,
    metrics: ServingMetrics,
    /// Most memory frozen instances may hold, in bytes.
    frozen_budget: u64,
    /// Which old revisions are deleted.
    gc: GcConfig,
    /// Where a container's `K_SINK` points.
    sinks: SinkAddresses,
    /// Most instances on the host, all revisions together.
    cap: InstanceCap,
}

/// What [`Serving`] is configured with.
#[derive(Clone, Debug)]
pub(crate) struct ServingSettings {
    pub instances: InstanceConfig,
    pub autoscaler: AutoscalerConfig,
    pub gc: GcConfig,
    /// Most memory frozen instances may hold, in bytes.
    pub frozen_budget: u64,
    /// Where sinks are, for `K_SINK`.
    pub sinks: SinkAddresses,
    /// Most instances on the host: `[instances] max-instances`, or derived from its memory.
    pub cap: InstanceCap,
}

/// `template` refused when it must not run as root (`runAsNonRoot`, no user id) and its image,
/// whose `USER` is `image_user`, would.
fn refuse_root(template: &rouse_api::RevisionTemplate, image_user: &str) -> Result<(), ValidationError> {
    if !template.security.non_root || template.user.is_some() {
        return Ok(());
    }
    match rouse_runtime::runs_as_root(image_user) {
        None => Ok(()),
        Some(reason) => Err(ValidationError::new(
            format!("{}.securityContext.runAsNonRoot", rouse_api::template::CONTAINER),
            true,
            format!(
                "{reason} ({}); set a non-zero user id (--user, runAsUser) or build the image with a numeric USER",
                template.image
            ),
        )),
    }
}

/// A service's own labels and annotations (not its revisions').
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Metadata {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Serving {
    pub(crate) fn new(
        runtime: Arc<dyn Runtime>,
        store: Arc<Store>,
        data: Arc<DataStore>,
        routes: Arc<RouteTable>,
        settings: ServingSettings,
        metrics: ServingMetrics,
    ) -> Arc<Self> {
        let serving = Arc::new(Self {
            runtime,
            store,
            data,
            routes,
            config: settings.instances,
            autoscaler: settings.autoscaler,
            state: Mutex::new(State::default()),
            writes: Mutex::new(()),
            wake: Notify::new(),
            demand: Arc::new(Notify::new()),
            metrics,
            frozen_budget: settings.frozen_budget,
            gc: settings.gc,
            sinks: settings.sinks,
            cap: settings.cap,
        });
        if let Err(e) = serving.restore() {
            tracing::warn!(error = %e, "cannot route stored services yet; the first pass will");
        }
        serving
    }

    /// Routes every stored service before the first pass, so that a restarted daemon's
    /// ingress holds requests for instances about to be adopted instead of answering 404.
    fn restore(&self) -> Result<(), ControlError> {
        let services = self.store.services()?;
        let revisions = self.store.revisions()?;
        let mut state = self.state();
        for revision in revisions {
            if !services.iter().any(|s| s.name == revision.service) {
                continue;
            }
            let mut live = RevisionState::new(revision, &self.autoscaler, &self.demand, None);
            live.restored = true;
            state.revisions.insert(live.revision.name.clone(), live);
        }
        for service in &services {
            if let Some(route) = route_for(service, &state) {
                self.routes.set(&service.name, route);
            }
        }
        Ok(())
    }

    pub(crate) fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Secrets and config maps.
    pub(crate) fn data(&self) -> &DataStore {
        &self.data
    }

    /// Refuses a template that asks for more instances than the host runs (its min-scale or
    /// initial-scale over `[instances] max-instances`), or a capability the host takes from
    /// every instance (`[instances] drop-capabilities`).
    pub(crate) fn check_fits_host(&self, template: &rouse_api::RevisionTemplate) -> Result<(), ValidationError> {
        capacity::check_scale(&template.scale, self.cap)?;
        match contract::capability_conflict(template, &self.config) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the reconcile loop for a pass now.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs `edit` on the stored service `name` and saves it, serialised with other writers.
    pub(crate) fn update_service<T>(
        &self,
        name: &str,
        edit: impl FnOnce(&mut Service) -> Result<T, ControlError>,
    ) -> Result<(Service, T), ControlError> {
        let _guard = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let mut service = self
            .store
            .service(name)?
            .ok_or_else(|| ControlError::not_found(ObjectKind::Service, name.to_string()))?;
        let out = edit(&mut service)?;
        self.store.save(&service, None)?;
        Ok((service, out))
    }

    /// Resolves `template`'s image in the engine and pins the template to what it names now
    /// (`lock`), or clears any pin (tag semantics). Fails with `ImageNotFound` when the
    /// engine lacks the image. A pin a client sent is never kept.
    pub(crate) async fn pin_image(
        &self,
        template: &mut rouse_api::RevisionTemplate,
        lock: bool,
    ) -> Result<(), ControlError> {
        let Some(image) = self.runtime.resolve_image(&template.image).await? else {
            return Err(RuntimeError::ImageNotFound {
                image: template.image.clone(),
            }
            .into());
        };
        template.image_digest = lock.then(|| image.pinned(&template.image));
        Ok(refuse_root(template, &image.user)?)
    }

    /// Refuses a template that must not run as root (`runAsNonRoot`) whose pinned image would,
    /// as kubelet refuses it, but at deploy rather than at each start. For a deploy that keeps
    /// its pin; [`Serving::pin_image`] checks the image it resolves.
    pub(crate) async fn check_non_root(&self, template: &rouse_api::RevisionTemplate) -> Result<(), ControlError> {
        if !template.security.non_root || template.user.is_some() {
            return Ok(());
        }
        let image = template.image_digest.as_deref().unwrap_or(&template.image);
        let Some(info) = self.runtime.resolve_image(image).await? else {
            return Err(RuntimeError::ImageNotFound {
                image: image.to_string(),
            }
            .into());
        };
        Ok(refuse_root(template, &info.user)?)
    }

    /// Creates or updates a service from a deploy; returns the service and the new revision, if
    /// the template changed. Sets the service's labels and annotations too when `metadata` is
    /// given, in the same write: a new service is routed with its visibility from its first
    /// request, and its first rollout reads its duration.
    pub(crate) fn deploy(
        &self,
        name: &str,
        template: rouse_api::RevisionTemplate,
        revision_name: Option<&str>,
        metadata: Option<Metadata>,
    ) -> Result<(Service, Option<Revision>), ControlError> {
        self.check_fits_host(&template)?;
        let _guard = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let existing: Vec<String> = self.store.revisions_of(name)?.into_iter().map(|r| r.name).collect();
        if let Some(wanted) = revision_name {
            validate_revision_name(REVISION_NAME, name, wanted)?;
        }
        let (service, revision) = match self.store.service(name)? {
            None => {
                let (mut service, mut revision) = Service::create(name, template, Utc::now());
                if let Some(wanted) = revision_name {
                    service.name_latest(&mut revision, wanted);
                }
                (service, Some(revision))
            }
            // The same name as the newest revision and the same template: nothing to do.
            Some(service)
                if revision_name.is_some_and(|n| n == service.latest_revision) && template == service.template =>
            {
                (service, None)
            }
            Some(mut service) => {
                let revision = match revision_name {
                    Some(wanted) if existing.iter().any(|r| r == wanted) => {
                        return Err(ValidationError::new(
                            REVISION_NAME,
                            wanted,
                            "already names an older revision; revisions are immutable, pick a new name",
                        )
                        .into());
                    }
                    Some(wanted) => {
                        let mut revision = service.new_revision(template, Utc::now());
                        service.name_latest(&mut revision, wanted);
                        Some(revision)
                    }
                    None => service.update(template, Utc::now()),
                };
                (service, revision)
            }
        };
        let mut service = service;
        let relabelled = metadata.is_some_and(|Metadata { labels, annotations }| {
            let changed = labels != service.labels || annotations != service.annotations;
            service.labels = labels;
            service.annotations = annotations;
            changed
        });
        if revision.is_some() || relabelled {
            self.store.save(&service, revision.as_ref())?;
        }
        let cluster_local = rouse_api::annotations::is_cluster_local(&service.labels);
        if let Some(revision) = &revision {
            let mut state = self.state();
            let entry = state
                .revisions
                .entry(revision.name.clone())
                .or_insert_with(|| RevisionState::new(revision.clone(), &self.autoscaler, &self.demand, None));
            if self.routes.get(name).is_none() {
                let route = ServiceRoute::single(entry.endpoints.clone()).cluster_local(cluster_local);
                self.routes.set(name, route);
            }
        }
        if relabelled {
            let state = self.state();
            self.reroute(&service, &state);
        }
        self.wake();
        Ok((service, revision))
    }

    /// Abandons a revision that never became ready: the service goes back to the revision that
    /// serves it, or is deleted when it has no other. Used when a deploy fails to get ready.
    pub(crate) async fn abandon_revision(&self, service: &str, revision: &str) -> Result<(), ControlError> {
        let revisions = self.store.revisions_of(service)?;
        let Some(doomed) = revisions.iter().find(|r| r.name == revision) else {
            return Err(ControlError::not_found(ObjectKind::Revision, revision.to_string()));
        };
        let current = self
            .store
            .service(service)?
            .ok_or_else(|| ControlError::not_found(ObjectKind::Service, service.to_string()))?;
        if current.latest_ready_revision.as_deref() == Some(revision) {
            return Err(ControlError::Conflict {
                kind: ObjectKind::Revision,
                name: revision.to_owned(),
                reason: ConflictReason::Serving {
                    service: service.to_owned(),
                },
            });
        }
        let previous = current
            .latest_ready_revision
            .as_ref()
            .and_then(|ready| revisions.iter().find(|r| &r.name == ready));
        match previous {
            None => return self.delete_service(service).await.map(|_| ()),
            Some(previous) => {
                let _guard = self.writes.lock().unwrap_or_else(|e| e.into_inner());
                let mut service_record = self
                    .store
                    .service(service)?
                    .ok_or_else(|| ControlError::not_found(ObjectKind::Service, service.to_string()))?;
                if service_record.latest_revision == doomed.name {
                    service_record.revert_to(previous);
                }
                self.store.save_without(&service_record, &doomed.name)?;
            }
        }
        let doomed_ids = self.forget_revisions(|name| name == revision);
        self.stop_all(doomed_ids).await;
        self.wake();
        Ok(())
    }

    /// Deletes a service: it stops answering at once, and this returns only once all its
    /// instances are gone.
    pub(crate) async fn delete_service(&self, name: &str) -> Result<bool, ControlError> {
        let existed = {
            let _guard = self.writes.lock().unwrap_or_else(|e| e.into_inner());
            self.store.delete_service(name)?
        };
        self.routes.remove(name);
        let prefix_owner = name.to_string();
        let ids = {
            let owned: HashSet<String> = {
                let state = self.state();
                state
                    .revisions
                    .values()
                    .filter(|r| r.revision.service == prefix_owner)
                    .map(|r| r.revision.name.clone())
                    .collect()
            };
            self.forget_revisions(|revision| owned.contains(revision))
        };
        // Start tasks of this service notice the deletion, stop what they created, and finish.
        let deadline = Instant::now() + DELETE_WAIT;
        while self.state().starting.get(name).copied().unwrap_or(0) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut ids: HashSet<String> = ids.into_iter().collect();
        for instance in self.runtime.list().await? {
            if instance.service == name {
                ids.insert(instance.id);
            }
        }
        self.stop_all(ids.into_iter().collect()).await;
        self.wake();
        Ok(existed)
    }

    /// Live state of a revision, for status and describe.
    pub(crate) fn revision_live(&self, service: &Service, revision: &Revision) -> RevisionLive {
        let state = self.state();
        let live = state.revisions.get(&revision.name);
        let autoscaled = live.and_then(|r| r.scaling.desired);
        let waiting = live.map_or(0, |r| r.endpoints.waiting());
        let desired = desired_instances(service, revision, autoscaled, waiting);
        match state.revisions.get(&revision.name) {
            None => RevisionLive {
                desired,
                instances: Vec::new(),
                failures: 0,
                last_crash: None,
                traffic: Traffic::default(),
            },
            Some(r) => RevisionLive {
                desired,
                instances: r
                    .instances
                    .iter()
                    .map(|i| (i.name.clone(), i.public_phase(), i.endpoint))
                    .collect(),
                failures: r.failures,
                last_crash: r.last_crash.clone(),
                traffic: Traffic {
                    in_flight: r.endpoints.in_flight() as u64,
                    queued: r.endpoints.waiting() as u64,
                    served: r.endpoints.served(),
                },
            },
        }
    }

    /// Why `revision` has fewer instances than it asks for, when the host's cap holds its
    /// starts back: for its conditions.
    pub(crate) fn waiting_for_room(&self, revision: &str) -> Option<String> {
        let held_back = self.state().revisions.get(revision).is_some_and(|r| r.held_back);
        held_back.then(|| format!("waiting for room: the host's instance cap is reached, {}", self.cap))
    }

    /// Names of instances of `service` the runtime knows, by id, for `logs`.
    pub(crate) async fn instances_of(&self, service: &str) -> Result<Vec<Instance>, ControlError> {
        let mut instances: Vec<Instance> = self
            .runtime
            .list()
            .await?
            .into_iter()
            .filter(|i| i.service == service)
            .collect();
        instances.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(instances)
    }

    /// Reconciles until `shutdown`, on every wake and at least every resync interval.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tasks = JoinSet::new();
        let mut passes: u64 = 0;
        loop {
            let resync = Instant::now() + self.config.resync_interval;
            passes += 1;
            let span = tracing::debug_span!("pass", n = passes);
            let next = match self.reconcile(&mut tasks).instrument(span).await {
                Ok(due) => due.map_or(resync, |due| due.min(resync)),
                Err(e) => {
                    tracing::warn!(error = %e, "reconcile failed; retrying at the next pass");
                    resync
                }
            };
            // One timer: the resync, or sooner when a retention or a backoff ends.
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(next) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
            while tasks.try_join_next().is_some() {}
        }
        // Instances keep running while the daemon is down; a restarted daemon adopts them.
        tasks.shutdown().await;
        // Requests still waiting for an instance will not get one from this daemon.
        for revision in self.state().revisions.values() {
            revision.endpoints.close();
        }
    }

    /// Sets the whole traffic a manifest declares (its labels and annotations went with the
    /// template, in [`Serving::deploy`]). Returns whether it changed; new requests follow it at
    /// once.
    pub(crate) fn declare_traffic(&self, name: &str, traffic: Vec<TrafficTarget>) -> Result<bool, ControlError> {
        let (service, changed) = self.update_service(name, |svc| {
            let changed = svc.traffic != traffic;
            svc.traffic = traffic;
            Ok(changed)
        })?;
        if changed {
            self.reroute(&service, &self.state());
            self.wake();
        }
        Ok(changed)
    }

    /// Changes a service's traffic; new requests follow it at once.
    pub(crate) fn change_traffic(&self, name: &str, change: &TrafficChange) -> Result<Service, ControlError> {
        let revisions: Vec<String> = self.store.revisions_of(name)?.into_iter().map(|r| r.name).collect();
        let (service, ()) = self.update_service(name, |svc| {
            svc.traffic = apply_change(&svc.traffic, change, &revisions)?;
            Ok(())
        })?;
        self.reroute(&service, &self.state());
        self.wake();
        Ok(service)
    }
}

#[cfg(test)]
mod harness;
#[cfg(test)]
mod invariant;
#[cfg(test)]
mod scenarios;
