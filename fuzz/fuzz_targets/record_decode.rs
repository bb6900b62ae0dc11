//! Any bytes as a record of the event log (a damaged file, an old format): an error or an
//! event, never a panic, and an event decoded re-encodes to the same.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rouse_eventing::fuzzing::decode_record;
use rouse_fuzz::cloudevent::check_stored;

fuzz_target!(|data: &[u8]| {
    if let Ok((event, accepted_at)) = decode_record(Bytes::copy_from_slice(data)) {
        check_stored(&event, accepted_at);
    }
});
