//! The control plane: what users declared, kept true.
//!
//! This crate owns the embedded state store, the reconciler that turns declared services into
//! running instances and routes, the admin HTTP API (JSON, bearer token), and recovery after a
//! restart (adopting this home's instances, removing undeclared ones). It must not format
//! terminal output: that is the CLI's job.
//!
//! Layout, in reading order:
//! - `home`: `$ROUSE_HOME`, its token, id, lock and address file.
//! - `config`: the `rouse.toml` file.
//! - `store`: services and revisions on disk.
//! - `metrics`: revision gauges and start times, for Prometheus.
//! - `serving`: the serving loop (observe, a pure plan, apply) and the live state of
//!   revisions and instances, one concept per file under `serving/`.
//! - `sinks`: where sinks are, for the daemon and for containers (`K_SINK`).
//! - `backoff`: restart delays for crashing instances.
//! - `apply`: `rouse apply`: a manifest's resources, checked all, then applied all.
//! - `eventing`: brokers, triggers and ping sources, declared and kept running.
//! - `describe`: status conditions and descriptions users read.
//! - `admin`: the admin API router.
//! - `daemon`: `rouse serve`, wiring it all.
//! - `error`: the one error type, and its HTTP form.

#![forbid(unsafe_code)]

mod admin;
mod apply;
mod backoff;
mod config;
mod daemon;
mod data;
mod describe;
mod error;
mod eventing;
mod home;
mod metrics;
mod serving;
mod sinks;
mod store;

pub use apply::{Applied, ApplyDocument, ApplyOutcome};
pub use config::Config;
pub use daemon::{DaemonOptions, run};
pub use error::{ConflictReason, ControlError, ObjectKind};
pub use home::{DaemonAddresses, Home};
