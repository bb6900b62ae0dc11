//! What the ingress counts: requests by service, revision and status, and their latency.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::endpoints::RevisionEndpoints;

/// Labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// Service name; empty when the host named none.
    pub service: String,
    /// Revision that served it; empty when none did.
    pub revision: String,
    /// HTTP status sent to the client.
    pub code: u16,
}

/// Labels of a revision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevisionLabels {
    pub service: String,
    pub revision: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 33 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// The ingress's metrics; cheap to clone (handles to shared families).
#[derive(Clone, Debug)]
pub struct IngressMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RevisionLabels, Histogram, fn() -> Histogram>,
}

impl IngressMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        };
        registry.register(
            "rouse_requests",
            "Requests answered by the ingress",
            metrics.requests.clone(),
        );
        registry.register(
            "rouse_request_duration_seconds",
            "Time from request to response head, through the ingress",
            metrics.latency.clone(),
        );
        metrics
    }

    /// Counts one request answered for `revision`.
    pub fn observe(&self, revision: &RevisionEndpoints, code: u16, seconds: f64) {
        let cached = revision.metrics.get_or_init(|| {
            let labels = RevisionLabels {
                service: revision.service.clone(),
                revision: revision.revision.clone(),
            };
            RevisionMetrics {
                ok: self.requests.get_or_create(&request_labels(revision, 200)).clone(),
                latency: self.latency.get_or_create(&labels).clone(),
            }
        });
        if code == 200 {
            cached.ok.inc();
        } else {
            self.requests.get_or_create(&request_labels(revision, code)).inc();
        }
        cached.latency.observe(seconds);
    }

    /// Counts one request that named no service.
    pub fn observe_unrouted(&self, code: u16) {
        let labels = RequestLabels {
            service: String::new(),
            revision: String::new(),
            code,
        };
        self.requests.get_or_create(&labels).inc();
    }
}

fn request_labels(revision: &RevisionEndpoints, code: u16) -> RequestLabels {
    RequestLabels {
        service: revision.service.clone(),
        revision: revision.revision.clone(),
        code,
    }
}

/// Handles on one revision's most used series: the hot path skips the label lookup.
#[derive(Debug)]
pub(crate) struct RevisionMetrics {
    ok: Counter,
    latency: Histogram,
}
