//! What the control plane exports about revisions: instances wanted, running and ready,
//! requests in flight and queued, panic mode, and how long instances take to start.

use std::fmt::Write as _;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rouse_activator::RevisionLabels;

/// How an instance came to serve: started fresh, or thawed from frozen.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum StartPath {
    Fresh,
    Frozen,
}

impl EncodeLabelValue for StartPath {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            StartPath::Fresh => "fresh",
            StartPath::Frozen => "frozen",
        })
    }
}

/// Labels of a start.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StartLabels {
    service: String,
    revision: String,
    path: StartPath,
}

fn start_histogram() -> Histogram {
    // 5 ms to about 80 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Per-revision gauges and the instance start histogram.
#[derive(Clone, Debug)]
pub(crate) struct ServingMetrics {
    desired: Family<RevisionLabels, Gauge>,
    actual: Family<RevisionLabels, Gauge>,
    ready: Family<RevisionLabels, Gauge>,
    in_flight: Family<RevisionLabels, Gauge>,
    queued: Family<RevisionLabels, Gauge>,
    panic: Family<RevisionLabels, Gauge>,
    frozen: Family<RevisionLabels, Gauge>,
    starts: Family<StartLabels, Histogram, fn() -> Histogram>,
}

/// One revision's numbers at a sampling instant.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RevisionSample {
    pub desired: u32,
    pub actual: u32,
    pub ready: u32,
    pub in_flight: u32,
    pub queued: u32,
    pub frozen: u32,
    pub panicking: bool,
}

impl ServingMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            desired: Family::default(),
            actual: Family::default(),
            ready: Family::default(),
            in_flight: Family::default(),
            queued: Family::default(),
            panic: Family::default(),
            frozen: Family::default(),
            starts: Family::new_with_constructor(start_histogram),
        };
        let gauges = [
            (
                "rouse_revision_desired_instances",
                "Instances the autoscaler wants",
                &metrics.desired,
            ),
            (
                "rouse_revision_actual_instances",
                "Instances running (starting or ready)",
                &metrics.actual,
            ),
            (
                "rouse_revision_ready_instances",
                "Instances taking requests",
                &metrics.ready,
            ),
            (
                "rouse_revision_in_flight_requests",
                "Requests being handled by instances",
                &metrics.in_flight,
            ),
            (
                "rouse_revision_queued_requests",
                "Requests waiting in the activator's queue",
                &metrics.queued,
            ),
            (
                "rouse_revision_panic_mode",
                "1 while the autoscaler is in panic mode",
                &metrics.panic,
            ),
            (
                "rouse_revision_frozen_instances",
                "Instances frozen at zero",
                &metrics.frozen,
            ),
        ];
        for (name, help, family) in gauges {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "rouse_instance_start_seconds",
            "Cold start until the instance answers: path=fresh from create, path=frozen from thaw (its count is the thaw count)",
            metrics.starts.clone(),
        );
        metrics
    }

    fn labels(service: &str, revision: &str) -> RevisionLabels {
        RevisionLabels {
            service: service.to_string(),
            revision: revision.to_string(),
        }
    }

    /// Sets a revision's gauges.
    pub(crate) fn record(&self, service: &str, revision: &str, sample: RevisionSample) {
        let labels = Self::labels(service, revision);
        self.desired.get_or_create(&labels).set(i64::from(sample.desired));
        self.actual.get_or_create(&labels).set(i64::from(sample.actual));
        self.ready.get_or_create(&labels).set(i64::from(sample.ready));
        self.in_flight.get_or_create(&labels).set(i64::from(sample.in_flight));
        self.queued.get_or_create(&labels).set(i64::from(sample.queued));
        self.panic.get_or_create(&labels).set(i64::from(sample.panicking));
        self.frozen.get_or_create(&labels).set(i64::from(sample.frozen));
    }

    /// Forgets a deleted revision.
    pub(crate) fn forget(&self, service: &str, revision: &str) {
        let labels = Self::labels(service, revision);
        for family in [
            &self.desired,
            &self.actual,
            &self.ready,
            &self.in_flight,
            &self.queued,
            &self.panic,
            &self.frozen,
        ] {
            family.remove(&labels);
        }
        for path in [StartPath::Fresh, StartPath::Frozen] {
            self.starts.remove(&StartLabels {
                service: service.to_string(),
                revision: revision.to_string(),
                path,
            });
        }
    }

    /// Records how long an instance took to answer, from create or from thaw.
    pub(crate) fn instance_started(&self, service: &str, revision: &str, path: StartPath, seconds: f64) {
        let labels = StartLabels {
            service: service.to_string(),
            revision: revision.to_string(),
            path,
        };
        self.starts.get_or_create(&labels).observe(seconds);
    }
}

/// Secrets and config maps, by name: how many keys each has and how many bytes their values
/// take together, read from the store at each scrape; never a value.
#[derive(Debug)]
pub(crate) struct DataMetrics(pub(crate) std::sync::Arc<crate::data::DataStore>);

impl Collector for DataMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use rouse_api::secret::DataKind;
        let mut objects = Vec::new();
        for kind in [DataKind::Secret, DataKind::ConfigMap] {
            // A store that cannot be read now shows nothing rather than failing the scrape.
            objects.extend(self.0.summaries(kind).unwrap_or_default());
        }
        type Measure = fn(&rouse_api::secret::DataSummary) -> i64;
        let families: [(&str, &str, Measure); 2] = [
            ("rouse_data_keys", "Keys of each secret and config map", |o| {
                i64::try_from(o.keys.len()).unwrap_or(i64::MAX)
            }),
            (
                "rouse_data_bytes",
                "Bytes the values of each secret and config map take, all keys together",
                |o| i64::try_from(o.keys.values().sum::<usize>()).unwrap_or(i64::MAX),
            ),
        ];
        for (name, help, value) in families {
            let mut family = encoder.encode_descriptor(name, help, None, ConstGauge::<i64>::TYPE)?;
            for object in &objects {
                let kind = match object.kind {
                    DataKind::Secret => "secret",
                    DataKind::ConfigMap => "config_map",
                };
                let labels = [("kind", kind.to_string()), ("name", object.name.clone())];
                ConstGauge::new(value(object)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Tasks alive in the daemon's async runtime, read at each scrape: a leak of tasks (a
/// connection, a delivery or a tunnel that never ends) shows as a count that only grows. The
/// soak (bench/soak.py) reports it over time.
#[derive(Debug)]
pub(crate) struct RuntimeTasks(pub(crate) tokio::runtime::Handle);

impl Collector for RuntimeTasks {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tasks = i64::try_from(self.0.metrics().num_alive_tasks()).unwrap_or(i64::MAX);
        let gauge = ConstGauge::new(tasks);
        let metric = encoder.encode_descriptor(
            "rouse_runtime_tasks",
            "Tasks alive in the daemon's async runtime",
            None,
            ConstGauge::<i64>::TYPE,
        )?;
        gauge.encode(metric)
    }
}
