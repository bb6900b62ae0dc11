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
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{Event, Parts, is_json};
use crate::error::EventError;

/// Standard base64, padded or not (senders differ).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One event from an `application/cloudevents+json` body.
pub(crate) fn parse(body: &Bytes) -> Result<Event, EventError> {
    let wire: Wire<'_> = serde_json::from_slice(body).map_err(|e| EventError::Json(e.to_string()))?;
    wire.into_event(body)
}

/// The events of an `application/cloudevents-batch+json` body; any invalid event refuses the
/// whole batch (it is stored in one append, all or nothing).
pub(crate) fn parse_batch(body: &Bytes) -> Result<Vec<Event>, EventError> {
    let wires: Vec<Wire<'_>> = serde_json::from_slice(body).map_err(|e| EventError::Json(e.to_string()))?;
    if wires.is_empty() {
        return Err(EventError::EmptyBatch);
    }
    wires
        .into_iter()
        .enumerate()
        .map(|(index, wire)| {
            wire.into_event(body).map_err(|error| EventError::InBatch {
                index,
                error: Box::new(error),
            })
        })
        .collect()
}

/// A structured event as read: attributes in order, data untouched.
struct Wire<'a> {
    attributes: Vec<(Cow<'a, str>, Value<'a>)>,
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
    fn into_event(self, body: &Bytes) -> Result<Event, EventError> {
        let mut parts = Parts::default();
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

impl<'de> Deserialize<'de> for Wire<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(WireVisitor)
    }
}

struct WireVisitor;

impl<'de> Visitor<'de> for WireVisitor {
    type Value = Wire<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CloudEvent (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Wire<'de>, A::Error> {
        let mut wire = Wire {
            attributes: Vec::with_capacity(8),
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
    use super::*;

    fn parse_str(json: &str) -> Result<Event, EventError> {
        parse(&Bytes::copy_from_slice(json.as_bytes()))
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
        let events = parse_batch(&Bytes::from(body)).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(parse_batch(&Bytes::from_static(b"[]")), Err(EventError::EmptyBatch));
        let body = format!(r#"[{{{BASE}}},{{"specversion":"0.3","id":"1","source":"/s","type":"t"}}]"#);
        assert_eq!(
            parse_batch(&Bytes::from(body)),
            Err(EventError::InBatch {
                index: 1,
                error: Box::new(EventError::SpecVersion("0.3".into()))
            })
        );
    }
}
