//! CloudEvents 1.0 as event-display reads them: binary mode (attributes in `ce-` headers,
//! percent-decoded), structured mode (one JSON object) and batches (a JSON array). An event is
//! printed the way Knative's event_display prints it, and listed at `GET /events` as a
//! structured-mode JSON object.
//!
//! The platform has its own, stricter CloudEvents code (`rouse-eventing`); a sample keeps to
//! what a user's app would write, so it is self-contained.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use bytes::Bytes;
use hyper::HeaderMap;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Map, Value};

/// The only CloudEvents version there is.
pub(crate) const SPEC_VERSION: &str = "1.0";
/// Media type of one structured-mode event.
const STRUCTURED: &str = "application/cloudevents+json";
/// Media type of a batch of structured-mode events.
const BATCH: &str = "application/cloudevents-batch+json";

/// One CloudEvent, attributes as received.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CloudEvent {
    pub(crate) id: String,
    pub(crate) source: String,
    /// The `type` attribute.
    pub(crate) ty: String,
    pub(crate) subject: Option<String>,
    pub(crate) time: Option<String>,
    pub(crate) dataschema: Option<String>,
    pub(crate) datacontenttype: Option<String>,
    /// Extension attributes by name: strings in binary mode, any JSON scalar in structured mode.
    pub(crate) extensions: BTreeMap<String, Value>,
    /// The payload's bytes; for JSON data in structured mode, the JSON text.
    pub(crate) data: Option<Bytes>,
}

/// The payload, read for people and for `GET /events`.
#[derive(Debug, PartialEq)]
enum Data {
    Json(Value),
    Text(String),
    Binary(Bytes),
}

/// The events a request carries, in whichever mode it uses.
pub(crate) fn from_request(headers: &HeaderMap, body: Bytes) -> Result<Vec<CloudEvent>, String> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let media = content_type.as_deref().map(media_type).unwrap_or_default();
    if media.eq_ignore_ascii_case(STRUCTURED) {
        return Ok(vec![structured(parse_json(&body)?)?]);
    }
    if media.eq_ignore_ascii_case(BATCH) {
        let Value::Array(events) = parse_json(&body)? else {
            return Err(format!("a {BATCH} body is a JSON array of events"));
        };
        return events.into_iter().map(structured).collect();
    }
    if headers.contains_key("ce-specversion") {
        return binary(headers, body).map(|event| vec![event]);
    }
    Err(format!(
        "not a CloudEvent: no ce-specversion header (binary mode) and Content-Type '{}' is not {STRUCTURED}",
        content_type.unwrap_or_default()
    ))
}

fn parse_json(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))
}

/// Binary mode: attributes from `ce-` headers, the data's type from Content-Type, the body as data.
fn binary(headers: &HeaderMap, body: Bytes) -> Result<CloudEvent, String> {
    let mut attributes = BTreeMap::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let value =
            percent_decode(value.as_bytes()).ok_or_else(|| format!("header {name} is not percent-encoded UTF-8"))?;
        if attributes.insert(attribute.to_string(), Value::String(value)).is_some() {
            return Err(format!("header {name} is given more than once"));
        }
    }
    if let Some(content_type) = headers.get(CONTENT_TYPE) {
        let content_type = content_type
            .to_str()
            .map_err(|_| "the Content-Type header is not ASCII".to_string())?;
        attributes.insert("datacontenttype".to_string(), Value::String(content_type.to_string()));
    }
    let data = (!body.is_empty()).then_some(body);
    from_attributes(attributes, data)
}

/// Structured mode: one JSON object with the attributes and `data` or `data_base64`.
fn structured(json: Value) -> Result<CloudEvent, String> {
    let Value::Object(mut object) = json else {
        return Err("a structured-mode event is a JSON object".to_string());
    };
    let data = object.remove("data");
    let data_base64 = object.remove("data_base64");
    let is_json_data = object
        .get("datacontenttype")
        .and_then(Value::as_str)
        .is_none_or(is_json);
    let data = match (data, data_base64) {
        (Some(_), Some(_)) => return Err("an event has data or data_base64, not both".to_string()),
        (Some(Value::String(text)), None) if !is_json_data => Some(Bytes::from(text)),
        (Some(value), None) => Some(Bytes::from(value.to_string())),
        (None, Some(Value::String(encoded))) => Some(Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("data_base64 is not base64: {e}"))?,
        )),
        (None, Some(_)) => return Err("data_base64 is a base64 string".to_string()),
        (None, None) => None,
    };
    from_attributes(object.into_iter().collect(), data)
}

/// Checks the required attributes and sorts the rest into context attributes and extensions.
fn from_attributes(mut attributes: BTreeMap<String, Value>, data: Option<Bytes>) -> Result<CloudEvent, String> {
    let mut text = |name: &str| -> Result<Option<String>, String> {
        match attributes.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("attribute {name} is a string, not {other}")),
        }
    };
    let specversion = text("specversion")?;
    if specversion.as_deref() != Some(SPEC_VERSION) {
        return Err(format!(
            "specversion is {}; only {SPEC_VERSION} is understood",
            specversion.map_or("missing".to_string(), |v| format!("'{v}'"))
        ));
    }
    let mut required = |name: &str| match text(name)? {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(format!("attribute {name} is required")),
    };
    let (id, source, ty) = (required("id")?, required("source")?, required("type")?);
    Ok(CloudEvent {
        id,
        source,
        ty,
        subject: text("subject")?,
        time: text("time")?,
        dataschema: text("dataschema")?,
        datacontenttype: text("datacontenttype")?,
        extensions: attributes,
        data,
    })
}

/// The media type of a Content-Type value, without parameters.
fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Whether a media type says JSON: `application/json`, `text/json` or `*+json`.
fn is_json(content_type: &str) -> bool {
    let media = media_type(content_type).to_ascii_lowercase();
    media == "application/json" || media == "text/json" || media.ends_with("+json")
}

// === impl CloudEvent ===

impl CloudEvent {
    /// The payload as JSON when it says (or, untyped, turns out to be) JSON, else as text, else
    /// as bytes.
    fn data(&self) -> Option<Data> {
        let bytes = self.data.as_ref()?;
        if self.datacontenttype.as_deref().is_none_or(is_json)
            && let Ok(value) = serde_json::from_slice(bytes)
        {
            return Some(Data::Json(value));
        }
        Some(match std::str::from_utf8(bytes) {
            Ok(text) => Data::Text(text.to_string()),
            Err(_) => Data::Binary(bytes.clone()),
        })
    }

    /// The context attributes in the order Knative's event_display prints them.
    fn context(&self) -> Vec<(&'static str, &str)> {
        let attributes = [
            ("specversion", Some(SPEC_VERSION)),
            ("type", Some(self.ty.as_str())),
            ("source", Some(self.source.as_str())),
            ("subject", self.subject.as_deref()),
            ("id", Some(self.id.as_str())),
            ("time", self.time.as_deref()),
            ("dataschema", self.dataschema.as_deref()),
            ("datacontenttype", self.datacontenttype.as_deref()),
        ];
        attributes
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)))
            .collect()
    }

    /// The event for people, as Knative's event_display (the Go SDK's `Event.String()`) shows it.
    pub(crate) fn render(&self) -> String {
        let mut out = String::from("☁️  cloudevents.Event\nContext Attributes,\n");
        for (name, value) in self.context() {
            let _ = writeln!(out, "  {name}: {value}");
        }
        if !self.extensions.is_empty() {
            out.push_str("Extensions,\n");
            for (name, value) in &self.extensions {
                let _ = writeln!(out, "  {name}: {}", scalar(value));
            }
        }
        if let Some(data) = self.data() {
            out.push_str("Data,\n");
            let text = match data {
                Data::Json(value) => serde_json::to_string_pretty(&value).unwrap_or_default(),
                Data::Text(text) => text,
                Data::Binary(bytes) => format!(
                    "({} bytes, not UTF-8; base64) {}",
                    bytes.len(),
                    base64::engine::general_purpose::STANDARD.encode(&bytes)
                ),
            };
            for line in text.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        out
    }

    /// The event as a structured-mode JSON object: every attribute, and `data` as JSON or a
    /// string (`data_base64` when it is not UTF-8).
    pub(crate) fn to_json(&self) -> Value {
        let mut object = Map::new();
        for (name, value) in self.context() {
            object.insert(name.to_string(), Value::String(value.to_string()));
        }
        for (name, value) in &self.extensions {
            object.insert(name.clone(), value.clone());
        }
        match self.data() {
            None => {}
            Some(Data::Json(value)) => {
                object.insert("data".to_string(), value);
            }
            Some(Data::Text(text)) => {
                object.insert("data".to_string(), Value::String(text));
            }
            Some(Data::Binary(bytes)) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
                object.insert("data_base64".to_string(), Value::String(encoded));
            }
        }
        Value::Object(object)
    }
}

/// An extension's value as text: strings without their quotes.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// === percent-encoding (CloudEvents HTTP binding 3.1.3.2) ===

/// Whether a byte of a UTF-8 value is percent-encoded in a header: space, double quote, percent
/// and anything outside printable ASCII.
fn needs_encoding(b: u8) -> bool {
    !(0x21..=0x7e).contains(&b) || b == b'"' || b == b'%'
}

/// A header value for an attribute value, percent-encoded where the binding requires.
pub(crate) fn percent_encode(value: &str) -> HeaderValue {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if needs_encoding(b) {
            let _ = write!(out, "%{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
    // Only visible ASCII is left, which is always a valid header value.
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// An attribute value from a header: percent-decoded, then UTF-8; `None` when either fails.
fn percent_decode(value: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let high = char::from(*bytes.next()?).to_digit(16)?;
            let low = char::from(*bytes.next()?).to_digit(16)?;
            out.push((high * 16 + low) as u8);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn one(headers: &HeaderMap, body: &str) -> CloudEvent {
        let mut events = from_request(headers, Bytes::from(body.to_string())).unwrap();
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    #[test]
    fn binary_mode_reads_headers_and_body() {
        let event = one(
            &headers(&[
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/shop"),
                ("ce-type", "order.created"),
                ("ce-region", "caf%C3%A9%20eu"),
                ("content-type", "application/json"),
            ]),
            r#"{"n": 1}"#,
        );
        assert_eq!((event.id.as_str(), event.ty.as_str()), ("1", "order.created"));
        assert_eq!(event.extensions["region"], json!("café eu"));
        assert_eq!(
            event.to_json(),
            json!({"specversion": "1.0", "id": "1", "source": "/shop", "type": "order.created",
                   "datacontenttype": "application/json", "region": "café eu", "data": {"n": 1}})
        );
    }

    #[test]
    fn structured_mode_keeps_json_and_text_data() {
        let structured = headers(&[("content-type", "application/cloudevents+json; charset=utf-8")]);
        let event = one(
            &structured,
            r#"{"specversion":"1.0","id":"2","source":"s","type":"t","ttl":3,"data":{"a":[1]}}"#,
        );
        assert_eq!(event.extensions["ttl"], json!(3));
        assert_eq!(event.to_json()["data"], json!({"a": [1]}));
        let event = one(
            &structured,
            r#"{"specversion":"1.0","id":"3","source":"s","type":"t","datacontenttype":"text/plain","data":"hi"}"#,
        );
        assert_eq!(event.data.as_deref(), Some(&b"hi"[..]));
        assert_eq!(event.to_json()["data"], json!("hi"));
        let event = one(
            &structured,
            r#"{"specversion":"1.0","id":"4","source":"s","type":"t","datacontenttype":"application/octet-stream","data_base64":"/wA="}"#,
        );
        assert_eq!(event.data.as_deref(), Some(&[0xff, 0][..]));
        assert_eq!(event.to_json()["data_base64"], json!("/wA="));
    }

    #[test]
    fn batches_hold_many_events() {
        let body = r#"[{"specversion":"1.0","id":"1","source":"s","type":"t"},
                       {"specversion":"1.0","id":"2","source":"s","type":"t"}]"#;
        let events = from_request(
            &headers(&[("content-type", "application/cloudevents-batch+json")]),
            Bytes::from(body),
        )
        .unwrap();
        assert_eq!(events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["1", "2"]);
    }

    #[test]
    fn what_is_not_a_cloudevent_is_refused_with_the_reason() {
        type Headers<'a> = &'a [(&'static str, &'a str)];
        let cases: [(Headers, &str, &str); 5] = [
            (&[("content-type", "text/plain")], "hi", "not a CloudEvent"),
            (
                &[
                    ("ce-specversion", "0.3"),
                    ("ce-id", "1"),
                    ("ce-source", "s"),
                    ("ce-type", "t"),
                ],
                "",
                "only 1.0",
            ),
            (
                &[("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "s")],
                "",
                "type is required",
            ),
            (
                &[("content-type", "application/cloudevents+json")],
                "{",
                "malformed JSON",
            ),
            (
                &[
                    ("ce-specversion", "1.0"),
                    ("ce-id", "%zz"),
                    ("ce-source", "s"),
                    ("ce-type", "t"),
                ],
                "",
                "percent-encoded",
            ),
        ];
        for (pairs, body, why) in cases {
            let err = from_request(&headers(pairs), Bytes::from(body)).unwrap_err();
            assert!(err.contains(why), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn events_render_like_knatives_event_display() {
        let event = one(
            &headers(&[
                ("ce-specversion", "1.0"),
                ("ce-id", "42"),
                ("ce-source", "/shop"),
                ("ce-type", "order.created"),
                ("ce-time", "2024-05-01T12:00:00Z"),
                ("ce-knativebrokerttl", "255"),
                ("content-type", "application/json"),
            ]),
            r#"{"msg":"Hello"}"#,
        );
        assert_eq!(
            event.render(),
            "☁️  cloudevents.Event\nContext Attributes,\n  specversion: 1.0\n  type: order.created\n  \
             source: /shop\n  id: 42\n  time: 2024-05-01T12:00:00Z\n  datacontenttype: application/json\n\
             Extensions,\n  knativebrokerttl: 255\nData,\n  {\n    \"msg\": \"Hello\"\n  }\n"
        );
    }

    #[test]
    fn percent_encoding_round_trips() {
        for value in ["plain", "with space", "100%", "\"quoted\"", "café ☕", "tab\there"] {
            let encoded = percent_encode(value);
            assert!(encoded.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b)), "{value}");
            assert_eq!(percent_decode(encoded.as_bytes()).as_deref(), Some(value));
        }
        assert_eq!(percent_encode("a b").to_str().unwrap(), "a%20b");
        assert_eq!(percent_decode(b"%e2%98%95").as_deref(), Some("☕"));
        assert_eq!(percent_decode(b"%2"), None);
    }
}
