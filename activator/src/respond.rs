//! Every error response the ingress gives a client, with its status and a one-line body
//! that says what happened.

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

/// 404: the host names no service.
pub fn unknown_host(host: &str, domain: &str) -> Response<ProxyBody> {
    error(
        StatusCode::NOT_FOUND,
        format!("no service answers at host '{host}'; services answer at http://NAME.{domain} (see `rouse list`)"),
    )
}

/// 400: the request carries no host at all.
pub fn missing_host() -> Response<ProxyBody> {
    error(
        StatusCode::BAD_REQUEST,
        "request has no Host header; send Host: NAME.localhost".to_string(),
    )
}

/// 503: too many requests are already waiting for the revision.
pub fn queue_full(revision: &str) -> Response<ProxyBody> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("revision {revision} is overloaded: its request queue is full; retry later"),
    )
}

/// 503: the revision was removed (its service deleted or redeployed) while the request waited.
pub fn revision_gone(revision: &str) -> Response<ProxyBody> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("revision {revision} was removed while the request waited for it; retry"),
    )
}

/// 504: no instance became available, or the instance did not answer, within the timeout.
pub fn timeout(revision: &str, timeout: Duration, waiting: bool) -> Response<ProxyBody> {
    let what = if waiting {
        "no instance became ready"
    } else {
        "the instance did not answer"
    };
    error(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "revision {revision}: {what} within the request timeout of {}s",
            timeout.as_secs()
        ),
    )
}

/// 502: the instance failed while handling the request.
pub fn instance_failed(revision: &str, instance: &str, cause: &str) -> Response<ProxyBody> {
    error(
        StatusCode::BAD_GATEWAY,
        format!("revision {revision}: instance {instance} failed during the request: {cause}"),
    )
}

/// 413: the request body is larger than the ingress accepts.
pub fn body_too_large(limit: u64) -> Response<ProxyBody> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body exceeds the ingress limit of {limit} bytes"),
    )
}
