//! A batch (`application/cloudevents-batch+json`): never empty, never past the limit, and each
//! event in it survives a delivery in binary mode and the log's record unchanged.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rouse_eventing::fuzzing::parse_batch;
use rouse_fuzz::cloudevent::{check_round_trips, config};

fuzz_target!(|data: &[u8]| {
    let config = config();
    let body = Bytes::copy_from_slice(data);
    if let Ok(events) = parse_batch(&body, &config) {
        assert!(!events.is_empty(), "an empty batch is refused");
        assert!(
            events.len() <= config.max_batch_events,
            "a batch past the limit is refused"
        );
        for event in &events {
            check_round_trips(event, &config);
        }
    }
});
