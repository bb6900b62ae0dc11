//! Starting instances, adopting the ones found after a restart, and what happens when one
//! is ready, exits or fails.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use rouse_activator::Endpoint;
use rouse_api::knative::timestamp;
use rouse_api::status::Crash;
use rouse_runtime::{Instance, InstanceSpec, LogOptions, RuntimeError, is_pinned};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::restart_delay;
use crate::metrics::StartPath;

use super::contract::{StartProbes, instance_spec, readiness};
use super::health::Watched;
use super::phase::Phase;
use super::state::{InstanceRecord, RevisionState, State};
use super::{ADOPT_PROBE_TIMEOUT, CRASH_LOG_LINES, Serving, spawn_in};

impl Serving {
    /// Follows the runtime's exit events until `shutdown`, handing each to the reconciler.
    pub(crate) async fn watch_exits(self: Arc<Self>, shutdown: CancellationToken) {
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

    pub(super) fn spawn_start(self: &Arc<Self>, state: &mut State, tasks: &mut JoinSet<()>, revision: &str) {
        let Some(rev) = state.revisions.get_mut(revision) else {
            return;
        };
        rev.creating += 1;
        let declared = rev.revision.clone();
        let probes = StartProbes::of(&rev.revision.template);
        let cancel = rev.cancel.clone();
        let generation = rev.generation;
        let service = declared.service.clone();
        *state.starting.entry(service.clone()).or_default() += 1;
        let serving = self.clone();
        let revision = revision.to_string();
        let span = tracing::info_span!("start", %service, %revision);
        spawn_in(tasks, span, async move {
            // Secrets and config maps are read as the instance starts: a changed one reaches
            // every instance started after the change.
            let spec = serving
                .data_of(&declared.template)
                .and_then(|data| instance_spec(&declared, &serving.config, &serving.sinks, &data));
            match spec {
                Ok(spec) => serving.start(&revision, generation, spec, &probes, cancel).await,
                Err(message) => serving.cannot_create(&revision, generation, "CreateContainerConfigError", message),
            }
            let mut state = serving.state();
            if let Some(n) = state.starting.get_mut(&service) {
                *n = n.saturating_sub(1);
            }
        });
    }

    /// Creates one instance, probes it until it answers, and makes it available.
    pub(super) async fn start(
        self: &Arc<Self>,
        revision: &str,
        generation: u64,
        spec: InstanceSpec,
        probes: &StartProbes,
        cancel: CancellationToken,
    ) {
        tracing::info!(%revision, "starting instance");
        let began = Instant::now();
        let created = match self.runtime.create(&spec).await {
            // A registry digest can be fetched again: the very image the revision was made
            // from, whatever its tag names now (no credentials here: a public or local
            // registry; a private one needs the image pulled or deployed again).
            Err(RuntimeError::ImageNotFound { image }) if image.contains("@sha256:") => {
                tracing::info!(%revision, %image, "the pinned image is gone from the engine; pulling it by digest");
                let mut pulling = self.runtime.pull(&image, None);
                let mut pulled = Ok(());
                while let Some(step) = pulling.next().await {
                    if let Err(e) = step {
                        pulled = Err(e);
                        break;
                    }
                }
                match pulled {
                    Ok(()) => self.runtime.create(&spec).await,
                    Err(e) => {
                        tracing::warn!(%revision, %image, error = %e, "the pinned image cannot be pulled by digest");
                        Err(RuntimeError::ImageNotFound { image })
                    }
                }
            }
            other => other,
        };
        let created = match created {
            Ok(instance) => instance,
            Err(e) => {
                let (reason, message) = match &e {
                    // Never something else in its place: the revision says so instead.
                    RuntimeError::ImageNotFound { image } if is_pinned(image) => (
                        "PinnedImageMissing",
                        format!(
                            "the image this revision is pinned to, {image}, is no longer in the local Docker \
                             (removed, or pruned after its tag moved on) and no registry gave it back; \
                             deploy again to pin what the tag names now"
                        ),
                    ),
                    // As kubelet names it: the container's config cannot be honoured.
                    RuntimeError::RunsAsRoot { .. } => ("CreateContainerConfigError", e.to_string()),
                    _ => ("CreateFailed", format!("cannot create an instance: {e}")),
                };
                self.cannot_create(revision, generation, reason, message);
                return;
            }
        };
        let recorded = {
            let mut state = self.state();
            match state.live(revision, generation) {
                Some(rev) => {
                    rev.creating = rev.creating.saturating_sub(1);
                    rev.instances
                        .push(InstanceRecord::new(&created, created.endpoint, Phase::Starting));
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
            result = self.until_started(&instance, probes, began) => result,
            () = cancel.cancelled() => return,
        };
        match probed {
            Ok(()) => {
                let seconds = began.elapsed().as_secs_f64();
                self.metrics
                    .instance_started(&instance.service, revision, StartPath::Fresh, seconds);
                self.instance_ready(revision, &instance);
            }
            // Not the instance's failure: no crash is counted, and the next pass starts
            // another once the host has room again.
            Err((_, RuntimeError::HostExhausted { source, .. })) => {
                tracing::warn!(%revision, instance = %instance.name, error = %source, "new instance not checked: this host is out of resources; it is replaced, no crash counted");
                self.stop_at_next_pass(revision, &instance.id, Phase::Starting);
            }
            Err((startup, e)) => {
                let (reason, code) = match &e {
                    RuntimeError::Exited { code, .. } => ("ContainerExited", Some(*code)),
                    RuntimeError::NotReady { .. } if startup => ("StartupProbeFailed", None),
                    RuntimeError::NotReady { .. } => ("NotReady", None),
                    _ => ("ProbeFailed", None),
                };
                self.instance_failed(revision, &instance.id, reason, e.to_string(), code)
                    .await;
            }
        }
    }

    /// Waits until a new instance has started (its startup probe passes, when it has one)
    /// and is ready (its readiness probe passes), each after its initial delay from `began`.
    /// The error says whether it was the startup probe that failed.
    async fn until_started(
        &self,
        instance: &Instance,
        probes: &StartProbes,
        began: Instant,
    ) -> Result<(), (bool, RuntimeError)> {
        if let Some((startup, budget)) = &probes.startup {
            tokio::time::sleep_until(began + probes.startup_delay).await;
            self.runtime
                .wait_ready(instance, startup, *budget)
                .await
                .map_err(|e| (true, e))?;
        }
        tokio::time::sleep_until(began + probes.readiness_delay).await;
        self.runtime
            .wait_ready(instance, &probes.readiness, self.config.ready_timeout)
            .await
            .map_err(|e| (false, e))
    }

    /// Re-admits an instance found running after a restart, once it answers a probe.
    pub(super) fn spawn_adopt(
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
            .push(InstanceRecord::new(&instance, Some(endpoint), Phase::Starting));
        let ready = readiness(&rev.revision.template);
        let serving = self.clone();
        let span = tracing::info_span!("adopt", revision = %instance.revision, instance = %instance.name);
        spawn_in(tasks, span, async move {
            match serving.runtime.wait_ready(&instance, &ready, ADOPT_PROBE_TIMEOUT).await {
                Ok(()) => serving.instance_ready(&instance.revision, &instance),
                // It was running before the restart; a host out of file descriptors proves
                // nothing against it.
                Err(RuntimeError::HostExhausted { source, .. }) => {
                    tracing::warn!(revision = %instance.revision, instance = %instance.name, error = %source, "adopted instance not checked: this host is out of resources; kept");
                    serving.instance_ready(&instance.revision, &instance);
                }
                Err(e) => {
                    serving
                        .instance_failed(&instance.revision, &instance.id, "NotReady", e.to_string(), None)
                        .await
                }
            }
        });
    }

    pub(super) fn instance_ready(self: &Arc<Self>, revision: &str, instance: &Instance) {
        let service = {
            let mut state = self.state();
            // Without an address it cannot take requests: it stays where it is.
            let Some(addr) = state
                .revisions
                .get(revision)
                .and_then(|r| r.instances.iter().find(|i| i.id == instance.id))
                .and_then(|i| i.endpoint)
            else {
                return;
            };
            let watch = state
                .revisions
                .get(revision)
                .and_then(|r| Some((r.cancel.clone(), Watched::of(&r.revision.template)?)));
            let Some(record) = state.advance(revision, &instance.id, &[Phase::Starting, Phase::Thawing], Phase::Ready)
            else {
                return;
            };
            if let Some((parent, watched)) = watch {
                record.watch = Some(self.spawn_watch(revision, instance, watched, &parent));
            }
            let slot = record
                .slot
                .get_or_insert_with(|| Endpoint::new(instance.id.clone(), instance.name.clone(), addr))
                .clone();
            let Some(rev) = state.revisions.get_mut(revision) else {
                return;
            };
            rev.failures = 0;
            rev.retry_at = None;
            rev.endpoints.add(slot);
            tracing::info!(%revision, instance = %instance.name, "instance ready");
            // As in Knative, a revision is ready once it has reached its initial scale.
            let ready = rev.instances.iter().filter(|i| i.phase == Phase::Ready).count();
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
                // With a rollout duration, the latest's traffic moves over gradually.
                svc.rollout = rouse_api::rollout::begin(
                    &svc.rollout,
                    svc.latest_ready_revision.as_deref(),
                    revision,
                    svc.rollout_duration(),
                    Utc::now(),
                );
                if !svc.rollout.is_empty() {
                    tracing::info!(%service, %revision, duration = ?svc.rollout_duration(), "rolling out gradually");
                }
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
    pub(crate) async fn instance_exited(self: &Arc<Self>, id: &str, code: Option<i64>) {
        let revision = {
            let state = self.state();
            state.revisions.iter().find_map(|(name, r)| {
                r.instances
                    .iter()
                    .find(|i| i.id == id && i.phase == Phase::Ready)
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
    pub(super) async fn instance_failed(
        self: &Arc<Self>,
        revision: &str,
        id: &str,
        reason: &str,
        message: String,
        code: Option<i64>,
    ) {
        let name = {
            let mut state = self.state();
            // Draining, freezing or frozen instances are on their way out already.
            let from = [Phase::Starting, Phase::Ready, Phase::Thawing];
            let Some(record) = state.advance(revision, id, &from, Phase::Stopping) else {
                return;
            };
            let name = record.name.clone();
            if let Some(rev) = state.revisions.get(revision) {
                rev.endpoints.remove(id);
            }
            state.stopping.insert(id.to_string());
            name
        };
        tracing::warn!(%revision, instance = %name, %reason, %message, "instance failed");
        let logs = self.last_logs(id).await;
        self.stop_record(revision, id).await;
        let mut state = self.state();
        let Some(rev) = state.revisions.get_mut(revision) else {
            return;
        };
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

    /// An instance could not be made: counted as a crash, so starts back off.
    fn cannot_create(&self, revision: &str, generation: u64, reason: &str, message: String) {
        let mut state = self.state();
        if let Some(rev) = state.live(revision, generation) {
            rev.creating = rev.creating.saturating_sub(1);
            tracing::warn!(%revision, reason, %message, "cannot create an instance");
            let crash = Crash {
                reason: reason.to_string(),
                message,
                exit_code: None,
                logs: Vec::new(),
                restarts: rev.failures + 1,
                at: timestamp(Utc::now()),
            };
            self.record_failure(rev, crash);
        }
    }

    /// The secrets and config maps `template` names, as they are now; the error says which
    /// cannot be read. Missing ones are left out: the contract says whether that is fine.
    fn data_of(&self, template: &rouse_api::RevisionTemplate) -> Result<Vec<rouse_api::secret::DataObject>, String> {
        let mut found: Vec<rouse_api::secret::DataObject> = Vec::new();
        for reference in template.data_refs() {
            if found
                .iter()
                .any(|o| o.kind == reference.kind && o.name == reference.name)
            {
                continue;
            }
            match self.data.get(reference.kind, &reference.name) {
                Ok(Some(object)) => found.push(object),
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(found)
    }

    pub(super) fn record_failure(&self, rev: &mut RevisionState, crash: Crash) {
        rev.failures += 1;
        let delay = restart_delay(rev.failures, self.config.crash_backoff, self.config.crash_backoff_max);
        rev.retry_at = Some(Instant::now() + delay);
        rev.last_crash = Some(crash);
        self.wake();
    }

    pub(super) async fn last_logs(&self, id: &str) -> Vec<String> {
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
