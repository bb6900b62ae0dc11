//! Errors of the runtime crate.

/// The engine's own error under a [`RuntimeError`], kept as a source for callers that look
/// deeper than the message.
pub type EngineError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong talking to the backend, naming the instance or image concerned.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The backend (Docker) cannot be reached.
    #[error("cannot reach Docker ({context}): {source}; is the Docker daemon running? (`docker info` checks)")]
    Unavailable {
        context: String,
        #[source]
        source: EngineError,
    },
    /// The image is not in the local image store.
    #[error(
        "image '{image}' is not in the local Docker; build it with `docker build -t {image} .` or check `docker images`"
    )]
    ImageNotFound { image: String },
    /// A pull from a registry failed.
    #[error("cannot pull '{image}': {}: {message}", .failure.explain())]
    Pull {
        image: String,
        failure: crate::image::PullFailure,
        message: String,
    },
    /// The instance must not run as root (`runAsNonRoot`) and its image would.
    #[error("image '{image}' cannot run with runAsNonRoot: {reason}; set a non-zero user id (--user, runAsUser)")]
    RunsAsRoot { image: String, reason: String },
    /// A build failed.
    #[error("building {tag} failed: {message}")]
    Build { tag: String, message: String },
    /// The instance exited while it was being started or probed.
    #[error("instance {instance} exited with code {code}")]
    Exited { instance: String, code: i64 },
    /// The instance did not pass its readiness check in time.
    #[error(
        "instance {instance} did not pass its check ({check}) on port {port} within {waited_ms} ms; last answer: {last}"
    )]
    NotReady {
        instance: String,
        port: u16,
        waited_ms: u128,
        check: String,
        last: String,
    },
    /// The instance could not be probed because this host ran out of something (file
    /// descriptors, ports, memory): no fault of the instance, and never counted against it.
    #[error("probe {instance}: this host is out of resources ({source}); the instance was not checked")]
    HostExhausted {
        instance: String,
        #[source]
        source: std::io::Error,
    },
    /// The instance is gone from the engine.
    #[error("{operation} {instance}: no such instance: it was removed (see `docker ps -a`)")]
    NoSuchInstance { operation: &'static str, instance: String },
    /// The container exists but belongs to no instance of this Rouse home.
    #[error(
        "{operation} {instance}: the container is not managed by this Rouse home (label {label}); left alone",
        label = crate::LABEL_HOME
    )]
    NotManaged { operation: &'static str, instance: String },
    /// The instance runs but has no address to dial.
    #[error("{operation} {instance}: the instance has no published port; is it running?")]
    NoEndpoint { operation: &'static str, instance: String },
    /// Any other backend failure, with the operation and instance it concerned.
    #[error("{operation} {instance}: {source}")]
    Backend {
        operation: &'static str,
        instance: String,
        #[source]
        source: EngineError,
    },
}
