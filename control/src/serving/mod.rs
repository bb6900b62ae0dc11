//! Serving: keeping each revision's instances as desired, and each service routed to the
//! revision that should take its traffic.
//!
//! The store says what users declared; the runtime says what runs. [`Serving::reconcile`]
//! compares the two and acts: it starts missing instances, drains and stops extra ones,
//! adopts instances found after a restart, removes ones nobody declared, and switches a
//! service's route to a new revision once that revision has a ready instance. It runs on every
//! change (deploy, delete, an instance ready or dead) and periodically, so any missed event
//! is corrected on the next pass.
//!
//! Slow work (create + readiness probe, drain + stop) runs in tasks owned by the reconcile
//! loop's `JoinSet`; they report back by editing the shared state and waking the loop.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use rouse_activator::{Endpoint, RevisionEndpoints, RouteTable, ServiceRoute};
use rouse_api::ValidationError;
use rouse_api::knative::{TrafficTarget, timestamp};
use rouse_api::name::validate_revision_name;
use rouse_api::status::{Crash, InstancePhase, Traffic};
use rouse_api::traffic::{Resolved, TrafficChange, apply_change, resolve};
use rouse_api::{PortProtocol, Revision, RevisionTemplate, ScaleMetric, Service};
use rouse_runtime::{Instance, InstanceSpec, InstanceState, LogOptions, Readiness, Resources, Runtime, RuntimeError};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::restart_delay;
use crate::config::{GcConfig, InstanceConfig};
use crate::error::ControlError;
use crate::metrics::{RevisionSample, ServingMetrics, StartPath};
use crate::sinks::SinkAddresses;
use crate::store::Store;
use rouse_autoscaler::{AutoscalerConfig, Kpa, Observation, ScalingSpec, Window};

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
pub struct Serving {
    runtime: Arc<dyn Runtime>,
    store: Arc<Store>,
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
}

/// What [`Serving`] is configured with.
#[derive(Clone, Debug)]
pub struct ServingSettings {
    pub instances: InstanceConfig,
    pub autoscaler: AutoscalerConfig,
    pub gc: GcConfig,
    /// Most memory frozen instances may hold, in bytes.
    pub frozen_budget: u64,
    /// Where sinks are, for `K_SINK`.
    pub sinks: SinkAddresses,
}

#[derive(Default)]
struct State {
    /// Revisions that exist in the store, by name.
    revisions: HashMap<String, RevisionState>,
    /// Start tasks in progress, per service; `delete` waits for them to finish.
    starting: HashMap<String, usize>,
    /// Instances being stopped, by id, so that no pass stops them twice.
    stopping: HashSet<String>,
}

impl State {
    /// The live state of `revision` if it is still the one of `generation`.
    fn live(&mut self, revision: &str, generation: u64) -> Option<&mut RevisionState> {
        self.revisions.get_mut(revision).filter(|r| r.generation == generation)
    }
}

struct RevisionState {
    revision: Revision,
    endpoints: Arc<RevisionEndpoints>,
    instances: Vec<InstanceRecord>,
    /// Creates in progress (no instance id yet).
    creating: usize,
    /// Failures in a row since an instance was last ready.
    failures: u32,
    /// No new start before this time (crash backoff).
    retry_at: Option<Instant>,
    last_crash: Option<Crash>,
    /// Cancelled when the revision is deleted: start tasks stop probing.
    cancel: CancellationToken,
    /// The autoscaler's view of this revision.
    scaling: Scaling,
    /// Made from the store at start, before the runtime was listed: the first pass sets the
    /// autoscaler's starting point from what runs.
    restored: bool,
    /// Tells this live state from an earlier one of the same name (a service deleted and
    /// declared again): a task started for the earlier one must not edit this one.
    generation: u64,
}

/// Source of [`RevisionState::generation`].
static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Autoscaling state of one revision.
struct Scaling {
    spec: ScalingSpec,
    kpa: Kpa,
    /// Samples of the metric (concurrency, or requests per second).
    window: Window,
    /// The autoscaler's decision; `None` until the revision first reached its initial scale,
    /// as in Knative, where initial scale holds until then.
    desired: Option<u32>,
    /// For the rps metric: requests served at the previous sample, and when.
    last_served: (u64, Instant),
}

#[derive(Clone)]
struct InstanceRecord {
    id: String,
    name: String,
    endpoint: Option<SocketAddr>,
    phase: InstancePhase,
    /// When it was frozen, while it is.
    frozen_at: Option<Instant>,
    /// Memory it holds while frozen, in bytes (measured after freezing).
    memory: u64,
}

impl InstanceRecord {
    fn new(instance: &Instance, endpoint: Option<SocketAddr>, phase: InstancePhase) -> Self {
        Self {
            id: instance.id.clone(),
            name: instance.name.clone(),
            endpoint,
            phase,
            frozen_at: None,
            memory: 0,
        }
    }
}

/// What a caller may read about a revision's live state.
pub struct RevisionLive {
    pub desired: u32,
    pub instances: Vec<(String, InstancePhase, Option<SocketAddr>)>,
    pub failures: u32,
    pub last_crash: Option<Crash>,
    /// Requests being handled, waiting, and served since the daemon started.
    pub traffic: Traffic,
}

impl RevisionState {
    /// `autoscaled`: for a revision that was ready before (found again after a restart), the
    /// instances it has now, which the autoscaler starts from.
    fn new(revision: Revision, autoscaler: &AutoscalerConfig, demand: &Arc<Notify>, autoscaled: Option<u32>) -> Self {
        let t = &revision.template;
        let spec = autoscaler.spec_for(&t.scale, t.container_concurrency);
        let endpoints = RevisionEndpoints::new(
            &revision.service,
            &revision.name,
            Duration::from_secs(u64::from(t.timeout_seconds)),
            t.protocol == PortProtocol::H2c,
            t.container_concurrency,
        );
        endpoints.on_demand(demand.clone());
        let scaling = Scaling {
            window: Window::new(spec.stable_window),
            spec,
            kpa: Kpa::new(),
            desired: autoscaled,
            last_served: (0, Instant::now()),
        };
        Self {
            scaling,
            revision,
            endpoints,
            instances: Vec::new(),
            creating: 0,
            failures: 0,
            retry_at: None,
            last_crash: None,
            cancel: CancellationToken::new(),
            restored: false,
            generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Ends the revision's live state: start tasks stop, waiting requests leave.
    fn close(&self) {
        self.cancel.cancel();
        self.endpoints.close();
    }

    fn active(&self) -> usize {
        self.creating
            + self
                .instances
                .iter()
                .filter(|i| !matches!(i.phase, InstancePhase::Draining | InstancePhase::Frozen))
                .count()
    }
}

/// The revision that takes a service's traffic: the latest ready one, else the latest one (so
/// requests to a new service wait for its first instance instead of failing).
pub(crate) fn routed_revision(service: &Service) -> &str {
    service
        .latest_ready_revision
        .as_deref()
        .unwrap_or(&service.latest_revision)
}

/// The service's traffic with `@latest` filled in by [`routed_revision`].
pub(crate) fn service_traffic(service: &Service) -> Resolved {
    resolve(&service.traffic, routed_revision(service))
}

/// Instances a revision should have now: a revision that takes traffic (a share or a tag) has
/// what the autoscaler decided (its initial scale until it first got there); the latest
/// revision, until it is ready, has its initial scale; every other revision none.
fn desired_instances(service: &Service, revision: &Revision, autoscaled: Option<u32>) -> u32 {
    let initial = revision.template.scale.initial_instances();
    let traffic = service_traffic(service);
    if traffic.routes_to(&revision.name) {
        autoscaled.unwrap_or(initial)
    } else if revision.name == service.latest_revision
        && service.latest_ready_revision.as_deref() != Some(revision.name.as_str())
    {
        initial
    } else {
        0
    }
}

/// The route of `service` from its traffic, over the revisions live in `state`.
fn route_for(service: &Service, state: &State) -> Option<ServiceRoute> {
    let traffic = service_traffic(service);
    let endpoints = |revision: &str| state.revisions.get(revision).map(|r| r.endpoints.clone());
    let split: Vec<_> = traffic
        .split
        .iter()
        .filter_map(|(r, p)| Some((endpoints(r)?, *p)))
        .collect();
    if split.is_empty() {
        return None;
    }
    let tags: HashMap<_, _> = traffic
        .tags
        .iter()
        .filter_map(|(t, r)| Some((t.clone(), endpoints(r)?)))
        .collect();
    Some(ServiceRoute::new(split, tags))
}

impl Serving {
    pub fn new(
        runtime: Arc<dyn Runtime>,
        store: Arc<Store>,
        routes: Arc<RouteTable>,
        settings: ServingSettings,
        metrics: ServingMetrics,
    ) -> Arc<Self> {
        let serving = Arc::new(Self {
            runtime,
            store,
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

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the reconcile loop for a pass now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs `edit` on the stored service `name` and saves it, serialised with other writers.
    pub fn update_service<T>(
        &self,
        name: &str,
        edit: impl FnOnce(&mut Service) -> Result<T, ControlError>,
    ) -> Result<(Service, T), ControlError> {
        let _guard = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let mut service = self
            .store
            .service(name)?
            .ok_or_else(|| ControlError::ServiceNotFound { name: name.to_string() })?;
        let out = edit(&mut service)?;
        self.store.save(&service, None)?;
        Ok((service, out))
    }

    /// Creates or updates a service from a deploy; returns the service and the new revision, if
    /// the template changed.
    pub fn deploy(
        &self,
        name: &str,
        template: rouse_api::RevisionTemplate,
        revision_name: Option<&str>,
    ) -> Result<(Service, Option<Revision>), ControlError> {
        let _guard = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let existing: Vec<String> = self.store.revisions_of(name)?.into_iter().map(|r| r.name).collect();
        if let Some(wanted) = revision_name {
            validate_revision_name("--revision-name", name, wanted)?;
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
                            "--revision-name",
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
        if let Some(revision) = &revision {
            self.store.save(&service, Some(revision))?;
            let mut state = self.state();
            let entry = state
                .revisions
                .entry(revision.name.clone())
                .or_insert_with(|| RevisionState::new(revision.clone(), &self.autoscaler, &self.demand, None));
            if self.routes.get(name).is_none() {
                self.routes.set(name, ServiceRoute::single(entry.endpoints.clone()));
            }
        }
        self.wake();
        Ok((service, revision))
    }

    /// Abandons a revision that never became ready: the service goes back to the revision that
    /// serves it, or is deleted when it has no other. Used when a deploy fails to get ready.
    pub async fn abandon_revision(&self, service: &str, revision: &str) -> Result<(), ControlError> {
        let revisions = self.store.revisions_of(service)?;
        let Some(doomed) = revisions.iter().find(|r| r.name == revision) else {
            return Err(ControlError::RevisionNotFound {
                name: revision.to_string(),
            });
        };
        let current = self
            .store
            .service(service)?
            .ok_or_else(|| ControlError::ServiceNotFound {
                name: service.to_string(),
            })?;
        if current.latest_ready_revision.as_deref() == Some(revision) {
            return Err(ControlError::Conflict(format!(
                "revision {revision} is ready and serves {service}; deploy a new revision instead"
            )));
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
                    .ok_or_else(|| ControlError::ServiceNotFound {
                        name: service.to_string(),
                    })?;
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
    pub async fn delete_service(&self, name: &str) -> Result<bool, ControlError> {
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

    /// Drops the live state of revisions matching `doomed`; returns the ids of their instances.
    fn forget_revisions(&self, doomed: impl Fn(&str) -> bool) -> Vec<String> {
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
    async fn stop_all(&self, ids: Vec<String>) {
        let grace = self.config.stop_grace_period;
        let stops = ids.iter().map(|id| async move {
            if let Err(e) = self.runtime.stop(id, grace).await {
                tracing::warn!(instance = %id, error = %e, "stopping instance failed");
            }
        });
        futures_util::future::join_all(stops).await;
        let mut state = self.state();
        for id in &ids {
            state.stopping.remove(id);
        }
    }

    /// Live state of a revision, for status and describe.
    pub fn revision_live(&self, service: &Service, revision: &Revision) -> RevisionLive {
        let state = self.state();
        let autoscaled = state.revisions.get(&revision.name).and_then(|r| r.scaling.desired);
        let desired = desired_instances(service, revision, autoscaled);
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
                    .map(|i| (i.name.clone(), i.phase, i.endpoint))
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

    /// Names of instances of `service` the runtime knows, by id, for `logs`.
    pub async fn instances_of(&self, service: &str) -> Result<Vec<Instance>, ControlError> {
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

    // === the reconcile loop ===

    /// Reconciles until `shutdown`, on every wake and at least every resync interval.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tasks = JoinSet::new();
        loop {
            if let Err(e) = self.reconcile(&mut tasks).await {
                tracing::warn!(error = %e, "reconcile failed; retrying at the next pass");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.config.resync_interval) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
            while tasks.try_join_next().is_some() {}
        }
        // Instances keep running while the daemon is down; a restarted daemon adopts them.
        tasks.shutdown().await;
    }

    /// Samples every revision's demand and lets the KPA decide, until `shutdown`: every
    /// sampling interval, a decision every tick, and a decision at once when a request has to
    /// wait (so a revision at zero starts an instance without waiting for a tick).
    pub async fn run_autoscaler(self: Arc<Self>, shutdown: CancellationToken) {
        let mut sample = tokio::time::interval(SAMPLE_INTERVAL);
        sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut tick = tokio::time::interval(self.autoscaler.tick_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = sample.tick() => self.sample(Instant::now()),
                _ = tick.tick() => {
                    self.decide(Instant::now());
                    self.close_idle_connections();
                }
                () = self.demand.notified() => {
                    let now = Instant::now();
                    self.sample(now);
                    self.decide(now);
                }
            }
        }
    }

    /// Closes proxy connections that instances have not used for a while.
    fn close_idle_connections(&self) {
        for revision in self.state().revisions.values() {
            revision.endpoints.close_idle_connections();
        }
    }

    /// Records each revision's current demand in its window.
    fn sample(&self, now: Instant) {
        let mut state = self.state();
        for revision in state.revisions.values_mut() {
            let scaling = &mut revision.scaling;
            let value = match scaling.spec.metric {
                ScaleMetric::Concurrency => revision.endpoints.demand() as f64,
                ScaleMetric::Rps => {
                    let served = revision.endpoints.served();
                    let (before, at) = scaling.last_served;
                    scaling.last_served = (served, now);
                    let elapsed = now.saturating_duration_since(at).as_secs_f64();
                    // Waiting requests are demand too: count them as if served now.
                    let waiting = revision.endpoints.waiting() as f64;
                    if elapsed > 0.0 {
                        (served - before) as f64 / elapsed + waiting
                    } else {
                        waiting
                    }
                }
            };
            scaling.window.record(now, value);
            let count = |phase| revision.instances.iter().filter(|i| i.phase == phase).count() as u32;
            let ready = count(InstancePhase::Ready);
            let sample = RevisionSample {
                desired: scaling
                    .desired
                    .unwrap_or(revision.revision.template.scale.initial_instances()),
                actual: revision.creating as u32 + count(InstancePhase::Starting) + ready,
                ready,
                in_flight: revision.endpoints.in_flight() as u32,
                queued: revision.endpoints.waiting() as u32,
                frozen: count(InstancePhase::Frozen),
                panicking: scaling.kpa.panicking(),
            };
            self.metrics
                .record(&revision.revision.service, &revision.revision.name, sample);
        }
    }

    /// One KPA decision per autoscaled revision; wakes the reconciler when one changed.
    fn decide(&self, now: Instant) {
        let mut changed = false;
        let mut state = self.state();
        for revision in state.revisions.values_mut() {
            let scaling = &mut revision.scaling;
            let Some(current) = scaling.desired else { continue };
            let waiting = revision.endpoints.waiting();
            let observed = Observation {
                stable: scaling.window.average(now, scaling.spec.stable_window),
                panic: scaling.window.average(now, scaling.spec.panic_window),
                ready: revision.endpoints.ready_count() as u32,
                current,
                observed_for: scaling.window.observed_for(now),
            };
            let mut decision = scaling.kpa.decide(&scaling.spec, &observed, now);
            // Requests are waiting and nothing runs: one instance, now, whatever the averages.
            if waiting > 0 && decision.desired == 0 {
                decision.desired = 1;
            }
            if decision.desired != current {
                tracing::info!(
                    revision = %revision.revision.name,
                    from = current,
                    to = decision.desired,
                    stable = observed.stable,
                    panic = observed.panic,
                    panicking = decision.panicking,
                    "scaling"
                );
                scaling.desired = Some(decision.desired);
                changed = true;
            }
        }
        drop(state);
        if changed {
            self.wake();
        }
    }

    /// Follows the runtime's exit events until `shutdown`, handing each to the reconciler.
    pub async fn watch_exits(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.runtime.exits().await {
                Ok(mut exits) => loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        exit = exits.next() => match exit {
                            Some(exit) => self.instance_exited(&exit.id, exit.code).await,
                            None => break,
                        },
                    }
                },
                Err(e) => tracing::warn!(error = %e, "cannot follow instance exits; relying on resync"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// One pass: compare store and runtime, then act.
    async fn reconcile(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Result<(), ControlError> {
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
            let desired = desired_instances(service, &revision.revision, revision.scaling.desired) as usize;
            let active = revision.active();
            let retention = revision.scaling.spec.frozen_retention;
            if active < desired && revision.retry_at.is_none_or(|at| at <= now) {
                // Thaw frozen instances first (the most recently frozen), then start fresh ones.
                let mut frozen: Vec<(Instant, String)> = revision
                    .instances
                    .iter()
                    .filter_map(|i| Some((i.frozen_at?, i.id.clone())))
                    .collect();
                frozen.sort_by_key(|f| std::cmp::Reverse(f.0));
                let mut thawed = 0;
                for (_, id) in frozen.into_iter().take(desired - active) {
                    self.spawn_thaw(&mut state, tasks, &name, &id);
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
            if let Some(at) = state
                .revisions
                .get(&name)
                .and_then(|r| r.instances.iter().filter_map(|i| i.frozen_at).min())
            {
                // Come back when the oldest frozen instance expires.
                let serving = self.clone();
                let at = at + retention;
                tasks.spawn(async move {
                    tokio::time::sleep_until(at).await;
                    serving.wake();
                });
            }

            if let Some(at) = state.revisions.get(&name).and_then(|r| r.retry_at)
                && at > now
            {
                // Come back when the backoff ends.
                let serving = self.clone();
                tasks.spawn(async move {
                    tokio::time::sleep_until(at).await;
                    serving.wake();
                });
            }
        }
        self.enforce_frozen_budget(&mut state, tasks);
        Ok(())
    }

    /// Brings a known instance back to its phase when the runtime shows it in another state:
    /// someone paused, unpaused, stopped or killed it, or its exit event was lost.
    fn repair_drift(self: &Arc<Self>, state: &mut State, tasks: &mut JoinSet<()>, seen: &Instance, record: &InstanceRecord) {
        let revision = &seen.revision;
        let id = seen.id.clone();
        match (&seen.state, record.phase) {
            // It died and the exit event was missed.
            (InstanceState::Exited { code }, InstancePhase::Ready) => {
                let (serving, code) = (self.clone(), *code);
                tasks.spawn(async move { serving.instance_exited(&id, Some(code)).await });
            }
            // Frozen and then killed: nothing to keep.
            (InstanceState::Exited { .. }, InstancePhase::Frozen) => {
                tracing::info!(%revision, instance = %record.name, "frozen instance exited; removing it");
                self.spawn_remove_frozen(state, tasks, revision, &id);
            }
            // Paused while serving: requests sent to it would hang.
            (InstanceState::Paused, InstancePhase::Ready) => {
                tracing::warn!(%revision, instance = %record.name, "instance paused behind our back; thawing it");
                let serving = self.clone();
                tasks.spawn(async move {
                    if let Err(e) = serving.runtime.unpause(&id).await {
                        tracing::warn!(instance = %id, error = %e, "cannot thaw instance");
                    }
                });
            }
            // Unpaused while frozen: it holds CPU nobody asked for, and the state says frozen.
            (InstanceState::Running, InstancePhase::Frozen) => {
                tracing::warn!(%revision, instance = %record.name, "frozen instance unpaused behind our back; freezing it again");
                let serving = self.clone();
                tasks.spawn(async move {
                    if let Err(e) = serving.runtime.pause(&id).await {
                        tracing::warn!(instance = %id, error = %e, "cannot freeze instance again");
                    }
                });
            }
            _ => {}
        }
    }

    /// Over the memory budget for frozen instances, removes the least recently frozen first.
    fn enforce_frozen_budget(self: &Arc<Self>, state: &mut State, tasks: &mut JoinSet<()>) {
        let frozen: Vec<FrozenInstance> = state
            .revisions
            .iter()
            .flat_map(|(name, r)| {
                r.instances.iter().filter_map(move |i| {
                    Some(FrozenInstance {
                        since: i.frozen_at?,
                        memory: i.memory,
                        revision: name.clone(),
                        id: i.id.clone(),
                    })
                })
            })
            .collect();
        for evicted in over_budget(frozen, self.frozen_budget) {
            tracing::info!(
                revision = %evicted.revision,
                instance = %evicted.id,
                memory = evicted.memory,
                budget = self.frozen_budget,
                "frozen memory over budget: removing the least recently used"
            );
            self.spawn_remove_frozen(state, tasks, &evicted.revision, &evicted.id);
        }
    }

    /// Removes a frozen instance.
    fn spawn_remove_frozen(self: &Arc<Self>, state: &mut State, tasks: &mut JoinSet<()>, revision: &str, id: &str) {
        let Some(record) = state.revisions.get_mut(revision).and_then(|r| {
            r.instances
                .iter_mut()
                .find(|i| i.id == id && i.phase == InstancePhase::Frozen)
        }) else {
            return;
        };
        record.phase = InstancePhase::Draining;
        record.frozen_at = None;
        state.stopping.insert(id.to_string());
        let serving = self.clone();
        let (revision, id) = (revision.to_string(), id.to_string());
        tasks.spawn(async move {
            serving.stop_all(vec![id.clone()]).await;
            let mut state = serving.state();
            if let Some(rev) = state.revisions.get_mut(&revision) {
                rev.instances.retain(|i| i.id != id);
            }
        });
    }

    /// Thaws a frozen instance and makes it available once it answers; if it does not, it is
    /// removed and the next pass starts a fresh one.
    fn spawn_thaw(self: &Arc<Self>, state: &mut State, tasks: &mut JoinSet<()>, revision: &str, id: &str) {
        let Some(rev) = state.revisions.get_mut(revision) else {
            return;
        };
        let service = rev.revision.service.clone();
        let Some(record) = rev
            .instances
            .iter_mut()
            .find(|i| i.id == id && i.phase == InstancePhase::Frozen)
        else {
            return;
        };
        record.phase = InstancePhase::Starting;
        record.frozen_at = None;
        record.memory = 0;
        let record = record.clone();
        let serving = self.clone();
        let revision = revision.to_string();
        tasks.spawn(async move {
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
                // It answered before it froze: any answer shows it runs again.
                Ok(()) => serving.runtime.wait_ready(&instance, &Readiness::default(), THAW_PROBE_TIMEOUT).await,
                Err(e) => Err(e),
            };
            match thawed {
                Ok(()) => {
                    let seconds = began.elapsed().as_secs_f64();
                    serving.metrics.instance_started(&service, &revision, StartPath::Frozen, seconds);
                    tracing::info!(%revision, instance = %record.name, ms = seconds * 1000.0, "instance thawed");
                    serving.instance_ready(&revision, &instance);
                }
                Err(e) => {
                    tracing::warn!(%revision, instance = %record.name, error = %e, "thawed instance is dead; starting a fresh one");
                    serving.stop_all(vec![record.id.clone()]).await;
                    let mut state = serving.state();
                    if let Some(rev) = state.revisions.get_mut(&revision) {
                        rev.instances.retain(|i| i.id != record.id);
                    }
                    drop(state);
                    serving.wake();
                }
            }
        });
    }

    /// Deletes old revisions beyond the newest `max-non-active-revisions` that take no traffic
    /// (never the latest, the latest ready, a routed or a tagged one). Their instances are
    /// removed by the same pass, as instances nobody declared.
    fn collect_garbage(
        &self,
        services: &HashMap<String, Service>,
        revisions: &mut Vec<Revision>,
    ) -> Result<(), ControlError> {
        let mut doomed = Vec::new();
        for service in services.values() {
            let traffic = service_traffic(service);
            let mut inactive: Vec<&Revision> = revisions
                .iter()
                .filter(|r| r.service == service.name)
                .filter(|r| {
                    r.name != service.latest_revision && Some(&r.name) != service.latest_ready_revision.as_ref()
                })
                .filter(|r| !traffic.routes_to(&r.name))
                .collect();
            inactive.sort_by_key(|r| std::cmp::Reverse(r.number));
            doomed.extend(
                inactive
                    .into_iter()
                    .skip(self.gc.max_non_active_revisions)
                    .map(|r| r.name.clone()),
            );
        }
        if doomed.is_empty() {
            return Ok(());
        }
        // Look again under the write lock: traffic may have moved onto one since the snapshot.
        let _guard = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let owners: HashMap<&str, &str> = revisions
            .iter()
            .map(|r| (r.name.as_str(), r.service.as_str()))
            .collect();
        doomed.retain(|name| {
            let Some(owner) = owners.get(name.as_str()) else {
                return false;
            };
            match self.store.service(owner) {
                Ok(Some(service)) => {
                    !service_traffic(&service).routes_to(name)
                        && *name != service.latest_revision
                        && Some(name) != service.latest_ready_revision.as_ref()
                }
                _ => false,
            }
        });
        for name in &doomed {
            tracing::info!(revision = %name, "deleting an old revision without traffic");
            self.store.delete_revision(name)?;
        }
        revisions.retain(|r| !doomed.contains(&r.name));
        Ok(())
    }

    /// Sets the service's route from its traffic, if it changed.
    fn reroute(&self, service: &Service, state: &State) {
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

    /// Sets what a manifest declares beside the template: labels, annotations and the whole
    /// traffic. Returns whether anything changed; new requests follow the traffic at once.
    pub fn declare(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
        traffic: Vec<TrafficTarget>,
    ) -> Result<bool, ControlError> {
        let (service, changed) = self.update_service(name, |svc| {
            let changed = svc.labels != labels || svc.annotations != annotations || svc.traffic != traffic;
            svc.labels = labels;
            svc.annotations = annotations;
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
    pub fn change_traffic(&self, name: &str, change: &TrafficChange) -> Result<Service, ControlError> {
        let revisions: Vec<String> = self.store.revisions_of(name)?.into_iter().map(|r| r.name).collect();
        let (service, ()) = self.update_service(name, |svc| {
            svc.traffic = apply_change(&svc.traffic, change, &revisions)?;
            Ok(())
        })?;
        self.reroute(&service, &self.state());
        self.wake();
        Ok(service)
    }

    fn spawn_stop(self: &Arc<Self>, state: &mut State, tasks: &mut JoinSet<()>, id: String) {
        if !state.stopping.insert(id.clone()) {
            return;
        }
        tracing::info!(instance = %id, "removing instance nobody declared");
        let serving = self.clone();
        tasks.spawn(async move { serving.stop_all(vec![id]).await });
    }

    /// Drains and stops `count` instances of a revision, starting ones first.
    /// Drains `count` instances of a revision (starting ones first), then stops them, or
    /// freezes them when `freeze` (the revision is going to zero and keeps frozen instances).
    fn spawn_scale_down(
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
        for phase in [InstancePhase::Starting, InstancePhase::Ready] {
            for instance in rev.instances.iter_mut().filter(|i| i.phase == phase) {
                if chosen.len() < count {
                    instance.phase = InstancePhase::Draining;
                    // A starting instance has nothing worth keeping: only ready ones freeze.
                    chosen.push((instance.id.clone(), freeze && phase == InstancePhase::Ready));
                }
            }
        }
        let endpoints = rev.endpoints.clone();
        for (id, freeze) in chosen {
            if !freeze {
                state.stopping.insert(id.clone());
            }
            let serving = self.clone();
            let endpoints = endpoints.clone();
            let revision = revision.to_string();
            tasks.spawn(async move {
                tracing::info!(%revision, instance = %id, freeze, "draining instance");
                if let Some(endpoint) = endpoints.remove(&id) {
                    endpoint.drained(Instant::now() + endpoints.timeout).await;
                }
                if freeze && serving.freeze(&revision, &id).await {
                    return;
                }
                serving.stop_all(vec![id.clone()]).await;
                let mut state = serving.state();
                if let Some(rev) = state.revisions.get_mut(&revision) {
                    rev.instances.retain(|i| i.id != id);
                }
            });
        }
    }

    /// Pauses a drained instance and records it as frozen; false when it could not be.
    async fn freeze(self: &Arc<Self>, revision: &str, id: &str) -> bool {
        if let Err(e) = self.runtime.pause(id).await {
            tracing::warn!(%revision, instance = %id, error = %e, "cannot freeze instance; removing it");
            return false;
        }
        let recorded = {
            let mut state = self.state();
            match state
                .revisions
                .get_mut(revision)
                .and_then(|r| r.instances.iter_mut().find(|i| i.id == id))
            {
                Some(record) => {
                    record.phase = InstancePhase::Frozen;
                    record.frozen_at = Some(Instant::now());
                    true
                }
                None => false,
            }
        };
        if !recorded {
            // Its revision went away meanwhile.
            self.stop_all(vec![id.to_string()]).await;
            return true;
        }
        tracing::info!(%revision, instance = %id, "instance frozen");
        self.measure_frozen(revision, id).await;
        true
    }

    /// Records how much memory a frozen instance holds, then lets the budget be checked.
    async fn measure_frozen(&self, revision: &str, id: &str) {
        let memory = match self.runtime.memory_usage(id).await {
            Ok(memory) => memory,
            Err(e) => {
                tracing::debug!(instance = %id, error = %e, "cannot read memory use of a frozen instance");
                return;
            }
        };
        {
            let mut state = self.state();
            if let Some(record) = state.revisions.get_mut(revision).and_then(|r| {
                r.instances
                    .iter_mut()
                    .find(|i| i.id == id && i.phase == InstancePhase::Frozen)
            }) {
                record.memory = memory;
            }
        }
        self.wake();
    }

    fn spawn_start(self: &Arc<Self>, state: &mut State, tasks: &mut JoinSet<()>, revision: &str) {
        let Some(rev) = state.revisions.get_mut(revision) else {
            return;
        };
        rev.creating += 1;
        let spec = instance_spec(&rev.revision, &self.sinks);
        let ready = readiness(&rev.revision.template);
        let cancel = rev.cancel.clone();
        let generation = rev.generation;
        *state.starting.entry(spec.service.clone()).or_default() += 1;
        let serving = self.clone();
        let revision = revision.to_string();
        tasks.spawn(async move {
            let service = spec.service.clone();
            serving.start(&revision, generation, spec, &ready, cancel).await;
            let mut state = serving.state();
            if let Some(n) = state.starting.get_mut(&service) {
                *n = n.saturating_sub(1);
            }
        });
    }

    /// Creates one instance, probes it until it answers, and makes it available.
    async fn start(
        self: &Arc<Self>,
        revision: &str,
        generation: u64,
        spec: InstanceSpec,
        ready: &Readiness,
        cancel: CancellationToken,
    ) {
        tracing::info!(%revision, "starting instance");
        let began = Instant::now();
        let created = self.runtime.create(&spec).await;
        let created = match created {
            Ok(instance) => instance,
            Err(e) => {
                let mut state = self.state();
                if let Some(rev) = state.live(revision, generation) {
                    rev.creating = rev.creating.saturating_sub(1);
                    let crash = Crash {
                        reason: "CreateFailed".to_string(),
                        message: format!("cannot create an instance: {e}"),
                        exit_code: None,
                        logs: Vec::new(),
                        restarts: rev.failures + 1,
                        at: timestamp(Utc::now()),
                    };
                    self.record_failure(rev, crash);
                }
                return;
            }
        };
        let recorded = {
            let mut state = self.state();
            match state.live(revision, generation) {
                Some(rev) => {
                    rev.creating = rev.creating.saturating_sub(1);
                    rev.instances
                        .push(InstanceRecord::new(&created, created.endpoint, InstancePhase::Starting));
                    true
                }
                None => false,
            }
        };
        if !recorded {
            // Deleted meanwhile: leave nothing behind.
            self.stop_all(vec![created.id]).await;
            return;
        }
        let instance = created;
        let probed = tokio::select! {
            result = self.runtime.wait_ready(&instance, ready, self.config.ready_timeout) => result,
            () = cancel.cancelled() => return,
        };
        match probed {
            Ok(()) => {
                let seconds = began.elapsed().as_secs_f64();
                self.metrics
                    .instance_started(&instance.service, revision, StartPath::Fresh, seconds);
                self.instance_ready(revision, &instance);
            }
            Err(e) => {
                let (reason, code) = match &e {
                    RuntimeError::Exited { code, .. } => ("ContainerExited", Some(*code)),
                    RuntimeError::NotReady { .. } => ("NotReady", None),
                    _ => ("ProbeFailed", None),
                };
                self.instance_failed(revision, &instance.id, reason, e.to_string(), code)
                    .await;
            }
        }
    }

    /// Re-admits an instance found frozen after a restart: it stays frozen, its retention
    /// counting from now.
    fn adopt_frozen(
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
        let mut record = InstanceRecord::new(instance, Some(endpoint), InstancePhase::Frozen);
        record.frozen_at = Some(now);
        rev.instances.push(record);
        let serving = self.clone();
        let (revision, id) = (instance.revision.clone(), instance.id.clone());
        tasks.spawn(async move { serving.measure_frozen(&revision, &id).await });
    }

    /// Re-admits an instance found running after a restart, once it answers a probe.
    fn spawn_adopt(
        self: &Arc<Self>,
        state: &mut State,
        tasks: &mut JoinSet<()>,
        instance: Instance,
        endpoint: SocketAddr,
    ) {
        let Some(rev) = state.revisions.get_mut(&instance.revision) else {
            return;
        };
        tracing::info!(revision = %instance.revision, instance = %instance.name, "adopting running instance");
        rev.instances
            .push(InstanceRecord::new(&instance, Some(endpoint), InstancePhase::Starting));
        let ready = readiness(&rev.revision.template);
        let serving = self.clone();
        tasks.spawn(async move {
            match serving.runtime.wait_ready(&instance, &ready, ADOPT_PROBE_TIMEOUT).await {
                Ok(()) => serving.instance_ready(&instance.revision, &instance),
                Err(e) => {
                    serving
                        .instance_failed(&instance.revision, &instance.id, "NotReady", e.to_string(), None)
                        .await
                }
            }
        });
    }

    fn instance_ready(self: &Arc<Self>, revision: &str, instance: &Instance) {
        let service = {
            let mut state = self.state();
            let Some(rev) = state.revisions.get_mut(revision) else {
                return;
            };
            let Some(record) = rev.instances.iter_mut().find(|i| i.id == instance.id) else {
                return;
            };
            if record.phase != InstancePhase::Starting {
                return;
            }
            let Some(addr) = record.endpoint else { return };
            record.phase = InstancePhase::Ready;
            rev.failures = 0;
            rev.retry_at = None;
            rev.endpoints
                .add(Endpoint::new(instance.id.clone(), instance.name.clone(), addr));
            tracing::info!(%revision, instance = %instance.name, "instance ready");
            // As in Knative, a revision is ready once it has reached its initial scale.
            let ready = rev.instances.iter().filter(|i| i.phase == InstancePhase::Ready).count();
            if ready < rev.revision.template.scale.initial_instances() as usize {
                return;
            }
            if rev.scaling.desired.is_none() {
                rev.scaling.desired = Some(ready as u32);
            }
            (rev.revision.service.clone(), rev.revision.number)
        };
        let (service, number) = service;
        // A newer revision than the one serving became ready: it takes the traffic.
        let result = self.update_service(&service, |svc| {
            // Revisions are ordered by number (names may be chosen with --revision-name).
            let newer = match svc.latest_ready_revision.as_deref() {
                None => true,
                Some(current) => self
                    .state()
                    .revisions
                    .get(current)
                    .is_none_or(|r| number > r.revision.number),
            };
            if newer {
                svc.latest_ready_revision = Some(revision.to_string());
                // Route before the record says so: whoever sees the revision ready (a
                // waiting `rouse deploy`) must find it taking the traffic.
                self.reroute(svc, &self.state());
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::debug!(%service, error = %e, "cannot record the ready revision");
        }
        self.wake();
    }

    /// An instance's process ended. Expected for draining instances; otherwise a crash.
    pub async fn instance_exited(self: &Arc<Self>, id: &str, code: Option<i64>) {
        let revision = {
            let state = self.state();
            state.revisions.iter().find_map(|(name, r)| {
                r.instances
                    .iter()
                    .find(|i| i.id == id && i.phase == InstancePhase::Ready)
                    .map(|i| (name.clone(), i.name.clone()))
            })
        };
        let Some((revision, name)) = revision else { return };
        let message = match code {
            Some(code) => format!("instance {name} exited with code {code}"),
            None => format!("instance {name} exited"),
        };
        self.instance_failed(&revision, id, "ContainerExited", message, code)
            .await;
    }

    /// Takes a failed instance out, keeps its last logs for describe, removes it, and sets
    /// the restart backoff.
    async fn instance_failed(
        self: &Arc<Self>,
        revision: &str,
        id: &str,
        reason: &str,
        message: String,
        code: Option<i64>,
    ) {
        let name = {
            let mut state = self.state();
            let Some(rev) = state.revisions.get_mut(revision) else {
                return;
            };
            rev.endpoints.remove(id);
            let Some(record) = rev.instances.iter_mut().find(|i| i.id == id) else {
                return;
            };
            if record.phase == InstancePhase::Draining {
                return;
            }
            record.phase = InstancePhase::Draining;
            let name = record.name.clone();
            state.stopping.insert(id.to_string());
            name
        };
        tracing::warn!(%revision, instance = %name, %reason, %message, "instance failed");
        let logs = self.last_logs(id).await;
        self.stop_all(vec![id.to_string()]).await;
        let mut state = self.state();
        let Some(rev) = state.revisions.get_mut(revision) else {
            return;
        };
        rev.instances.retain(|i| i.id != id);
        let crash = Crash {
            reason: reason.to_string(),
            message,
            exit_code: code,
            logs,
            restarts: rev.failures + 1,
            at: timestamp(Utc::now()),
        };
        self.record_failure(rev, crash);
    }

    fn record_failure(&self, rev: &mut RevisionState, crash: Crash) {
        rev.failures += 1;
        let delay = restart_delay(rev.failures, self.config.crash_backoff, self.config.crash_backoff_max);
        rev.retry_at = Some(Instant::now() + delay);
        rev.last_crash = Some(crash);
        self.wake();
    }

    async fn last_logs(&self, id: &str) -> Vec<String> {
        let options = LogOptions {
            follow: false,
            tail: Some(CRASH_LOG_LINES),
        };
        let Ok(stream) = self.runtime.logs(id, options).await else {
            return Vec::new();
        };
        let lines: Vec<_> = stream.take(CRASH_LOG_LINES).collect().await;
        lines.into_iter().filter_map(Result::ok).map(|l| l.line).collect()
    }
}

/// A frozen instance, as the memory budget sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FrozenInstance {
    since: Instant,
    memory: u64,
    revision: String,
    id: String,
}

/// The frozen instances to remove so the rest fit in `budget`: least recently frozen first.
fn over_budget(mut frozen: Vec<FrozenInstance>, budget: u64) -> Vec<FrozenInstance> {
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

/// The container contract: `$PORT` and the `K_*` variables (with `K_SINK` and
/// `K_CE_OVERRIDES` when the revision has a sink), then the user's environment.
pub fn instance_spec(revision: &Revision, sinks: &SinkAddresses) -> InstanceSpec {
    let t = &revision.template;
    let mut env = vec![
        ("PORT".to_string(), t.port.to_string()),
        ("K_SERVICE".to_string(), revision.service.clone()),
        ("K_CONFIGURATION".to_string(), revision.service.clone()),
        ("K_REVISION".to_string(), revision.name.clone()),
    ];
    let mut host_aliases = Vec::new();
    if let Some(sink) = &t.sink {
        let (url, alias) = sinks.for_container(sink);
        env.push(("K_SINK".to_string(), url));
        host_aliases.extend(alias);
        if !t.ce_overrides.is_empty() {
            let overrides = serde_json::json!({ "extensions": t.ce_overrides });
            env.push(("K_CE_OVERRIDES".to_string(), overrides.to_string()));
        }
    }
    env.extend(t.env.iter().map(|v| (v.name.clone(), v.value.clone())));
    InstanceSpec {
        service: revision.service.clone(),
        revision: revision.name.clone(),
        image: t.image.clone(),
        env,
        container_port: t.port,
        command: t.command.clone(),
        args: t.args.clone(),
        labels: Default::default(),
        resources: Resources {
            cpu_limit_millis: t.resources.limits.cpu_millis(),
            memory_limit_bytes: t.resources.limits.memory_bytes(),
            cpu_request_millis: t.resources.requests.cpu_millis(),
            memory_request_bytes: t.resources.requests.memory_bytes(),
        },
        host_aliases,
    }
}

/// How an instance of `template` is known to be ready: the user's probe, or any HTTP answer.
pub fn readiness(template: &RevisionTemplate) -> Readiness {
    match &template.readiness {
        None => Readiness::default(),
        Some(probe) => Readiness {
            path: probe.path.clone(),
            period: (probe.period_seconds > 0).then(|| Duration::from_secs(probe.period_seconds.into())),
            success_only: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rouse_api::RevisionTemplate;

    #[test]
    fn routed_and_desired_follow_the_latest_ready_revision() {
        let now = Utc::now();
        let (mut svc, first) = Service::create("hello", RevisionTemplate::new("a"), now);
        assert_eq!(routed_revision(&svc), "hello-00001");
        assert_eq!(desired_instances(&svc, &first, None), 1);
        let second = svc.update(RevisionTemplate::new("b"), now).unwrap();
        svc.latest_ready_revision = Some(first.name.clone());
        // While the new revision starts, the old one keeps serving.
        assert_eq!(routed_revision(&svc), "hello-00001");
        assert_eq!(desired_instances(&svc, &first, Some(3)), 3);
        assert_eq!(
            desired_instances(&svc, &second, Some(5)),
            1,
            "initial scale while rolling out"
        );
        svc.latest_ready_revision = Some(second.name.clone());
        assert_eq!(desired_instances(&svc, &first, Some(3)), 0);
        assert_eq!(
            desired_instances(&svc, &second, Some(0)),
            0,
            "the autoscaler may take it to zero"
        );
    }

    #[test]
    fn spec_carries_the_container_contract() {
        let mut template = RevisionTemplate::new("img");
        template.port = 9000;
        template.env = vec!["TARGET=x".parse().unwrap()];
        let (_, revision) = Service::create("hello", template, Utc::now());
        let spec = instance_spec(&revision, &SinkAddresses::default());
        let env: HashMap<_, _> = spec.env.iter().cloned().collect();
        assert_eq!(env["PORT"], "9000");
        assert_eq!(env["K_SERVICE"], "hello");
        assert_eq!(env["K_CONFIGURATION"], "hello");
        assert_eq!(env["K_REVISION"], "hello-00001");
        assert_eq!(env["TARGET"], "x");
        assert_eq!(spec.container_port, 9000);
    }

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

#[cfg(test)]
mod harness;
#[cfg(test)]
mod scenarios;
