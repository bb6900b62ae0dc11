//! CloudEvents 1.0: the event, its validation, and its HTTP binding.
//!
//! The event is our own small type rather than `cloudevents-sdk`'s: the SDK parses `data` into
//! a JSON tree, has no batch mode, does not percent-decode header values and has no size
//! limits, so it would need wrapping at every edge anyway. Here `data` stays the bytes the
//! sender sent (a slice of the request body, never copied), which is what the broker stores
//! and forwards.
//!
//! - [`binary`]: binary mode, attributes in `ce-` headers (requests in, deliveries out).
//! - [`structured`]: structured and batched JSON.
//! - [`record`]: the compact form an event has in the event log.

pub mod binary;
pub(crate) mod record;
pub(crate) mod structured;

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderMap, header};

use crate::error::EventError;

/// The only CloudEvents version accepted and sent.
pub(crate) const SPEC_VERSION: &str = "1.0";
/// Knative's hop counter: set by the ingress when absent, decremented on every reply.
pub(crate) const TTL_EXTENSION: &str = "knativebrokerttl";
/// Hops an event may take when its sender gave no TTL (Knative's default).
pub(crate) const DEFAULT_TTL: u32 = 255;

/// Hops an event may take at most: a sender's larger TTL is lowered to this (Knative's
/// default, so a reply loop ends after at most this many hops whatever the sender said).
pub(crate) const MAX_TTL: u32 = 255;
/// Context attributes of CloudEvents 1.0 (all but extensions).
const CONTEXT_ATTRIBUTES: usize = 8;

/// Limits on an event's shape, enforced while it is read, so that nothing accepted is
/// undeliverable for its shape and a request costs memory in proportion to what is allowed,
/// not to what it claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most events in one batch.
    pub batch_events: usize,
    /// Most extension attributes in one event.
    pub extensions: usize,
    /// Most bytes of attribute names and values in one event.
    pub attribute_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        crate::config::EventingConfig::default().shape()
    }
}

/// Media type of one structured event.
pub(crate) const STRUCTURED: &str = "application/cloudevents+json";
/// Media type of a batch of structured events.
pub(crate) const BATCH: &str = "application/cloudevents-batch+json";

/// One CloudEvent (specversion 1.0), validated: required attributes present, names valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub source: String,
    /// The `type` attribute.
    pub ty: String,
    pub datacontenttype: Option<String>,
    pub dataschema: Option<String>,
    pub subject: Option<String>,
    /// RFC 3339, as sent (checked, not reformatted).
    pub time: Option<String>,
    /// Extension attributes by name (lowercase a-z0-9), values in their string form.
    pub extensions: BTreeMap<String, String>,
    /// The payload, as sent; its media type is `datacontenttype`.
    pub data: Option<Bytes>,
}

impl Event {
    /// An event with the required attributes and nothing else.
    pub fn new(id: impl Into<String>, source: impl Into<String>, ty: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            source: source.into(),
            ty: ty.into(),
            datacontenttype: None,
            dataschema: None,
            subject: None,
            time: None,
            extensions: BTreeMap::new(),
            data: None,
        }
    }

    /// Any attribute by name, context attributes and extensions alike (what filters see).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        match name {
            "specversion" => Some(SPEC_VERSION),
            "id" => Some(&self.id),
            "source" => Some(&self.source),
            "type" => Some(&self.ty),
            "datacontenttype" => self.datacontenttype.as_deref(),
            "dataschema" => self.dataschema.as_deref(),
            "subject" => self.subject.as_deref(),
            "time" => self.time.as_deref(),
            _ => self.extensions.get(name).map(String::as_str),
        }
    }

    /// Sets an extension. `name` must be a valid extension name (see [`is_extension_name`]);
    /// callers pass the crate's own constants (the broker TTL, ...).
    pub fn set_extension(&mut self, name: &str, value: impl Into<String>) {
        debug_assert!(is_extension_name(name), "invalid extension name {name}");
        self.extensions.insert(name.to_string(), value.into());
    }

    /// An extension's value.
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions.get(name).map(String::as_str)
    }

    /// The TTL extension as a number; `None` when absent or not a number.
    pub fn ttl(&self) -> Option<u32> {
        self.extension(TTL_EXTENSION).and_then(|v| v.trim().parse().ok())
    }

    /// Bytes the event takes (attributes and data), for size limits.
    pub fn size(&self) -> usize {
        let optional = [&self.datacontenttype, &self.dataschema, &self.subject, &self.time];
        self.id.len()
            + self.source.len()
            + self.ty.len()
            + optional
                .iter()
                .map(|v| v.as_ref().map_or(0, String::len))
                .sum::<usize>()
            + self.extensions.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + self.data.as_ref().map_or(0, Bytes::len)
    }
}

/// Whether `name` may name an extension: lowercase a-z and 0-9, and not a name CloudEvents
/// keeps for itself.
pub fn is_extension_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) && !is_reserved(name)
}

/// Context attribute names, and `data`, which no extension may take.
fn is_reserved(name: &str) -> bool {
    matches!(
        name,
        "specversion" | "id" | "source" | "type" | "datacontenttype" | "dataschema" | "subject" | "time" | "data"
    )
}

/// How a request carries its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Attributes in `ce-` headers, the body is the data.
    Binary,
    /// One event as `application/cloudevents+json`.
    Structured,
    /// A JSON array of events as `application/cloudevents-batch+json`.
    Batch,
}

/// The mode of a request, from its headers alone (so the body limit can depend on it).
pub(crate) fn mode(headers: &HeaderMap) -> Result<Mode, EventError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    if let Some(content_type) = &content_type {
        let media = media_type(content_type);
        if media.eq_ignore_ascii_case(STRUCTURED) {
            return Ok(Mode::Structured);
        }
        if media.eq_ignore_ascii_case(BATCH) {
            return Ok(Mode::Batch);
        }
        if starts_with_ignore_case(media, "application/cloudevents") {
            return Err(EventError::UnsupportedFormat(media.to_string()));
        }
    }
    if headers.contains_key(binary::SPEC_VERSION_HEADER) {
        return Ok(Mode::Binary);
    }
    Err(EventError::NotCloudEvent {
        content_type: content_type.map(|c| c.into_owned()).unwrap_or_default(),
    })
}

/// The events of a request (body already read and size-limited), in any mode.
pub(crate) fn from_request(
    mode: Mode,
    headers: &HeaderMap,
    body: Bytes,
    limits: Limits,
) -> Result<Vec<Event>, EventError> {
    match mode {
        Mode::Binary => Ok(vec![binary::parse_limited(headers, body, limits)?]),
        Mode::Structured => Ok(vec![structured::parse(&body, limits)?]),
        Mode::Batch => structured::parse_batch(&body, limits),
    }
}

/// The event a subscriber replied with, if any: a 2xx response in binary or structured mode.
/// A response with neither `ce-specversion` nor a CloudEvents Content-Type carries none.
pub(crate) fn from_response(headers: &HeaderMap, body: Bytes, limits: Limits) -> Result<Option<Event>, EventError> {
    match mode(headers) {
        Ok(Mode::Binary) => binary::parse_limited(headers, body, limits).map(Some),
        Ok(Mode::Structured) => structured::parse(&body, limits).map(Some),
        Ok(Mode::Batch) => Err(EventError::UnsupportedFormat(format!("{BATCH} (a reply is one event)"))),
        Err(EventError::NotCloudEvent { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The media type of a Content-Type value: without parameters and surrounding spaces.
fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Whether data of this media type is JSON (and so sits unquoted in a structured event).
fn is_json(media: &str) -> bool {
    let media = media_type(media);
    media.eq_ignore_ascii_case("application/json")
        || media.eq_ignore_ascii_case("text/json")
        || ends_with_ignore_case(media, "+json")
}

// Byte-wise: a media type may hold non-ASCII text, where slicing a `str` could split a character.
fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len() && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Whether `media` can be the Content-Type of a delivery as it is: printable ASCII (and tabs),
/// with no space at either end that a hop would trim. Binary mode, in which every event is
/// delivered, carries `datacontenttype` as that header, so anything else would be accepted
/// here and then lost or refused on the way to the subscriber. Media types are ASCII tokens
/// (RFC 9110), so no sender's valid type is refused.
fn is_header_media_type(media: &str) -> bool {
    media.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        && !media.starts_with([' ', '\t'])
        && !media.ends_with([' ', '\t'])
}

/// Attributes collected from a request, before validation.
#[derive(Default)]
struct Parts {
    limits: Limits,
    /// Bytes of attribute names and values so far.
    attribute_bytes: usize,
    specversion: Option<String>,
    id: Option<String>,
    source: Option<String>,
    ty: Option<String>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    subject: Option<String>,
    time: Option<String>,
    extensions: BTreeMap<String, String>,
    data: Option<Bytes>,
}

impl Parts {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Records one attribute; refuses invalid names, attributes given twice, and more
    /// attributes than the limits allow.
    fn set(&mut self, name: &str, value: String) -> Result<(), EventError> {
        self.attribute_bytes += name.len() + value.len();
        if self.attribute_bytes > self.limits.attribute_bytes {
            return Err(EventError::AttributesTooLarge {
                limit: self.limits.attribute_bytes,
            });
        }
        let slot = match name {
            "specversion" => &mut self.specversion,
            "id" => &mut self.id,
            "source" => &mut self.source,
            "type" => &mut self.ty,
            "datacontenttype" => &mut self.datacontenttype,
            "dataschema" => &mut self.dataschema,
            "subject" => &mut self.subject,
            "time" => &mut self.time,
            "data" => return Err(EventError::ReservedName(name.to_string())),
            _ => {
                if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) || name.is_empty() {
                    return Err(EventError::AttributeName(name.to_string()));
                }
                if self.extensions.insert(name.to_string(), value).is_some() {
                    return Err(EventError::Duplicate(name.to_string()));
                }
                if self.extensions.len() > self.limits.extensions {
                    return Err(EventError::TooManyExtensions {
                        limit: self.limits.extensions,
                    });
                }
                return Ok(());
            }
        };
        if slot.replace(value).is_some() {
            return Err(EventError::Duplicate(name.to_string()));
        }
        Ok(())
    }

    /// Checks the required attributes and their values.
    fn finish(self) -> Result<Event, EventError> {
        let specversion = self.specversion.ok_or(EventError::Missing("specversion"))?;
        if specversion != SPEC_VERSION {
            return Err(EventError::SpecVersion(specversion));
        }
        let required = |value: Option<String>, name| value.filter(|v| !v.is_empty()).ok_or(EventError::Missing(name));
        let id = required(self.id, "id")?;
        let source = required(self.source, "source")?;
        let ty = required(self.ty, "type")?;
        if let Some(media) = &self.datacontenttype
            && !is_header_media_type(media)
        {
            return Err(EventError::AttributeValue {
                name: "datacontenttype".to_string(),
                reason: format!(
                    "'{}' is not a media type: write printable ASCII without surrounding spaces, like text/plain; charset=utf-8",
                    media.escape_debug()
                ),
            });
        }
        if let Some(time) = &self.time
            && chrono::DateTime::parse_from_rfc3339(time).is_err()
        {
            return Err(EventError::AttributeValue {
                name: "time".to_string(),
                reason: format!("'{time}' is not an RFC 3339 timestamp (like 2024-05-01T12:00:00Z)"),
            });
        }
        Ok(Event {
            id,
            source,
            ty,
            datacontenttype: self.datacontenttype,
            dataschema: self.dataschema,
            subject: self.subject,
            time: self.time,
            extensions: self.extensions,
            // Empty data is no data: binary mode, in which events are delivered, cannot tell
            // them apart, so an event keeps the form its deliveries give it.
            data: self.data.filter(|data| !data.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn mode_follows_content_type_case_insensitively_with_parameters() {
        let structured = headers(&[("content-type", "Application/CloudEvents+JSON; charset=utf-8")]);
        assert_eq!(mode(&structured), Ok(Mode::Structured));
        let batch = headers(&[("content-type", " application/cloudevents-batch+json ")]);
        assert_eq!(mode(&batch), Ok(Mode::Batch));
        let binary = headers(&[("content-type", "text/plain"), ("ce-specversion", "1.0")]);
        assert_eq!(mode(&binary), Ok(Mode::Binary));
        let avro = headers(&[("content-type", "application/cloudevents+avro")]);
        assert!(matches!(mode(&avro), Err(EventError::UnsupportedFormat(_))));
        let plain = headers(&[("content-type", "text/plain")]);
        assert!(matches!(mode(&plain), Err(EventError::NotCloudEvent { .. })));
        let mut odd = HeaderMap::new();
        odd.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_bytes("applicatión/cloudevents+jsön".as_bytes()).unwrap(),
        );
        assert!(mode(&odd).is_err(), "non-ASCII media types are refused, not sliced");
    }

    #[test]
    fn json_media_types_are_recognised_byte_wise() {
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/vnd.api+JSON"));
        assert!(is_json("TEXT/JSON"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("ünïcödé+jsö"));
        assert!(!is_json("é"));
    }

    #[test]
    fn filters_see_context_attributes_and_extensions_by_name() {
        let mut event = Event::new("1", "/s", "t");
        event.set_extension("region", "eu");
        assert_eq!(event.attribute("type"), Some("t"));
        assert_eq!(event.attribute("specversion"), Some("1.0"));
        assert_eq!(event.attribute("region"), Some("eu"));
        assert_eq!(event.attribute("subject"), None);
    }

    #[test]
    fn extension_names_are_lowercase_alphanumerics_and_not_reserved() {
        assert!(is_extension_name("knativebrokerttl"));
        assert!(is_extension_name("x1"));
        assert!(!is_extension_name("X1"));
        assert!(!is_extension_name("my_ext"));
        assert!(!is_extension_name(""));
        assert!(!is_extension_name("data"));
        assert!(!is_extension_name("type"));
    }

    #[test]
    fn replies_without_cloudevent_headers_carry_no_event() {
        let plain = headers(&[("content-type", "text/plain")]);
        assert_eq!(
            from_response(&plain, Bytes::from_static(b"ok"), Limits::default()),
            Ok(None)
        );
        assert_eq!(
            from_response(&HeaderMap::new(), Bytes::new(), Limits::default()),
            Ok(None)
        );
    }

    /// Events as the ingress accepts them within the default limits: required attributes
    /// present, media types that are header values, RFC 3339 times, valid extension names,
    /// non-empty data. For the round-trip properties of `binary`, `structured` and `record`.
    pub(super) fn events() -> impl Strategy<Value = Event> {
        let media =
            "(text/plain|application/json|application/octet-stream|application/vnd\\.x\\+json)(; charset=utf-8)?";
        let time = "20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])";
        let required = ("\\PC{1,20}", "\\PC{1,20}", "\\PC{1,20}");
        let optional = (
            proptest::option::of(media),
            proptest::option::of("\\PC{0,20}"),
            proptest::option::of("\\PC{0,20}"),
            proptest::option::of(time),
        );
        let extensions = proptest::collection::btree_map(
            "[a-z0-9]{1,12}".prop_filter("not reserved", |n| is_extension_name(n)),
            "\\PC{0,20}",
            0..6,
        );
        let data = proptest::option::of(proptest::collection::vec(any::<u8>(), 1..200));
        (required, optional, extensions, data).prop_map(
            |((id, source, ty), (datacontenttype, dataschema, subject, time), extensions, data)| Event {
                id,
                source,
                ty,
                datacontenttype,
                dataschema,
                subject,
                time,
                extensions,
                data: data.map(Bytes::from),
            },
        )
    }

    proptest! {
        /// Any Content-Type and headers: a mode or an error, and any body in that mode: events
        /// or an error, never a panic.
        #[test]
        fn any_request_gets_an_answer(
            content_type in proptest::option::of("\\PC{0,40}|application/cloudevents(-batch)?\\+json"),
            binary in any::<bool>(),
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut headers = HeaderMap::new();
            if let Some(value) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                headers.insert(header::CONTENT_TYPE, value);
            }
            if binary {
                headers.insert(binary::SPEC_VERSION_HEADER, HeaderValue::from_static("1.0"));
            }
            if let Ok(mode) = mode(&headers) {
                let _ = from_request(mode, &headers, Bytes::from(body), Limits::default());
            }
        }

        /// A media type is accepted exactly when a delivery can carry it as its Content-Type.
        #[test]
        fn media_types_are_what_a_header_carries(media in "\\PC{0,30}|[ \\t]?[a-z/;= \\t\\x00-\\x1f\\x7f]{0,20}[ \\t]?") {
            let carried = HeaderValue::from_str(&media).is_ok_and(|v| v.to_str().ok() == Some(media.trim_matches([' ', '\t'])));
            prop_assert_eq!(is_header_media_type(&media), carried, "{:?}", media);
        }
    }
}
