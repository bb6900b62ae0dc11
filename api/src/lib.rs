//! The resources Rouse manages, as users see them.
//!
//! This crate owns the resource types (services and their immutable revisions), their
//! validation at the edge, the Knative-shaped objects users read and write (`serving.knative.dev/v1`),
//! and the error type users see for bad input. It does no I/O.
//!
//! Layout, in reading order:
//! - [`name`]: resource names (DNS labels) and revision naming.
//! - [`template`]: a revision template (image, env, port, limits, scale bounds) and its validation.
//! - [`probe`]: startup, readiness and liveness probes, from YAML and kn's flags.
//! - [`quantity`]: Kubernetes CPU and memory quantities (`500m`, `128Mi`).
//! - [`secret`]: secrets and config maps, and their Kubernetes YAML.
//! - [`security`]: what a container's processes may do (`securityContext`).
//! - [`service`]: the `Service` and `Revision` records the daemon stores.
//! - [`traffic`]: traffic splits and tags, and resolving them to revisions.
//! - [`rollout`]: gradual rollouts of a new latest revision (`rollout-duration`).
//! - [`knative`]: the Knative-shaped objects printed by `describe -o json|yaml`.
//! - [`manifest`]: Knative YAML manifests (`rouse apply -f`), many documents, errors with their place.
//! - [`status`]: live state the admin API adds: revisions, instances, crashes.
//! - [`changes`]: what a revision changed against the one before it.
//! - [`annotations`]: Knative's autoscaling annotations, in and out.
//! - [`eventing`]: brokers, triggers (filters, delivery options) and ping sources.
//! - [`eventing_knative`]: the Knative-shaped Broker, Trigger and PingSource, in and out.
//! - [`duration`]: durations written as `"60s"`.
//! - [`error`]: [`ValidationError`], naming the field and the fix.

#![forbid(unsafe_code)]

pub mod annotations;
pub mod changes;
pub mod duration;
pub mod error;
pub mod eventing;
pub mod eventing_knative;
pub mod knative;
pub mod manifest;
pub mod name;
pub mod probe;
pub mod quantity;
pub mod rollout;
pub mod secret;
pub mod security;
pub mod service;
pub mod status;
pub mod template;
pub mod traffic;
pub mod volume;

pub use error::{ValidationError, error_chain};
pub use service::{Revision, Service};
pub use template::{EnvVar, PortProtocol, RevisionTemplate, ScaleBounds, ScaleMetric};
