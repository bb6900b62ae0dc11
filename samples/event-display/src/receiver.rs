//! What event-display does with each request: read the events, print them, remember them, and
//! answer 202, a reply event, or the failure `FAIL_FIRST` asks for.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;

use crate::cloudevent::{self, CloudEvent, SPEC_VERSION, percent_encode};

/// Largest request body read: far above any event a test sends, and a bound all the same.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The source of reply events.
const REPLY_SOURCE: &str = "event-display";

/// The knobs, read once from the environment at start.
#[derive(Clone, Debug)]
pub(crate) struct Knobs {
    /// `FAIL_FIRST`: how many event POSTs to fail before accepting any.
    pub(crate) fail_first: u64,
    /// `FAIL_STATUS`: the status those POSTs get (503 by default).
    pub(crate) fail_status: StatusCode,
    /// `REPLY_TYPE`: when set, each event is answered with a reply event of this type.
    pub(crate) reply_type: Option<String>,
}

impl Knobs {
    /// Reads `FAIL_FIRST`, `FAIL_STATUS` and `REPLY_TYPE`; an error names the variable and the fix.
    pub(crate) fn from_env() -> Result<Knobs, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let fail_first = match var("FAIL_FIRST") {
            None => 0,
            Some(n) => n
                .trim()
                .parse()
                .map_err(|_| format!("FAIL_FIRST={n:?} is not a count; set it to a whole number, e.g. 2"))?,
        };
        let fail_status = match var("FAIL_STATUS") {
            None => StatusCode::SERVICE_UNAVAILABLE,
            Some(s) => s
                .trim()
                .parse::<u16>()
                .ok()
                .and_then(|code| StatusCode::from_u16(code).ok())
                .filter(|code| !code.is_informational())
                .ok_or_else(|| format!("FAIL_STATUS={s:?} is not an HTTP status; set it to 200-599, e.g. 500"))?,
        };
        Ok(Knobs {
            fail_first,
            fail_status,
            reply_type: var("REPLY_TYPE"),
        })
    }
}

/// What the receiver remembers across requests.
#[derive(Default)]
struct State {
    /// Every event accepted so far, as structured-mode JSON, oldest first. Kept whole: a test
    /// instance lives for one test.
    events: Vec<Value>,
    /// Event POSTs answered with `FAIL_STATUS` so far.
    failed: u64,
}

/// The request handler; clones share one state.
#[derive(Clone)]
pub(crate) struct Receiver {
    /// The knobs, as read at start.
    knobs: Arc<Knobs>,
    /// Events kept and failures counted. A std mutex: it is held only to count, push or copy,
    /// never across an await.
    state: Arc<Mutex<State>>,
}

impl Receiver {
    pub(crate) fn new(knobs: Knobs) -> Self {
        Self {
            knobs: Arc::new(knobs),
            state: Arc::default(),
        }
    }

    /// Routes a request: `POST` (any path) takes events, `GET /events` lists them, any other
    /// `GET` answers 200 (readiness), anything else 405.
    pub(crate) async fn respond(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        match (request.method(), request.uri().path()) {
            (&Method::POST, _) => self.receive(request).await,
            (&Method::GET, "/events") => {
                let events = Value::Array(self.state().events.clone());
                let mut response = text(StatusCode::OK, format!("{events}\n"));
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
            (&Method::GET | &Method::HEAD, _) => text(
                StatusCode::OK,
                "event-display: POST CloudEvents here; GET /events lists those received\n".to_string(),
            ),
            (method, path) => text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} {path} is not served: POST events, GET /events to list them\n"),
            ),
        }
    }

    async fn receive(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => return refuse(format!("could not read the body (at most {MAX_BODY_BYTES} bytes): {e}")),
        };
        let events = match cloudevent::from_request(&parts.headers, body) {
            Ok(events) => events,
            Err(reason) => return refuse(reason),
        };
        for event in &events {
            print!("{}", event.render());
        }
        let failure = {
            let mut state = self.state();
            if state.failed < self.knobs.fail_first {
                state.failed += 1;
                Some(state.failed)
            } else {
                state.events.extend(events.iter().map(CloudEvent::to_json));
                None
            }
        };
        if let Some(n) = failure {
            let status = self.knobs.fail_status;
            println!(
                "event-display: answering {status} (FAIL_FIRST: failure {n} of {})",
                self.knobs.fail_first
            );
            return text(
                status,
                format!("failing on purpose: {n} of FAIL_FIRST={}\n", self.knobs.fail_first),
            );
        }
        match (&self.knobs.reply_type, events.as_slice()) {
            (Some(reply_type), [event]) => reply(event, reply_type),
            _ => text(StatusCode::ACCEPTED, String::new()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the list half-written; keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// 200 with a binary-mode reply: type `reply_type`, a new id, source `event-display`, the same data.
fn reply(event: &CloudEvent, reply_type: &str) -> Response<Full<Bytes>> {
    let id = new_id();
    println!("event-display: replying with event {id} of type {reply_type}");
    let mut response = Response::new(Full::new(event.data.clone().unwrap_or_default()));
    let headers = response.headers_mut();
    headers.insert("ce-specversion", HeaderValue::from_static(SPEC_VERSION));
    headers.insert("ce-id", percent_encode(&id));
    headers.insert("ce-source", HeaderValue::from_static(REPLY_SOURCE));
    headers.insert("ce-type", percent_encode(reply_type));
    if let Some(content_type) = event
        .datacontenttype
        .as_deref()
        .and_then(|ct| HeaderValue::from_str(ct).ok())
    {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    response
}

/// A random id in the UUID v4 layout.
fn new_id() -> String {
    let n = rand::random::<u128>() & !(0xf << 76) & !(0x3 << 62) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// 400 for a request that carries no valid CloudEvent, logged with its reason.
fn refuse(reason: String) -> Response<Full<Bytes>> {
    println!("event-display: refused a request: {reason}");
    text(StatusCode::BAD_REQUEST, format!("{reason}\n"))
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let empty = body.is_empty();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if !empty {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_uuids() {
        let id = new_id();
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(new_id(), id);
    }
}
