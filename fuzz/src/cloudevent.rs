//! The round trips every event the ingress accepts must survive: sent on to a subscriber in
//! binary mode and parsed back, and stored in the log and read back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Uri;
use rouse_eventing::fuzzing::{decode_record, encode_record, parse_binary};
use rouse_eventing::{Event, EventingConfig, binary};

/// Limits small enough that inputs of a few KiB reach each of them (the defaults need 16 KiB
/// of attributes or 10,000 events in a batch), so the fuzzer also explores the refusals.
pub fn config() -> EventingConfig {
    EventingConfig {
        max_batch_events: 16,
        max_extensions: 8,
        max_attribute_bytes: 1024,
        ..EventingConfig::default()
    }
}

/// A time with whole microseconds, as the log keeps them.
const ACCEPTED_AT: Duration = Duration::from_micros(1_700_000_000_123_456);

/// Asserts that `event`, accepted under `config`, is the same event after a delivery in
/// binary mode and after a trip through the log's record.
pub fn check_round_trips(event: &Event, config: &EventingConfig) {
    let request = binary::to_request(event, Uri::from_static("http://127.0.0.1:1/"))
        .unwrap_or_else(|e| panic!("an accepted event has no delivery request ({e}): {event:?}"));
    let (parts, body) = request.into_parts();
    match parse_binary(&parts.headers, body, config) {
        Ok(back) => assert_eq!(&back, event, "a delivery in binary mode parses back to the event"),
        Err(e) => panic!(
            "an accepted event's delivery is refused ({e}): {event:?}\n{:?}",
            parts.headers
        ),
    }
    let accepted_at = UNIX_EPOCH + ACCEPTED_AT;
    let (stored, at) = decode_record(encode_record(event, accepted_at))
        .unwrap_or_else(|e| panic!("an accepted event's record is unreadable ({e}): {event:?}"));
    assert_eq!(&stored, event, "the log's record decodes to the event");
    assert_eq!(at, accepted_at);
}

/// Asserts what holds of any record the log hands back, whatever its bytes: it encodes again
/// to a record that decodes the same, and a delivery request can be made of it (or is refused
/// with an error, never a panic).
pub fn check_stored(event: &Event, accepted_at: SystemTime) {
    let again = decode_record(encode_record(event, accepted_at)).expect("a re-encoded record decodes");
    assert_eq!(&again.0, event, "a record re-encoded decodes to the same event");
    assert_eq!(again.1, accepted_at);
    // The dispatcher makes a request of every record it reads: an error for what no header
    // map holds, never a panic.
    let _ = binary::to_request(event, Uri::from_static("http://127.0.0.1:1/"));
}
