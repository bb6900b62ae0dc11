//! What the fuzz targets check, shared between them.
//!
//! Each target in `fuzz_targets/` feeds libFuzzer's input to one parser and asserts what must
//! hold of whatever it accepts (a round trip, a bound), not only that it does not panic. A
//! failed assertion is a crash, and so is an input that takes more than `-timeout` seconds
//! or `-rss_limit_mb` of memory (see `scripts/fuzz`).
//!
//! - [`cloudevent`]: an event the ingress accepts survives delivery (binary mode) and the log.

#![forbid(unsafe_code)]

pub mod cloudevent;
