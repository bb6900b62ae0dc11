//! A binary-mode event. The input is a message: `name: value` header lines, a blank line, then
//! the body (lines that are no header are skipped). Whatever is accepted survives a delivery in
//! binary mode and the log's record unchanged.

#![no_main]

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use rouse_eventing::fuzzing::parse_binary;
use rouse_fuzz::cloudevent::{check_round_trips, config};

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let value = line[colon + 1..].strip_prefix(b" ").unwrap_or(&line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    let config = config();
    if let Ok(event) = parse_binary(&headers, Bytes::copy_from_slice(body), &config) {
        check_round_trips(&event, &config);
    }
});
