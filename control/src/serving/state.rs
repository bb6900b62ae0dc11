//! The live state the loop keeps: per revision its endpoints, instances and autoscaling, and
//! which revision a service's traffic goes to.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rouse_activator::{Endpoint, RevisionEndpoints, ServiceRoute};
use rouse_api::annotations::is_cluster_local;
use rouse_api::status::{Crash, InstancePhase, Traffic};

use super::phase::Phase;
use rouse_api::rollout;
use rouse_api::traffic::{Resolved, resolve, resolve_rolled};
use rouse_api::{PortProtocol, Revision, Service};
use rouse_runtime::Instance;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use rouse_autoscaler::{AutoscalerConfig, Kpa, ScalingSpec, Window};

#[derive(Default)]
pub(super) struct State {
    /// Revisions that exist in the store, by name.
    pub(super) revisions: HashMap<String, RevisionState>,
    /// Start tasks in progress, per service; `delete` waits for them to finish.
    pub(super) starting: HashMap<String, usize>,
    /// Instances being stopped, by id, so that no pass stops them twice.
    pub(super) stopping: HashSet<String>,
    /// Instances stopped, by id, with when: a listing that began before the stop still shows
    /// them, and must not make a pass adopt them again.
    pub(super) stopped: HashMap<String, Instant>,
    /// The last pass held starts back at the host's `max-instances`: logged once, not at
    /// every pass.
    pub(super) capped: bool,
}

impl State {
    /// The live state of `revision` if it is still the one of `generation`.
    pub(super) fn live(&mut self, revision: &str, generation: u64) -> Option<&mut RevisionState> {
        self.revisions.get_mut(revision).filter(|r| r.generation == generation)
    }
}

pub(super) struct RevisionState {
    pub(super) revision: Revision,
    pub(super) endpoints: Arc<RevisionEndpoints>,
    pub(super) instances: Vec<InstanceRecord>,
    /// Creates in progress (no instance id yet).
    pub(super) creating: usize,
    /// Failures in a row since an instance was last ready.
    pub(super) failures: u32,
    /// No new start before this time (crash backoff).
    pub(super) retry_at: Option<Instant>,
    pub(super) last_crash: Option<Crash>,
    /// Cancelled when the revision is deleted: start tasks stop probing.
    pub(super) cancel: CancellationToken,
    /// The autoscaler's view of this revision.
    pub(super) scaling: Scaling,
    /// Made from the store at start, before the runtime was listed: the first pass sets the
    /// autoscaler's starting point from what runs.
    pub(super) restored: bool,
    /// Tells this live state from an earlier one of the same name (a service deleted and
    /// declared again): a task started for the earlier one must not edit this one.
    pub(super) generation: u64,
    /// The last pass held some of its starts back at the host's `max-instances`.
    pub(super) held_back: bool,
}

/// Source of [`RevisionState::generation`].
pub(super) static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Autoscaling state of one revision.
pub(super) struct Scaling {
    pub(super) spec: ScalingSpec,
    pub(super) kpa: Kpa,
    /// Samples of the metric (concurrency, or requests per second).
    pub(super) window: Window,
    /// The autoscaler's decision; `None` until the revision first reached its initial scale,
    /// as in Knative, where initial scale holds until then.
    pub(super) desired: Option<u32>,
    /// For the rps metric: requests served at the previous sample, and when.
    pub(super) last_served: (u64, Instant),
    /// The revision's busy time (finished requests' time in flight) at the last sample.
    pub(super) last_busy: (Duration, Instant),
}

#[derive(Clone)]
pub(super) struct InstanceRecord {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) endpoint: Option<SocketAddr>,
    pub(super) phase: Phase,
    /// When it was frozen, while it is.
    pub(super) frozen_at: Option<Instant>,
    /// Memory it holds while frozen, in bytes (measured after freezing).
    pub(super) memory: u64,
    /// Its place in the revision's endpoints, made when it first got ready and kept while it
    /// is out of them (draining, frozen, thawing), so requests still in flight on it count
    /// when it is drained again.
    pub(super) slot: Option<Arc<Endpoint>>,
    /// When the record was made: a listing that began before it may not show the instance.
    pub(super) since: Instant,
    /// Ready, but out of rotation for failing its readiness probe.
    pub(super) unready: bool,
    /// Ends the probes watching it while it is ready (see `health`).
    pub(super) watch: Option<CancellationToken>,
}

impl InstanceRecord {
    pub(super) fn new(instance: &Instance, endpoint: Option<SocketAddr>, phase: Phase) -> Self {
        Self {
            id: instance.id.clone(),
            name: instance.name.clone(),
            endpoint,
            phase,
            frozen_at: None,
            memory: 0,
            slot: None,
            since: Instant::now(),
            unready: false,
            watch: None,
        }
    }

    /// The phase users see: ready instances failing their readiness probe are not ready.
    pub(super) fn public_phase(&self) -> InstancePhase {
        match (self.phase, self.unready) {
            (Phase::Ready, true) => InstancePhase::NotReady,
            (phase, _) => phase.public(),
        }
    }

    /// Stops the probes watching it.
    pub(super) fn unwatch(&mut self) {
        if let Some(watch) = self.watch.take() {
            watch.cancel();
        }
        self.unready = false;
    }
}

/// What a caller may read about a revision's live state.
pub(crate) struct RevisionLive {
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
    pub(super) fn new(
        revision: Revision,
        autoscaler: &AutoscalerConfig,
        demand: &Arc<Notify>,
        autoscaled: Option<u32>,
    ) -> Self {
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
            last_busy: (Duration::ZERO, Instant::now()),
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
            held_back: false,
        }
    }

    /// Ends the revision's live state: start tasks stop, waiting requests leave.
    pub(super) fn close(&self) {
        self.cancel.cancel();
        self.endpoints.close();
    }

    pub(super) fn active(&self) -> usize {
        self.creating + self.instances.iter().filter(|i| i.phase.is_active()).count()
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

/// The service's traffic with `@latest` filled in by [`routed_revision`], split as its
/// gradual rollout, if one is under way, has it now.
pub(crate) fn service_traffic(service: &Service) -> Resolved {
    traffic_at(service, chrono::Utc::now())
}

/// [`service_traffic`] at `now`.
pub(crate) fn traffic_at(service: &Service, now: chrono::DateTime<chrono::Utc>) -> Resolved {
    let latest = routed_revision(service);
    if service.rollout.is_empty() {
        return resolve(&service.traffic, latest);
    }
    resolve_rolled(&service.traffic, latest, |percent| latest_shares(service, now, percent))
}

/// How `percent` of the service's traffic, sent to `@latest`, splits at `now`: over the
/// revisions of its rollout, newest first, or all to the routed revision.
pub(crate) fn latest_shares(service: &Service, now: chrono::DateTime<chrono::Utc>, percent: u32) -> Vec<(String, u32)> {
    rollout::shares(
        &service.rollout,
        routed_revision(service),
        service.rollout_duration(),
        now,
        percent,
    )
}

/// When the service's traffic next moves by itself (a rollout's next step), if it will.
pub(crate) fn next_traffic_step(service: &Service, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let duration = service.rollout_duration();
    rollout::ends_at(&service.rollout, routed_revision(service), duration, now)?;
    // A percent of the way at a time, but at most a second apart and at least 100 ms.
    Some((duration / 100).clamp(Duration::from_millis(100), Duration::from_secs(1)))
}

/// Instances a revision should have now: a revision that takes traffic (a share or a tag) has
/// what the autoscaler decided (its initial scale until it first got there); the latest
/// revision, until it is ready, has its initial scale; every other revision none. Whatever
/// that says, a revision with requests waiting gets at least one: they were routed to it
/// (perhaps just before the route moved on), and nothing else will ever serve them.
pub(super) fn desired_instances(
    service: &Service,
    revision: &Revision,
    autoscaled: Option<u32>,
    waiting: usize,
) -> u32 {
    let initial = revision.template.scale.initial_instances();
    let traffic = service_traffic(service);
    let wanted = if traffic.routes_to(&revision.name) {
        autoscaled.unwrap_or(initial)
    } else if revision.name == service.latest_revision
        && service.latest_ready_revision.as_deref() != Some(revision.name.as_str())
    {
        initial
    } else {
        0
    };
    if waiting > 0 {
        wanted.max(super::autoscale::waking(&revision.template.scale))
    } else {
        wanted
    }
}

/// The route of `service` from its traffic, over the revisions live in `state`, with its
/// visibility.
pub(super) fn route_for(service: &Service, state: &State) -> Option<ServiceRoute> {
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
    Some(ServiceRoute::new(split, tags).cluster_local(is_cluster_local(&service.labels)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use rouse_api::RevisionTemplate;

    #[test]
    fn routed_and_desired_follow_the_latest_ready_revision() {
        let now = Utc::now();
        let (mut svc, first) = Service::create("hello", RevisionTemplate::new("a"), now);
        assert_eq!(routed_revision(&svc), "hello-00001");
        assert_eq!(desired_instances(&svc, &first, None, 0), 1);
        let second = svc.update(RevisionTemplate::new("b"), now).unwrap();
        svc.latest_ready_revision = Some(first.name.clone());
        // While the new revision starts, the old one keeps serving.
        assert_eq!(routed_revision(&svc), "hello-00001");
        assert_eq!(desired_instances(&svc, &first, Some(3), 0), 3);
        assert_eq!(
            desired_instances(&svc, &second, Some(5), 0),
            1,
            "initial scale while rolling out"
        );
        svc.latest_ready_revision = Some(second.name.clone());
        assert_eq!(desired_instances(&svc, &first, Some(3), 0), 0);
        assert_eq!(
            desired_instances(&svc, &first, Some(3), 2),
            1,
            "requests still wait for it"
        );
        assert_eq!(
            desired_instances(&svc, &second, Some(0), 0),
            0,
            "the autoscaler may take it to zero"
        );
    }
}
