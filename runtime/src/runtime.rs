//! The seam between Rouse and whatever runs containers.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use crate::error::RuntimeError;
use crate::image::{ImageInfo, PullProgress, RegistryAuth};
use crate::instance::{Answer, Check, Instance, InstanceExit, InstanceSpec, LogLine, LogOptions, Readiness};

/// A stream of log lines of one instance.
pub type Logs = BoxStream<'static, Result<LogLine, RuntimeError>>;

/// Runs instances. Docker today; a Kubernetes backend implements the same trait.
///
/// Implementations only ever see and touch instances labelled with their own home id.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// What `image` names in the local engine now, or `None` when the engine lacks it (no
    /// pull is attempted).
    async fn resolve_image(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError>;

    /// Pulls `image` from its registry with `auth`, reporting progress as it goes; the
    /// stream ends after the last step, or with a [`RuntimeError::Pull`] saying why not.
    fn pull(&self, image: &str, auth: Option<RegistryAuth>) -> BoxStream<'static, Result<PullProgress, RuntimeError>>;

    /// Builds the tar `context` with the Dockerfile at `dockerfile` (a path inside it) and
    /// tags the image `tag`, reporting the build's output as it goes; the stream ends after
    /// the last step, or with a [`RuntimeError::Build`] saying which step failed and why.
    fn build(
        &self,
        context: bytes::Bytes,
        dockerfile: &str,
        tag: &str,
    ) -> BoxStream<'static, Result<String, RuntimeError>>;

    /// Creates and starts an instance. Returns once the process runs and its endpoint is
    /// known; it may not answer HTTP yet (see [`Runtime::wait_ready`]).
    async fn create(&self, spec: &InstanceSpec) -> Result<Instance, RuntimeError>;

    /// One attempt of `check` against a running instance, of at most `timeout`.
    async fn check(&self, instance: &Instance, check: &Check, timeout: Duration) -> Answer;

    /// Probes the instance until it passes `readiness`'s check, it exits, or `timeout` passes.
    async fn wait_ready(
        &self,
        instance: &Instance,
        readiness: &Readiness,
        timeout: Duration,
    ) -> Result<(), RuntimeError>;

    /// All instances of this home, in any state.
    async fn list(&self) -> Result<Vec<Instance>, RuntimeError>;

    /// One instance, or `None` when it no longer exists.
    async fn inspect(&self, id: &str) -> Result<Option<Instance>, RuntimeError>;

    /// SIGTERM, then SIGKILL after `grace`, then removes the instance. Idempotent: an
    /// instance that is already gone is not an error.
    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;

    /// Freezes a running instance (memory kept, no CPU).
    async fn pause(&self, id: &str) -> Result<(), RuntimeError>;

    /// Thaws a frozen instance.
    async fn unpause(&self, id: &str) -> Result<(), RuntimeError>;

    /// Memory the instance uses now, in bytes (frozen instances keep theirs).
    async fn memory_usage(&self, id: &str) -> Result<u64, RuntimeError>;

    /// The address at which instances reach the host (`host.docker.internal`), when the host
    /// can listen on it; the daemon listens there too so that containers reach services and
    /// brokers. `None` when there is no such address.
    async fn host_gateway(&self) -> Option<std::net::IpAddr>;

    /// The instance's stdout and stderr.
    async fn logs(&self, id: &str, options: LogOptions) -> Result<Logs, RuntimeError>;

    /// Exits of this home's instances as they happen. The stream ends if the backend's event
    /// feed breaks; callers also resync with [`Runtime::list`] periodically.
    async fn exits(&self) -> Result<BoxStream<'static, InstanceExit>, RuntimeError>;
}
