//! Instances: one running copy of a revision's container.
//!
//! This crate owns the [`Runtime`] trait (create, ready-probe, stop, list, logs and exit events
//! of one instance) and its Docker implementation, [`DockerRuntime`]. It knows nothing about
//! services, traffic or scaling: callers hand it an [`InstanceSpec`] and get [`Instance`]s back.
//! Every instance carries labels (`rouse.managed`, `rouse.home`, `rouse.service`,
//! `rouse.revision`) so that a restarted daemon finds exactly its own instances again.
//!
//! Layout, in reading order:
//! - `instance`: the value types (spec, instance, state, log line, exit event).
//! - `image`: what an image reference names now, and the reference pinned to it.
//! - `runtime`: the trait every backend implements (Docker now, Kubernetes later).
//! - `probe`: probe attempts (HTTP, TCP, gRPC health) and probing until ready, shared by backends.
//! - `docker`: the Docker backend, via bollard.
//! - `memory` (feature `test-util`): an in-memory backend with injectable faults, for tests.
//! - `logs` (private): cutting a container's output chunks into lines.
//! - `error`: the one error type of this crate.

#![forbid(unsafe_code)]

mod docker;
mod error;
mod image;
mod instance;
mod logs;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
mod probe;
mod runtime;

pub use docker::{Dial, DockerRuntime};
pub use error::{EngineError, RuntimeError};
pub use image::{ImageInfo, PullFailure, PullProgress, RegistryAuth, is_pinned, repository, runs_as_root};
pub use instance::{
    Answer, Check, Instance, InstanceExit, InstanceSpec, InstanceState, LABEL_HOME, LABEL_INSTANCE, LABEL_MANAGED,
    LABEL_PORT, LABEL_REVISION, LABEL_SERVICE, LogLine, LogOptions, LogRotation, LogStream, Mount, MountFile,
    MountSource, Readiness, Resources, Security,
};
pub use runtime::{Logs, Runtime};
