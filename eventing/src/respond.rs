//! Every response the broker ingress gives a sender, each with its status and a one-line body
//! that says what happened and what to do.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

use crate::error::{EventError, EventLogError};

fn message(status: StatusCode, message: String) -> Response {
    let mut response = Response::new(Body::from(message + "\n"));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// 202: the events are stored (on disk) and will be delivered.
pub(crate) fn accepted() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

/// 405: brokers take events by POST only.
pub(crate) fn method_not_allowed(method: &http::Method) -> Response {
    let mut response = message(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed: send events to a broker with POST"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// 404: no broker of that name (or a namespace other than `default`).
pub(crate) fn unknown_broker(namespace: &str, broker: &str) -> Response {
    let hint = if namespace == "default" {
        "check the name, or create the broker first".to_string()
    } else {
        format!("Rouse has one namespace, 'default' (not '{namespace}'): send to /default/{broker}")
    };
    message(
        StatusCode::NOT_FOUND,
        format!("broker '{broker}' not found in namespace '{namespace}'; {hint}"),
    )
}

/// 404: a path that is not `/{namespace}/{broker}`.
pub(crate) fn unknown_path(path: &str) -> Response {
    message(
        StatusCode::NOT_FOUND,
        format!("no broker at '{path}': the broker ingress answers at /default/BROKER"),
    )
}

/// 400 (413 for a limit on size): the request carries no valid CloudEvent.
pub(crate) fn invalid_event(error: &EventError) -> Response {
    message(error.status(), format!("invalid CloudEvent: {error}"))
}

/// 400: the body could not be read whole.
pub(crate) fn unreadable_body(cause: &str) -> Response {
    message(
        StatusCode::BAD_REQUEST,
        format!("could not read the request body: {cause}"),
    )
}

/// 413: the request, or one event in it, is over the limit.
pub(crate) fn too_large(what: &str, limit: usize) -> Response {
    message(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("{what} exceeds the limit of {limit} bytes; send smaller events (or raise [eventing] in rouse.toml)"),
    )
}

/// 503: the event log could not store the events (a full disk, shutting down); nothing was
/// stored, so the sender should retry, and a 202 is never given for what is not on disk.
pub(crate) fn store_failed(error: &EventLogError) -> Response {
    let mut response = message(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("events not stored, retry later: {error}"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
