//! The form an event has in the event log: a small binary record.
//!
//! Every event is encoded once at ingest and decoded once per trigger that reads it, so the
//! format is cheap both ways: length-prefixed strings, no escaping, and the data last, where
//! decoding takes it as a slice of the stored bytes without copying. The first byte is a
//! format version so a later format can still read old logs.
//!
//! ```text
//! version u8 (1) | accepted_at u64 LE (µs since the Unix epoch) | flags u8
//! id | source | type | [datacontenttype] [dataschema] [subject] [time]   (varint length + UTF-8)
//! extension count (varint) | name, value ...                            (varint length + UTF-8)
//! [data: the rest of the record]
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::Event;
use crate::error::EventLogError;

const VERSION: u8 = 1;
const HAS_DATACONTENTTYPE: u8 = 1;
const HAS_DATASCHEMA: u8 = 1 << 1;
const HAS_SUBJECT: u8 = 1 << 2;
const HAS_TIME: u8 = 1 << 3;
const HAS_DATA: u8 = 1 << 4;

/// An event read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub event: Event,
    /// When the broker accepted it (for delivery latency).
    pub accepted_at: SystemTime,
}

/// Encodes `event`, accepted at `accepted_at`, for the log.
pub(crate) fn encode(event: &Event, accepted_at: SystemTime) -> Bytes {
    let mut out = BytesMut::with_capacity(event.size() + 16 + 2 * (8 + event.extensions.len()));
    out.put_u8(VERSION);
    let micros = accepted_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros();
    out.put_u64_le(u64::try_from(micros).unwrap_or(u64::MAX));
    let optional = [
        (HAS_DATACONTENTTYPE, &event.datacontenttype),
        (HAS_DATASCHEMA, &event.dataschema),
        (HAS_SUBJECT, &event.subject),
        (HAS_TIME, &event.time),
    ];
    let mut flags = optional
        .iter()
        .filter(|(_, v)| v.is_some())
        .fold(0, |f, (bit, _)| f | bit);
    if event.data.is_some() {
        flags |= HAS_DATA;
    }
    out.put_u8(flags);
    put_str(&mut out, &event.id);
    put_str(&mut out, &event.source);
    put_str(&mut out, &event.ty);
    for (_, value) in optional {
        if let Some(value) = value {
            put_str(&mut out, value);
        }
    }
    put_varint(&mut out, event.extensions.len() as u64);
    for (name, value) in &event.extensions {
        put_str(&mut out, name);
        put_str(&mut out, value);
    }
    if let Some(data) = &event.data {
        out.put_slice(data);
    }
    out.freeze()
}

/// Decodes a record written by [`encode`]; the data is a slice of `stored`, not a copy.
pub(crate) fn decode(stored: Bytes) -> Result<Record, EventLogError> {
    let mut buf = stored.clone();
    if buf.remaining() < 10 {
        return Err(corrupt("shorter than its header"));
    }
    let version = buf.get_u8();
    if version != VERSION {
        return Err(corrupt(&format!(
            "format version {version}, this build reads {VERSION}"
        )));
    }
    let accepted_at = UNIX_EPOCH + Duration::from_micros(buf.get_u64_le());
    let flags = buf.get_u8();
    let id = get_str(&mut buf)?;
    let source = get_str(&mut buf)?;
    let ty = get_str(&mut buf)?;
    let mut optional = |bit| (flags & bit != 0).then(|| get_str(&mut buf)).transpose();
    let datacontenttype = optional(HAS_DATACONTENTTYPE)?;
    let dataschema = optional(HAS_DATASCHEMA)?;
    let subject = optional(HAS_SUBJECT)?;
    let time = optional(HAS_TIME)?;
    let count = get_varint(&mut buf)?;
    let mut extensions = BTreeMap::new();
    for _ in 0..count {
        let name = get_str(&mut buf)?;
        let value = get_str(&mut buf)?;
        extensions.insert(name, value);
    }
    let data = (flags & HAS_DATA != 0).then(|| stored.slice(stored.len() - buf.remaining()..));
    Ok(Record {
        event: Event {
            id,
            source,
            ty,
            datacontenttype,
            dataschema,
            subject,
            time,
            extensions,
            data,
        },
        accepted_at,
    })
}

fn corrupt(reason: &str) -> EventLogError {
    EventLogError::Corrupt(reason.to_string())
}

fn put_str(out: &mut BytesMut, s: &str) {
    put_varint(out, s.len() as u64);
    out.put_slice(s.as_bytes());
}

fn get_str(buf: &mut Bytes) -> Result<String, EventLogError> {
    let len = usize::try_from(get_varint(buf)?).map_err(|_| corrupt("string length overflows"))?;
    if buf.remaining() < len {
        return Err(corrupt("string runs past the end"));
    }
    let bytes = buf.split_to(len);
    String::from_utf8(bytes.to_vec()).map_err(|_| corrupt("string is not UTF-8"))
}

/// LEB128: seven bits per byte, low bits first; strings under 128 bytes take one byte.
fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

fn get_varint(buf: &mut Bytes) -> Result<u64, EventLogError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return Err(corrupt("length runs past the end"));
        }
        let byte = buf.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(corrupt("length is longer than 64 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn full_event() -> Event {
        let mut event = Event::new(
            "id-1",
            "/apis/v1/namespaces/default/pingsources/p",
            "dev.knative.sources.ping",
        );
        event.datacontenttype = Some("application/json".into());
        event.subject = Some("ünïcödé".into());
        event.time = Some("2024-05-01T12:00:00Z".into());
        event.set_extension("knativebrokerttl", "255");
        event.set_extension("region", "eu");
        event.data = Some(Bytes::from_static(br#"{"hello":"world"}"#));
        event
    }

    #[test]
    fn records_round_trip_with_their_acceptance_time() {
        let accepted_at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let stored = encode(&full_event(), accepted_at);
        let record = decode(stored).unwrap();
        assert_eq!(record.event, full_event());
        assert_eq!(record.accepted_at, accepted_at);
        let bare = Event::new("1", "/s", "t");
        assert_eq!(decode(encode(&bare, accepted_at)).unwrap().event, bare);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let stored = encode(&full_event(), SystemTime::now());
        for len in 0..stored.len() - 17 {
            assert!(decode(stored.slice(..len)).is_err(), "truncated to {len}");
        }
        let mut other_version = stored.to_vec();
        other_version[0] = 9;
        assert!(decode(Bytes::from(other_version)).is_err());
    }

    proptest! {
        #[test]
        fn any_event_round_trips(
            id in ".{1,40}", source in ".{1,40}", ty in ".{1,40}",
            subject in proptest::option::of(".{0,40}"),
            extensions in proptest::collection::btree_map("[a-z0-9]{1,20}", ".{0,300}", 0..6),
            data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..2000)),
        ) {
            let mut event = Event::new(id, source, ty);
            event.subject = subject;
            event.extensions = extensions;
            event.data = data.map(Bytes::from);
            let decoded = decode(encode(&event, UNIX_EPOCH)).unwrap();
            prop_assert_eq!(decoded.event, event);
        }

        /// Events as the ingress accepts them (every optional attribute), with any acceptance
        /// time to the microsecond.
        #[test]
        fn accepted_events_round_trip(event in crate::cloudevent::tests::events(), micros in any::<u64>()) {
            let accepted_at = UNIX_EPOCH + Duration::from_micros(micros);
            let record = decode(encode(&event, accepted_at)).unwrap();
            prop_assert_eq!(record, Record { event, accepted_at });
        }

        /// Any bytes: a record or an error, never a panic; a record re-encodes to the same.
        #[test]
        fn any_bytes_get_an_answer(bytes in proptest::collection::vec(any::<u8>(), 0..300), valid_header in any::<bool>()) {
            let mut bytes = bytes;
            if valid_header && !bytes.is_empty() {
                bytes[0] = VERSION;
            }
            if let Ok(record) = decode(Bytes::from(bytes)) {
                prop_assert_eq!(decode(encode(&record.event, record.accepted_at)).ok(), Some(record));
            }
        }
    }
}
