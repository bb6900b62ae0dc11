//! How many instances a revision should have.
//!
//! This crate owns Knative's KPA decision: stable and panic windows over observed concurrency
//! (or requests per second), target × utilization per instance, panic mode, rate limits,
//! min/max scale and the scale-to-zero grace period. Everything here is a plain function of
//! (samples, config, now) with `now` passed in, so it is tested with a virtual clock. It never
//! touches Docker or sockets: the control plane gathers samples and applies decisions.
//!
//! Layout, in reading order:
//! - `config`: the `[autoscaler]` table (Knative's config-autoscaler keys) and per-revision
//!   settings resolved from it.
//! - `window`: per-second buckets and their window averages.
//! - `kpa`: the decision itself.

#![forbid(unsafe_code)]

mod config;
mod kpa;
mod window;

pub use config::{AutoscalerConfig, ScalingSpec};
pub use kpa::{Decision, Kpa, Observation};
pub use window::Window;
