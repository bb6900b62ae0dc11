//! Errors of the runtime crate.

/// What went wrong talking to the backend, naming the instance or image concerned.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The backend (Docker) cannot be reached.
    #[error("cannot reach Docker: {reason}; is the Docker daemon running? (`docker info` checks)")]
    Unavailable { reason: String },
    /// The image is not in the local image store.
    #[error(
        "image '{image}' is not in the local Docker; build it with `docker build -t {image} .` or check `docker images`"
    )]
    ImageNotFound { image: String },
    /// The instance exited while it was being started or probed.
    #[error("instance {instance} exited with code {code}")]
    Exited { instance: String, code: i64 },
    /// The instance did not answer HTTP in time.
    #[error("instance {instance} did not answer HTTP on port {port} within {waited_ms} ms")]
    NotReady {
        instance: String,
        port: u16,
        waited_ms: u128,
    },
    /// Any other backend failure, with the operation and instance it concerned.
    #[error("{operation} {instance}: {reason}")]
    Backend {
        operation: &'static str,
        instance: String,
        reason: String,
    },
}
