//! One structured event (`application/cloudevents+json`): whatever is accepted survives a
//! delivery in binary mode and the log's record unchanged.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rouse_eventing::fuzzing::parse_structured;
use rouse_fuzz::cloudevent::{check_round_trips, config};

fuzz_target!(|data: &[u8]| {
    let config = config();
    let body = Bytes::copy_from_slice(data);
    if let Ok(event) = parse_structured(&body, &config) {
        check_round_trips(&event, &config);
    }
});
