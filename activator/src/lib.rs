//! The ingress every request to a service goes through.
//!
//! This crate owns host routing (`hello.localhost` → service → revision), waiting for a ready
//! instance, picking one (least in-flight), the pooled HTTP proxy to instances, request
//! timeouts and the error responses clients see. It must not decide scale: it reports what it
//! sees and is told which instances exist.
//!
//! Layout, in reading order:
//! - `config`: limits and timeouts of the ingress.
//! - `host`: which service a `Host` header names.
//! - `endpoints`: the ready instances of one revision, their in-flight counts and the pick.
//! - `route`: the table from service name to the revision that serves it.
//! - `metrics`: requests and latency, for Prometheus.
//! - `proxy`: forwarding one request to one instance, streaming both bodies.
//! - `upstream`: HTTP/1.1 connections to an instance, pooled and driven by the request's task.
//! - `respond`: every error response a client can get, in one place.
//! - `stall`: timeouts for a client that stops sending a body or stops reading a response.
//! - `server`: the listener, connection limits and graceful shutdown.
//! - `fuzzing` (hidden): host routing, for the fuzz targets in `fuzz/`.

#![forbid(unsafe_code)]

mod config;
mod endpoints;
mod host;
mod metrics;
mod proxy;
mod respond;
mod route;
mod server;
mod stall;
mod upstream;

pub use config::{DEFAULT_SHUTDOWN_GRACE, IngressConfig};
pub use endpoints::{AcquireError, Endpoint, RevisionEndpoints};
pub use metrics::{IngressMetrics, RevisionLabels};
pub use proxy::Ingress;
pub use route::{RouteTable, ServiceRoute};
pub use server::{ConnectionLimits, serve, serve_ingress};
pub use stall::{BodyIdle, IdleBody};

/// Host routing, for the fuzz targets in `fuzz/` (a crate outside the workspace) and for
/// nothing else: not an API, hidden from the docs. Compiled always rather than behind a cargo
/// feature: it is one forwarding function, not worth a configuration of its own.
#[doc(hidden)]
pub mod fuzzing {
    /// The service a (lowercased) `Host` names under `domain`, or why the host is refused.
    pub fn service_for_host<'a>(host: &'a str, domain: &str) -> Result<Option<&'a str>, String> {
        crate::host::service_for_host(host, domain).map_err(|e| e.to_string())
    }
}
