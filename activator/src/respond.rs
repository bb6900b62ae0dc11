//! Every error response the ingress gives a client: one [`Refusal`] per reason, its status
//! chosen in one table ([`Refusal::status`]), and a one-line body that says what happened and
//! what to do.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::proxy::ProxyBody;

fn error(status: StatusCode, message: String) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(message + "\n"))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Why the ingress answers a request itself instead of passing on an instance's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The request carries no (readable) host at all.
    MissingHost,
    /// The host is not a host name.
    BadHost(crate::host::BadHost),
    /// The host names no service.
    UnknownHost { host: String, domain: String },
    /// The request body is larger than the ingress accepts.
    BodyTooLarge { limit: u64 },
    /// The client stopped sending its request body midway.
    BodyIdle { timeout: Duration },
    /// Too many requests are already waiting for the revision.
    QueueFull { revision: String },
    /// The revision was removed (its service deleted or redeployed) while the request waited.
    RevisionGone { revision: String },
    /// No instance became available within the request timeout.
    NoInstance { revision: String, timeout: Duration },
    /// The instance did not answer within the request timeout.
    NoAnswer { revision: String, timeout: Duration },
    /// The instance failed while handling the request.
    InstanceFailed {
        revision: String,
        instance: String,
        cause: String,
    },
}

impl Refusal {
    /// The one table of statuses.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Refusal::MissingHost | Refusal::BadHost(_) => StatusCode::BAD_REQUEST,
            Refusal::UnknownHost { .. } => StatusCode::NOT_FOUND,
            Refusal::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BodyIdle { .. } => StatusCode::REQUEST_TIMEOUT,
            Refusal::QueueFull { .. } | Refusal::RevisionGone { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::NoInstance { .. } | Refusal::NoAnswer { .. } => StatusCode::GATEWAY_TIMEOUT,
            Refusal::InstanceFailed { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// What the client reads.
    pub(crate) fn message(&self) -> String {
        match self {
            Refusal::MissingHost => "request has no Host header; send Host: NAME.localhost".to_string(),
            Refusal::BadHost(why) => format!("invalid Host header: {why}"),
            Refusal::UnknownHost { host, domain } => {
                format!(
                    "no service answers at host '{host}'; services answer at http://NAME.{domain} (see `rouse list`)"
                )
            }
            Refusal::BodyTooLarge { limit } => format!("request body exceeds the ingress limit of {limit} bytes"),
            Refusal::BodyIdle { timeout } => crate::stall::BodyIdle(*timeout).to_string(),
            Refusal::QueueFull { revision } => {
                format!("revision {revision} is overloaded: its request queue is full; retry later")
            }
            Refusal::RevisionGone { revision } => {
                format!("revision {revision} was removed while the request waited for it; retry")
            }
            Refusal::NoInstance { revision, timeout } => format!(
                "revision {revision}: no instance became ready within the request timeout of {}s",
                timeout.as_secs()
            ),
            Refusal::NoAnswer { revision, timeout } => format!(
                "revision {revision}: the instance did not answer within the request timeout of {}s",
                timeout.as_secs()
            ),
            Refusal::InstanceFailed {
                revision,
                instance,
                cause,
            } => format!("revision {revision}: instance {instance} failed during the request: {cause}"),
        }
    }

    /// The response: the status, and the message as plain text.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        error(self.status(), self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_status() {
        let revision = || "web-00001".to_string();
        let timeout = Duration::from_secs(300);
        let table = [
            (Refusal::MissingHost, 400),
            (Refusal::BadHost(crate::host::BadHost::EmptyLabel), 400),
            (
                Refusal::UnknownHost {
                    host: "x".into(),
                    domain: "localhost".into(),
                },
                404,
            ),
            (Refusal::BodyTooLarge { limit: 1 }, 413),
            (Refusal::BodyIdle { timeout }, 408),
            (Refusal::QueueFull { revision: revision() }, 503),
            (Refusal::RevisionGone { revision: revision() }, 503),
            (
                Refusal::NoInstance {
                    revision: revision(),
                    timeout,
                },
                504,
            ),
            (
                Refusal::NoAnswer {
                    revision: revision(),
                    timeout,
                },
                504,
            ),
            (
                Refusal::InstanceFailed {
                    revision: revision(),
                    instance: "i".into(),
                    cause: "reset".into(),
                },
                502,
            ),
        ];
        for (refusal, status) in table {
            assert_eq!(refusal.status().as_u16(), status, "{refusal:?}");
            assert!(refusal.message().len() > 10);
        }
    }
}
