//! The one error type of the control plane, and how the admin API reports it.

use std::io;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rouse_api::ValidationError;
use rouse_api::manifest::ManifestError;
use rouse_runtime::RuntimeError;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot {action} {path}: {source}")]
    Home {
        action: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("another rouse daemon{} already uses home {home}; stop it first or pick another --home", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyRunning { home: String, pid: Option<u32> },
    #[error("state store: {context}: {source}")]
    Store {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("config {path}: {reason}")]
    Config { path: String, reason: String },
    #[error(
        "cannot listen on {addr} for the {what}: {source}; is another program using it? pick another with --{what}"
    )]
    Bind {
        what: &'static str,
        addr: String,
        source: io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Manifest(Vec<ManifestError>),
    #[error("{kind} '{name}' not found; `{}` shows them", kind.listing())]
    NotFound { kind: ObjectKind, name: String },
    #[error("{kind} '{name}' {reason}")]
    Conflict {
        kind: ObjectKind,
        name: String,
        reason: ConflictReason,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Why an object cannot be changed or deleted as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConflictReason {
    /// A broker that triggers still name.
    #[error("still has triggers ({}); delete them first with `rouse trigger delete`", .0.join(", "))]
    HasTriggers(Vec<String>),
    /// The revision a service's traffic falls back to.
    #[error("is ready and serves {service}; deploy a new revision instead")]
    Serving { service: String },
    /// Created twice: `create` makes a new one, `update` changes one.
    #[error("already exists; change it with `rouse {command} update`, or delete it first")]
    Exists { command: &'static str },
}

/// What kind of object an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Service,
    Revision,
    Broker,
    Trigger,
    PingSource,
    Secret,
    ConfigMap,
}

impl From<rouse_api::secret::DataKind> for ObjectKind {
    fn from(kind: rouse_api::secret::DataKind) -> Self {
        match kind {
            rouse_api::secret::DataKind::Secret => ObjectKind::Secret,
            rouse_api::secret::DataKind::ConfigMap => ObjectKind::ConfigMap,
        }
    }
}

impl ObjectKind {
    /// The command that lists objects of this kind.
    pub fn listing(self) -> &'static str {
        match self {
            ObjectKind::Service => "rouse list",
            ObjectKind::Revision => "rouse revisions SERVICE",
            ObjectKind::Broker => "rouse broker list",
            ObjectKind::Trigger => "rouse trigger list",
            ObjectKind::PingSource => "rouse source ping list",
            ObjectKind::Secret => "rouse secret list",
            ObjectKind::ConfigMap => "rouse configmap list",
        }
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::Service => "service",
            ObjectKind::Revision => "revision",
            ObjectKind::Broker => "broker",
            ObjectKind::Trigger => "trigger",
            ObjectKind::PingSource => "ping source",
            ObjectKind::Secret => "secret",
            ObjectKind::ConfigMap => "config map",
        })
    }
}

impl ControlError {
    /// The store (or the event log) failed at `context`.
    pub(crate) fn store(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        ControlError::Store {
            context: context.into(),
            source: source.into(),
        }
    }

    /// No `kind` named `name`.
    pub fn not_found(kind: ObjectKind, name: impl Into<String>) -> Self {
        ControlError::NotFound {
            kind,
            name: name.into(),
        }
    }
}

/// The JSON body of every admin API error.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    pub error: String,
}

impl ControlError {
    pub fn status(&self) -> StatusCode {
        match self {
            ControlError::Invalid(_)
            | ControlError::Manifest(_)
            | ControlError::Runtime(RuntimeError::ImageNotFound { .. }) => StatusCode::BAD_REQUEST,
            ControlError::NotFound { .. } => StatusCode::NOT_FOUND,
            ControlError::Conflict { .. } | ControlError::AlreadyRunning { .. } => StatusCode::CONFLICT,
            ControlError::Runtime(RuntimeError::Unavailable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::Runtime(_) => StatusCode::BAD_GATEWAY,
            ControlError::Home { .. }
            | ControlError::Store { .. }
            | ControlError::Config { .. }
            | ControlError::Bind { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::warn!(error = %self, "admin API request failed");
        }
        (
            self.status(),
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response()
    }
}
