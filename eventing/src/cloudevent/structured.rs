//! Structured mode: one event as a JSON object, or a batch as a JSON array of them.
//!
//! `data` is never parsed into a tree: serde borrows it as raw JSON text and the event's data
//! is that slice of the request body, so a large JSON payload costs one validation pass and
//! no copy.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{CONTEXT_ATTRIBUTES, Event, Limits, Parts, is_json};
use crate::error::EventError;

/// Standard base64, padded or not (senders differ).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One event from an `application/cloudevents+json` body.
pub(crate) fn parse(body: &Bytes, limits: Limits) -> Result<Event, EventError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let wire = WireSeed { limits }
        .deserialize(&mut json)
        .and_then(|wire| json.end().map(|()| wire))
        .map_err(|e| EventError::Json(e.to_string()))?;
    wire.into_event(body, limits)
}

/// The events of an `application/cloudevents-batch+json` body; any invalid event refuses the
/// whole batch (it is stored in one append, all or nothing).
///
/// Each element is turned into an event (and checked) as soon as it is read, and reading
/// stops at the first bad one or past the batch limit: a 16 MB body of `[{},{},...]` costs one
/// empty event's worth of work, not millions of pre-sized attribute lists.
pub(crate) fn parse_batch(body: &Bytes, limits: Limits) -> Result<Vec<Event>, EventError> {
    let mut failure = None;
    let mut json = serde_json::Deserializer::from_slice(body);
    let read = BatchVisitor {
        body,
        limits,
        failure: &mut failure,
    };
    let events = json
        .deserialize_seq(read)
        .and_then(|events| json.end().map(|()| events));
    match (events, failure) {
        (_, Some(failure)) => Err(failure),
        (Err(e), None) => Err(EventError::Json(e.to_string())),
        (Ok(events), None) if events.is_empty() => Err(EventError::EmptyBatch),
        (Ok(events), None) => Ok(events),
    }
}

/// Reads a batch's elements one at a time. An event that is bad for a reason of its own is
/// kept in `failure` (serde's errors carry only text) and ends the reading.
struct BatchVisitor<'b, 'f> {
    body: &'b Bytes,
    limits: Limits,
    failure: &'f mut Option<EventError>,
}

impl<'de> Visitor<'de> for BatchVisitor<'_, '_> {
    type Value = Vec<Event>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a batch of CloudEvents (a JSON array of objects)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Event>, A::Error> {
        let limits = self.limits;
        let mut events = Vec::new();
        while let Some(wire) = seq.next_element_seed(WireSeed { limits })? {
            let index = events.len();
            if index == limits.batch_events {
                *self.failure = Some(EventError::BatchTooLong {
                    limit: limits.batch_events,
                });
                return Err(de::Error::custom("batch too long"));
            }
            match wire.into_event(self.body, limits) {
                Ok(event) => events.push(event),
                Err(error) => {
                    *self.failure = Some(EventError::InBatch {
                        index,
                        error: Box::new(error),
                    });
                    return Err(de::Error::custom("invalid event"));
                }
            }
        }
        Ok(events)
    }
}

/// A structured event as read: attributes in order, data untouched.
struct Wire<'a> {
    attributes: Vec<(Cow<'a, str>, Value<'a>)>,
    /// Attributes past the limit were left unread.
    too_many: bool,
    data: Option<&'a RawValue>,
    data_base64: Option<Cow<'a, str>>,
}

/// An attribute value as JSON gives it; CloudEvents attributes are never objects, arrays or
/// fractions.
enum Value<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
    Null,
}

impl<'a> Wire<'a> {
    fn into_event(self, body: &Bytes, limits: Limits) -> Result<Event, EventError> {
        if self.too_many {
            return Err(EventError::TooManyExtensions {
                limit: limits.extensions,
            });
        }
        let mut parts = Parts::new(limits);
        for (name, value) in self.attributes {
            let value = match value {
                Value::Str(s) => s.into_owned(),
                // JSON null means the attribute is absent.
                Value::Null => continue,
                _ if is_context(&name) => {
                    return Err(EventError::AttributeValue {
                        name: name.into_owned(),
                        reason: "must be a JSON string".to_string(),
                    });
                }
                Value::Int(i) => i.to_string(),
                Value::Bool(b) => b.to_string(),
            };
            parts.set(&name, value)?;
        }
        let data = self.data.filter(|raw| raw.get() != "null");
        match (data, self.data_base64) {
            (Some(_), Some(_)) => return Err(EventError::BothData),
            (None, Some(encoded)) => {
                let decoded = BASE64
                    .decode(encoded.as_bytes())
                    .map_err(|e| EventError::Base64(e.to_string()))?;
                parts.data = Some(Bytes::from(decoded));
            }
            (Some(raw), None) => {
                let text = raw.get();
                let json = parts.datacontenttype.as_deref().is_none_or(is_json);
                if json {
                    // The JSON format's default media type for `data`.
                    parts
                        .datacontenttype
                        .get_or_insert_with(|| "application/json".to_string());
                    parts.data = Some(body.slice_ref(text.as_bytes()));
                } else if text.starts_with('"') {
                    // Text data of a non-JSON media type is the string's content.
                    let content: String = serde_json::from_str(text).map_err(|e| EventError::Json(e.to_string()))?;
                    parts.data = Some(Bytes::from(content));
                } else {
                    parts.data = Some(body.slice_ref(text.as_bytes()));
                }
            }
            (None, None) => {}
        }
        parts.finish()
    }
}

/// Context attributes, which are strings in JSON; extensions may also be numbers or booleans.
fn is_context(name: &str) -> bool {
    matches!(
        name,
        "specversion" | "id" | "source" | "type" | "datacontenttype" | "dataschema" | "subject" | "time"
    )
}

// === impl Deserialize ===

/// Reads one event's members, keeping at most as many attributes as the limits allow.
#[derive(Clone, Copy)]
struct WireSeed {
    limits: Limits,
}

impl<'de> DeserializeSeed<'de> for WireSeed {
    type Value = Wire<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for WireSeed {
    type Value = Wire<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CloudEvent (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Wire<'de>, A::Error> {
        let most = CONTEXT_ATTRIBUTES + self.limits.extensions;
        let mut wire = Wire {
            attributes: Vec::new(),
            too_many: false,
            data: None,
            data_base64: None,
        };
        while let Some(Key(key)) = map.next_key()? {
            match &*key {
                "data" => {
                    if wire.data.replace(map.next_value()?).is_some() {
                        return Err(de::Error::custom("member 'data' is given more than once"));
                    }
                }
                "data_base64" => match map.next_value()? {
                    Value::Str(encoded) => {
                        if wire.data_base64.replace(encoded).is_some() {
                            return Err(de::Error::custom("member 'data_base64' is given more than once"));
                        }
                    }
                    Value::Null => {}
                    _ => return Err(de::Error::custom("member 'data_base64' must be a string")),
                },
                _ if wire.attributes.len() >= most => {
                    // Read past (the JSON must still be well-formed), keep nothing.
                    wire.too_many = true;
                    map.next_value::<de::IgnoredAny>()?;
                }
                _ => wire.attributes.push((key, map.next_value()?)),
            }
        }
        Ok(wire)
    }
}

/// A member name, borrowed from the body unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(StrVisitor).map(Key)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

impl<'de> Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CloudEvents attribute value (a string, an integer or a boolean)")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Value::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Value::Str(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Value::Str(Cow::Owned(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large for a CloudEvents attribute")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "number {v} is not an integer; CloudEvents attributes have no fractions (send it as a string)"
        )))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse_str(json: &str) -> Result<Event, EventError> {
        parse(&Bytes::copy_from_slice(json.as_bytes()), Limits::default())
    }

    const BASE: &str = r#""specversion":"1.0","id":"1","source":"/s","type":"t""#;

    #[test]
    fn json_data_stays_the_senders_text() {
        let event = parse_str(&format!(r#"{{{BASE},"data":{{"a": [1, 2]}},"myext":7,"flag":true}}"#)).unwrap();
        assert_eq!(event.data.as_deref(), Some(&br#"{"a": [1, 2]}"#[..]));
        assert_eq!(event.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(event.extension("myext"), Some("7"));
        assert_eq!(event.extension("flag"), Some("true"));
    }

    #[test]
    fn string_data_of_a_text_type_is_the_strings_content() {
        let event = parse_str(&format!(
            r#"{{{BASE},"datacontenttype":"text/plain","data":"hi \"you\""}}"#
        ))
        .unwrap();
        assert_eq!(event.data.as_deref(), Some(&b"hi \"you\""[..]));
        let event = parse_str(&format!(
            r#"{{{BASE},"datacontenttype":"application/vnd.x+json","data":"hi"}}"#
        ))
        .unwrap();
        assert_eq!(
            event.data.as_deref(),
            Some(&b"\"hi\""[..]),
            "JSON media keeps the quotes"
        );
    }

    /// Found by fuzzing (`cloudevent_structured`): a non-ASCII `datacontenttype` was accepted,
    /// then sent as a delivery's Content-Type, which binary mode cannot read back.
    #[test]
    fn a_datacontenttype_that_is_no_header_is_refused() {
        let found = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain; charset=uthi \"you\" \u00e9","dataschema":"http://example.com/schema"}"#;
        assert!(matches!(
            parse_str(found),
            Err(EventError::AttributeValue { name, .. }) if name == "datacontenttype"
        ));
        // As JSON writes them: escapes are JSON's.
        for bad in [r"a\u0001b", " text/plain", r"text/plain\t", r"caf\u00e9/x"] {
            let error = parse_str(&format!(r#"{{{BASE},"datacontenttype":"{bad}"}}"#)).unwrap_err();
            assert!(error.to_string().contains("not a media type"), "{bad}: {error}");
        }
        let event = parse_str(&format!(
            r#"{{{BASE},"datacontenttype":"text/plain;\tcharset=\"utf-8\""}}"#
        ))
        .unwrap();
        assert_eq!(event.datacontenttype.as_deref(), Some("text/plain;\tcharset=\"utf-8\""));
    }

    /// Fails the `cloudevent_structured` target's round trip without the fix: empty data was
    /// kept as `Some("")`, and a delivery of it (binary mode, an empty body) has none.
    #[test]
    fn empty_data_is_no_data() {
        let found = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":""}"#;
        assert_eq!(parse_str(found).unwrap().data, None);
        let text = parse_str(&format!(r#"{{{BASE},"datacontenttype":"text/plain","data":""}}"#)).unwrap();
        assert_eq!(text.data, None);
        let json = parse_str(&format!(r#"{{{BASE},"data":""}}"#)).unwrap();
        assert_eq!(
            json.data.as_deref(),
            Some(&b"\"\""[..]),
            "a JSON empty string is two bytes of data"
        );
    }

    #[test]
    fn base64_data_is_decoded() {
        let event = parse_str(&format!(r#"{{{BASE},"data_base64":"AAEC"}}"#)).unwrap();
        assert_eq!(event.data.as_deref(), Some(&[0u8, 1, 2][..]));
        assert_eq!(
            parse_str(&format!(r#"{{{BASE},"data_base64":"!!"}}"#)).unwrap_err(),
            EventError::Base64("Invalid symbol 33, offset 0.".into())
        );
        assert_eq!(
            parse_str(&format!(r#"{{{BASE},"data_base64":"AA","data":1}}"#)),
            Err(EventError::BothData)
        );
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let error = parse_str("{\n\"id\": }").unwrap_err();
        assert!(
            matches!(&error, EventError::Json(m) if m.contains("line 2 column 7")),
            "{error}"
        );
        let error = parse_str(&format!(r#"{{{BASE},"x":1.5}}"#)).unwrap_err();
        assert!(
            matches!(&error, EventError::Json(m) if m.contains("not an integer")),
            "{error}"
        );
        let error = parse_str("[]").unwrap_err();
        assert!(
            matches!(&error, EventError::Json(m) if m.contains("a CloudEvent (a JSON object)")),
            "{error}"
        );
    }

    #[test]
    fn context_attributes_must_be_strings_and_null_is_absent() {
        assert!(matches!(
            parse_str(r#"{"specversion":"1.0","id":1,"source":"/s","type":"t"}"#),
            Err(EventError::AttributeValue { name, .. }) if name == "id"
        ));
        let event = parse_str(&format!(r#"{{{BASE},"subject":null}}"#)).unwrap();
        assert_eq!(event.subject, None);
        assert_eq!(
            parse_str(r#"{"specversion":"1.0","id":"1","type":"t"}"#),
            Err(EventError::Missing("source"))
        );
        assert_eq!(
            parse_str(&format!(r#"{{{BASE},"Bad":"x"}}"#)),
            Err(EventError::AttributeName("Bad".into()))
        );
    }

    #[test]
    fn batches_are_all_or_nothing_and_never_empty() {
        let body = format!(r#"[{{{BASE}}},{{{BASE},"data":"x"}}]"#);
        let events = parse_batch(&Bytes::from(body), Limits::default()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            parse_batch(&Bytes::from_static(b"[]"), Limits::default()),
            Err(EventError::EmptyBatch)
        );
        let body = format!(r#"[{{{BASE}}},{{"specversion":"0.3","id":"1","source":"/s","type":"t"}}]"#);
        assert_eq!(
            parse_batch(&Bytes::from(body), Limits::default()),
            Err(EventError::InBatch {
                index: 1,
                error: Box::new(EventError::SpecVersion("0.3".into()))
            })
        );
    }

    fn limits(batch_events: usize, extensions: usize, attribute_bytes: usize) -> Limits {
        Limits {
            batch_events,
            extensions,
            attribute_bytes,
        }
    }

    #[test]
    fn extensions_past_the_limit_are_refused_without_keeping_them() {
        let with = |n: usize| {
            let extensions: Vec<String> = (0..n).map(|i| format!(r#""x{i}":"v""#)).collect();
            Bytes::from(format!(r#"{{{BASE},{}}}"#, extensions.join(",")))
        };
        assert_eq!(parse(&with(3), limits(10, 3, 1024)).unwrap().extensions.len(), 3);
        assert_eq!(
            parse(&with(4), limits(10, 3, 1024)),
            Err(EventError::TooManyExtensions { limit: 3 })
        );
        // Also when the extra members are left unread: the JSON must still be well-formed.
        let broken = Bytes::from(format!(r#"{{{BASE},"a":"1","b":"2","c":"3","d":"4",}}"#));
        assert!(matches!(parse(&broken, limits(10, 3, 1024)), Err(EventError::Json(_))));
        let error = parse(&with(4), limits(10, 3, 1024)).unwrap_err();
        assert_eq!(error.status(), http::StatusCode::BAD_REQUEST);
        assert!(error.to_string().contains("max-extensions"), "{error}");
    }

    #[test]
    fn attribute_bytes_past_the_limit_are_refused_with_413() {
        let body = Bytes::from(format!(r#"{{{BASE},"big":"{}"}}"#, "v".repeat(2000)));
        let error = parse(&body, limits(10, 10, 1024)).unwrap_err();
        assert_eq!(error, EventError::AttributesTooLarge { limit: 1024 });
        assert_eq!(error.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        assert!(parse(&body, limits(10, 10, 4096)).is_ok());
    }

    #[test]
    fn batches_stop_at_the_first_bad_event_and_at_the_limit() {
        let body = format!("[{}]", vec![format!("{{{BASE}}}"); 5].join(","));
        assert_eq!(
            parse_batch(&Bytes::from(body.clone()), limits(5, 10, 1024))
                .unwrap()
                .len(),
            5
        );
        let error = parse_batch(&Bytes::from(body), limits(4, 10, 1024)).unwrap_err();
        assert_eq!(error, EventError::BatchTooLong { limit: 4 });
        assert_eq!(error.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        // Millions of empty objects: refused at the first, whatever follows.
        let mut empties = String::from("[");
        empties.push_str(&"{},".repeat(2_000_000));
        empties.push_str("{}]");
        assert_eq!(
            parse_batch(&Bytes::from(empties), Limits::default()),
            Err(EventError::InBatch {
                index: 0,
                error: Box::new(EventError::Missing("specversion"))
            })
        );
        let error = parse_batch(&Bytes::from_static(b"[1]"), Limits::default()).unwrap_err();
        assert!(matches!(error, EventError::Json(_)), "{error}");
        let trailing = format!("[{{{BASE}}}] x");
        assert!(matches!(
            parse_batch(&Bytes::from(trailing), Limits::default()),
            Err(EventError::Json(_))
        ));
    }

    /// `event` as a structured JSON object, data as base64.
    fn to_json(event: &Event) -> Vec<u8> {
        let mut object = serde_json::Map::new();
        let mut put = |name: &str, value: &str| {
            object.insert(name.to_string(), serde_json::Value::String(value.to_string()));
        };
        put("specversion", "1.0");
        put("id", &event.id);
        put("source", &event.source);
        put("type", &event.ty);
        let optional = [
            ("datacontenttype", &event.datacontenttype),
            ("dataschema", &event.dataschema),
            ("subject", &event.subject),
            ("time", &event.time),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                put(name, value);
            }
        }
        for (name, value) in &event.extensions {
            put(name, value);
        }
        if let Some(data) = &event.data {
            put("data_base64", &BASE64.encode(data));
        }
        serde_json::to_vec(&object).unwrap()
    }

    proptest! {
        /// Any valid event written as JSON reads back as itself, alone and in a batch.
        #[test]
        fn events_round_trip(event in crate::cloudevent::tests::events(), more in crate::cloudevent::tests::events()) {
            let body = Bytes::from(to_json(&event));
            prop_assert_eq!(parse(&body, Limits::default()), Ok(event.clone()));
            let mut batch = b"[".to_vec();
            batch.extend(to_json(&event));
            batch.push(b',');
            batch.extend(to_json(&more));
            batch.push(b']');
            prop_assert_eq!(parse_batch(&Bytes::from(batch), Limits::default()), Ok(vec![event, more]));
        }

        /// JSON data is kept as the sender's text, and gets the JSON media type when it has none.
        #[test]
        fn json_data_is_the_senders_text(text in "\\PC{0,40}", spaces in "[ \\n]{0,3}") {
            let data = serde_json::to_string(&serde_json::json!({"text": text, "list": [1, 2]})).unwrap();
            let body = format!(r#"{{{BASE},"data":{spaces}{data}{spaces}}}"#);
            let event = parse_str(&body).unwrap();
            prop_assert_eq!(event.data.as_deref(), Some(data.as_bytes()));
            prop_assert_eq!(event.datacontenttype.as_deref(), Some("application/json"));
            let plain = parse_str(&format!(
                r#"{{{BASE},"datacontenttype":"text/plain","data":{}}}"#,
                serde_json::to_string(&text).unwrap()
            ))
            .unwrap();
            prop_assert_eq!(plain.data, (!text.is_empty()).then(|| Bytes::from(text)));
        }

        /// Any bytes, and JSON near an event's shape: an event, a batch or an error, never a
        /// panic; what is accepted is within the limits.
        #[test]
        fn any_body_gets_an_answer(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            json in r#"[\[{]?("(specversion|id|source|type|data|data_base64|time|x)":("1\.0"|"[a-z]{0,3}"|[0-9]{1,3}|null|true|\{\}|\[\]),?){0,6}[}\]]?"#,
        ) {
            let limits = limits(4, 2, 256);
            for body in [Bytes::from(bytes), Bytes::from(json)] {
                if let Ok(event) = parse(&body, limits) {
                    prop_assert!(event.extensions.len() <= 2);
                }
                if let Ok(events) = parse_batch(&body, limits) {
                    prop_assert!((1..=4).contains(&events.len()));
                }
            }
        }
    }
}
