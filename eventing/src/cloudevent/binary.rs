//! Binary mode: attributes as `ce-` headers with percent-encoded values, data as the body.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue, MaxSizeReached};
use http::{HeaderMap, Method, Request, Uri};

use super::{Event, Limits, Parts, SPEC_VERSION};
use crate::error::EventError;

/// The header whose presence marks a binary-mode message.
pub const SPEC_VERSION_HEADER: &str = "ce-specversion";
const PREFIX: &str = "ce-";

/// The event of a binary-mode message (request or response).
pub fn parse(headers: &HeaderMap, body: Bytes) -> Result<Event, EventError> {
    parse_limited(headers, body, Limits::default())
}

/// [`parse`] within `limits`.
pub(crate) fn parse_limited(headers: &HeaderMap, body: Bytes, limits: Limits) -> Result<Event, EventError> {
    let mut parts = Parts::new(limits);
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix(PREFIX) else {
            continue;
        };
        let value = percent_decode(value.as_bytes()).ok_or_else(|| EventError::HeaderValue(name.to_string()))?;
        parts.set(attribute, value)?;
    }
    // In binary mode the data's media type is the message's own Content-Type.
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let content_type = content_type
            .to_str()
            .map_err(|_| EventError::HeaderValue(header::CONTENT_TYPE.to_string()))?;
        parts.datacontenttype = Some(content_type.to_string());
    }
    if !body.is_empty() {
        parts.data = Some(body);
    }
    parts.finish()
}

/// A POST of `event` to `uri` in binary mode, the way subscribers expect deliveries.
///
/// Fails, rather than panicking as `HeaderMap::reserve` does, when the event has more
/// attributes than a header map holds (an event stored before the ingress limited them).
pub fn to_request(event: &Event, uri: Uri) -> Result<Request<Bytes>, MaxSizeReached> {
    let mut request = Request::new(event.data.clone().unwrap_or_default());
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.try_reserve(8 + event.extensions.len())?;
    headers.try_insert(SPEC_VERSION_HEADER, HeaderValue::from_static(SPEC_VERSION))?;
    headers.try_insert("ce-id", percent_encode(&event.id))?;
    headers.try_insert("ce-source", percent_encode(&event.source))?;
    headers.try_insert("ce-type", percent_encode(&event.ty))?;
    let optional = [
        ("ce-subject", &event.subject),
        ("ce-time", &event.time),
        ("ce-dataschema", &event.dataschema),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            headers.try_insert(name, percent_encode(value))?;
        }
    }
    for (name, value) in &event.extensions {
        // Names were checked when the event came in; one that is not a header token is skipped
        // rather than sent broken.
        if let Ok(name) = HeaderName::try_from(format!("{PREFIX}{name}")) {
            headers.try_insert(name, percent_encode(value))?;
        }
    }
    if let Some(content_type) = &event.datacontenttype
        && let Ok(value) = HeaderValue::from_str(content_type)
    {
        headers.try_insert(header::CONTENT_TYPE, value)?;
    }
    Ok(request)
}

/// Whether a byte of a UTF-8 value must be percent-encoded in a header (CloudEvents HTTP
/// binding 3.1.3.2: space, double quote, percent, and anything outside printable ASCII).
fn needs_encoding(b: u8) -> bool {
    !(0x21..=0x7e).contains(&b) || b == b'"' || b == b'%'
}

/// A header value for an attribute value, percent-encoded where the binding requires.
pub fn percent_encode(value: &str) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let encoded = if value.bytes().any(needs_encoding) {
        let mut out = Vec::with_capacity(value.len() + 8);
        for b in value.bytes() {
            if needs_encoding(b) {
                out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
            } else {
                out.push(b);
            }
        }
        out
    } else {
        value.as_bytes().to_vec()
    };
    // Every byte left is visible ASCII, which is always a valid header value.
    HeaderValue::from_maybe_shared(Bytes::from(encoded)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// An attribute value from a header: percent-decoded, then UTF-8. `None` when either fails.
pub fn percent_decode(value: &[u8]) -> Option<String> {
    if !value.contains(&b'%') {
        return String::from_utf8(value.to_vec()).ok();
    }
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let high = hex(*bytes.next()?)?;
            let low = hex(*bytes.next()?)?;
            out.push(high << 4 | low);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    const REQUIRED: [(&str, &str); 4] = [
        ("ce-specversion", "1.0"),
        ("ce-id", "42"),
        ("ce-source", "/tests"),
        ("ce-type", "dev.rouse.test"),
    ];

    #[test]
    fn headers_become_attributes_and_the_body_data() {
        let mut pairs = REQUIRED.to_vec();
        pairs.extend([
            ("content-type", "text/plain"),
            ("ce-subject", "hello%20world%E2%9C%93"),
            ("ce-myext", "a%22b"),
        ]);
        let event = parse(&request(&pairs), Bytes::from_static(b"payload")).unwrap();
        assert_eq!(event.id, "42");
        assert_eq!(event.ty, "dev.rouse.test");
        assert_eq!(event.subject.as_deref(), Some("hello world✓"));
        assert_eq!(event.extension("myext"), Some("a\"b"));
        assert_eq!(event.datacontenttype.as_deref(), Some("text/plain"));
        assert_eq!(event.data.as_deref(), Some(&b"payload"[..]));
    }

    #[test]
    fn each_missing_required_attribute_is_named() {
        for (skip, (header, _)) in REQUIRED.iter().enumerate() {
            let pairs: Vec<_> = REQUIRED
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, p)| *p)
                .collect();
            let error = parse(&request(&pairs), Bytes::new()).unwrap_err();
            assert_eq!(error, EventError::Missing(header.trim_start_matches("ce-")));
        }
    }

    #[test]
    fn bad_values_and_names_are_refused() {
        let mut pairs = REQUIRED.to_vec();
        pairs[0] = ("ce-specversion", "0.3");
        assert_eq!(
            parse(&request(&pairs), Bytes::new()),
            Err(EventError::SpecVersion("0.3".into()))
        );
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("ce-my_ext", "x"));
        assert_eq!(
            parse(&request(&pairs), Bytes::new()),
            Err(EventError::AttributeName("my_ext".into()))
        );
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("ce-time", "yesterday"));
        assert!(matches!(
            parse(&request(&pairs), Bytes::new()),
            Err(EventError::AttributeValue { name, .. }) if name == "time"
        ));
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("ce-x", "%zz"));
        assert_eq!(
            parse(&request(&pairs), Bytes::new()),
            Err(EventError::HeaderValue("ce-x".into()))
        );
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("ce-id", "43"));
        assert_eq!(
            parse(&request(&pairs), Bytes::new()),
            Err(EventError::Duplicate("id".into()))
        );
    }

    #[test]
    fn delivery_requests_carry_every_attribute_encoded() {
        let mut event = super::super::Event::new("1", "/s", "t");
        event.subject = Some("a b".into());
        event.datacontenttype = Some("application/json".into());
        event.set_extension("knativebrokerttl", "255");
        event.data = Some(Bytes::from_static(b"{}"));
        let request = to_request(&event, Uri::from_static("http://127.0.0.1:1/")).unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.headers()["ce-subject"], "a%20b");
        assert_eq!(request.headers()["ce-knativebrokerttl"], "255");
        assert_eq!(request.headers()["content-type"], "application/json");
        let (parts, body) = request.into_parts();
        assert_eq!(
            parse(&parts.headers, body).unwrap(),
            event,
            "a delivery parses back to the event"
        );
    }

    proptest! {
        /// Every event the ingress accepts, delivered in binary mode, parses back to itself.
        #[test]
        fn deliveries_parse_back_to_the_event(event in crate::cloudevent::tests::events()) {
            let request = to_request(&event, Uri::from_static("http://127.0.0.1:1/")).unwrap();
            let (parts, body) = request.into_parts();
            prop_assert_eq!(parse(&parts.headers, body), Ok(event));
        }

        /// Any `ce-` headers and body: an event or an error, never a panic.
        #[test]
        fn any_headers_get_an_answer(
            pairs in proptest::collection::vec(("ce-[a-z]{0,12}|content-type|ce-(specversion|id|source|type|time)", "[ -~]{0,20}"), 0..8),
            body in proptest::collection::vec(any::<u8>(), 0..50),
        ) {
            let mut headers = HeaderMap::new();
            for (name, value) in &pairs {
                if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
                    headers.append(name, value);
                }
            }
            if let Ok(event) = parse(&headers, Bytes::from(body)) {
                prop_assert!(event.data.as_ref().is_none_or(|data| !data.is_empty()), "empty data is no data");
            }
        }

        #[test]
        fn percent_encoding_round_trips(value in "\\PC*") {
            let encoded = percent_encode(&value);
            prop_assert!(encoded.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b) && *b != b'"'));
            prop_assert_eq!(percent_decode(encoded.as_bytes()), Some(value));
        }
    }
}
