//! The autoscaler's glue: sampling each revision's demand and letting the KPA decide.

use std::sync::Arc;

use rouse_api::ScaleMetric;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::RevisionSample;
use rouse_autoscaler::Observation;

use super::phase::Phase;
use super::{SAMPLE_INTERVAL, Serving};

impl Serving {
    /// Samples every revision's demand and lets the KPA decide, until `shutdown`: every
    /// sampling interval, a decision every tick, and a decision at once when a request has to
    /// wait (so a revision at zero starts an instance without waiting for a tick).
    pub(crate) async fn run_autoscaler(self: Arc<Self>, shutdown: CancellationToken) {
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
                    // A revision that takes no traffic gets no decision, yet a waiting
                    // request needs an instance of it: the pass sees to that.
                    self.wake();
                }
            }
        }
    }

    /// Closes proxy connections that instances have not used for a while.
    pub(super) fn close_idle_connections(&self) {
        for revision in self.state().revisions.values() {
            revision.endpoints.close_idle_connections();
        }
    }

    /// Records each revision's current demand in its window.
    pub(super) fn sample(&self, now: Instant) {
        let mut state = self.state();
        for revision in state.revisions.values_mut() {
            let scaling = &mut revision.scaling;
            let value = match scaling.spec.metric {
                // What is in flight (or waiting) now, plus the average concurrency since the
                // last sample of the requests that finished in between: requests far shorter
                // than the tick are never in flight when it samples, yet are demand (Knative's
                // queue-proxy averages concurrency over time for the same reason).
                ScaleMetric::Concurrency => {
                    let busy = revision.endpoints.busy();
                    revision.endpoints.sampled(now);
                    let (before, at) = scaling.last_busy;
                    scaling.last_busy = (busy, now);
                    let elapsed = now.saturating_duration_since(at).as_secs_f64();
                    let finished = if elapsed > 0.0 {
                        busy.saturating_sub(before).as_secs_f64() / elapsed
                    } else {
                        0.0
                    };
                    revision.endpoints.demand() as f64 + finished
                }
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
            let ready = count(Phase::Ready);
            let sample = RevisionSample {
                desired: scaling
                    .desired
                    .unwrap_or(revision.revision.template.scale.initial_instances()),
                actual: revision.creating as u32 + count(Phase::Starting) + count(Phase::Thawing) + ready,
                ready,
                in_flight: revision.endpoints.in_flight() as u32,
                queued: revision.endpoints.waiting() as u32,
                frozen: count(Phase::Frozen),
                panicking: scaling.kpa.panicking(),
            };
            self.metrics
                .record(&revision.revision.service, &revision.revision.name, sample);
        }
    }

    /// One KPA decision per autoscaled revision; wakes the reconciler when one changed.
    pub(super) fn decide(&self, now: Instant) {
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
            // Requests are waiting and nothing runs: instances now (one, or activation-scale),
            // whatever the averages.
            if waiting > 0 && decision.desired == 0 {
                decision.desired = waking(&revision.revision.template.scale);
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
}

/// How many instances a wake from zero starts: activation-scale, within max-scale; else one.
pub(super) fn waking(scale: &rouse_api::ScaleBounds) -> u32 {
    let wanted = scale.activation_scale.unwrap_or(1).max(1);
    if scale.max > 0 { wanted.min(scale.max) } else { wanted }
}
