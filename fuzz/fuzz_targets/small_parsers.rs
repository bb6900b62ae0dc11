//! The small parsers of flags, annotations and manifests. The first byte picks the parser, the
//! rest (as UTF-8) is its input. Each must answer any text, and what it accepts must print
//! back to text that parses to the same value, within the bounds it promises.

#![no_main]

use std::time::Duration;

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use rouse_api::annotations::{apply_annotation, parse_annotation, scale_annotations};
use rouse_api::duration::parse_duration;
use rouse_api::eventing::{Filter, Sink, format_iso8601_duration, parse_filter_flag, parse_iso8601_duration};
use rouse_api::quantity::{parse_cpu, parse_memory, parse_size};
use rouse_api::template::{PortProtocol, ScaleBounds, parse_port};
use rouse_api::traffic::{LATEST, RevisionRef, TrafficChange, apply_change, parse_split, parse_tag};
use rouse_eventing::Schedule;

fn duration(s: &str) {
    if let Ok(d) = parse_duration(s) {
        assert!(
            d <= Duration::from_secs(1_000_000_000),
            "{s:?} is {d:?}, past the bound"
        );
        // Written back in seconds to the nanosecond, and in milliseconds as annotations print
        // them, the same duration.
        let printed = format!("{}.{:09}s", d.as_secs(), d.subsec_nanos());
        assert_eq!(parse_duration(&printed), Ok(d), "{s:?} printed as {printed:?}");
        let ms = d.as_millis();
        assert_eq!(
            parse_duration(&format!("{ms}ms")).map(|d| d.as_millis()),
            Ok(ms),
            "{s:?}"
        );
    }
}

fn iso8601(s: &str) {
    if let Ok(d) = parse_iso8601_duration(s) {
        let printed = format_iso8601_duration(d);
        assert_eq!(parse_iso8601_duration(&printed), Ok(d), "{s:?} printed as {printed:?}");
    }
}

fn cpu(s: &str) {
    if let Ok(millis) = parse_cpu(s) {
        assert!((1..=1_000_000_000).contains(&millis), "{s:?} is {millis}m");
        assert_eq!(parse_cpu(&format!("{millis}m")), Ok(millis), "{s:?}");
    }
}

fn memory(s: &str) {
    if let Ok(bytes) = parse_memory(s) {
        assert!(
            (6 << 20..=1_000_000_000_000_000).contains(&bytes),
            "{s:?} is {bytes} bytes"
        );
        assert_eq!(parse_memory(&bytes.to_string()), Ok(bytes), "{s:?}");
    }
}

fn size(s: &str) {
    if let Ok(bytes) = parse_size(s) {
        assert!((1..=1_000_000_000_000_000).contains(&bytes), "{s:?} is {bytes} bytes");
        assert_eq!(parse_size(&bytes.to_string()), Ok(bytes), "{s:?}");
    }
}

fn sink(s: &str) {
    if let Ok(sink) = Sink::parse(s) {
        let printed = sink.to_string();
        assert_eq!(Sink::parse(&printed), Ok(sink.clone()), "{s:?} printed as {printed:?}");
        assert!(sink.validate().is_ok(), "{s:?}");
    }
}

fn revision(r: &RevisionRef) -> &str {
    match r {
        RevisionRef::Latest => LATEST,
        RevisionRef::Named(name) => name,
    }
}

fn split(s: &str) {
    let Ok(shares) = parse_split(s) else {
        return;
    };
    assert!(shares.iter().all(|(_, p)| *p <= 100), "{s:?}: {shares:?}");
    let printed: Vec<String> = shares.iter().map(|(r, p)| format!("{}={p}", revision(r))).collect();
    assert_eq!(parse_split(&printed.join(",")), Ok(shares.clone()), "{s:?}");
    // Applied to a service whose revisions are the ones named: stored only when it adds up.
    let revisions: Vec<String> = shares
        .iter()
        .filter_map(|(r, _)| match r {
            RevisionRef::Named(name) => Some(name.clone()),
            RevisionRef::Latest => None,
        })
        .collect();
    let change = TrafficChange {
        to: Some(shares.clone()),
        ..TrafficChange::default()
    };
    if let Ok(targets) = apply_change(&[], &change, &revisions) {
        let total: u64 = targets.iter().map(|t| u64::from(t.percent.unwrap_or(0))).sum();
        let asked: u64 = shares.iter().map(|(_, p)| u64::from(*p)).sum();
        assert_eq!(asked, 100, "{s:?} is stored but adds up to {asked}");
        assert!(total == 100 || targets.is_empty(), "{s:?} stored as {targets:?}");
    }
}

fn tag(s: &str) {
    if let Ok((r, tag)) = parse_tag(s) {
        let printed = format!("{}={tag}", revision(&r));
        assert_eq!(parse_tag(&printed), Ok((r, tag)), "{s:?}");
    }
}

fn annotation(s: &str) {
    let Ok((key, value)) = parse_annotation(s) else {
        return;
    };
    assert_eq!(
        parse_annotation(&format!("{key}={value}")),
        Ok((key.clone(), value.clone()))
    );
    // A scale setting prints back as annotations that set the same scale.
    let mut scale = ScaleBounds::default();
    if apply_annotation(&mut scale, &key, &value).is_ok() {
        let mut again = ScaleBounds::default();
        for (key, value) in scale_annotations(&scale) {
            apply_annotation(&mut again, &key, &value).unwrap_or_else(|e| panic!("{s:?}: {key}={value}: {e}"));
        }
        assert_eq!(again, scale, "{s:?}");
    }
}

fn port(s: &str) {
    if let Ok((protocol, number)) = parse_port(s) {
        assert_ne!(number, 0, "{s:?}");
        let printed = match protocol {
            PortProtocol::Http1 => number.to_string(),
            PortProtocol::H2c => format!("h2c:{number}"),
        };
        assert_eq!(parse_port(&printed), Ok((protocol, number)), "{s:?}");
    }
}

fn filter(s: &str) {
    if let Ok(filter) = parse_filter_flag(s) {
        assert!(filter.validate().is_ok(), "{s:?} parses to an invalid {filter:?}");
        let Filter::Exact { attribute, value } = &filter else {
            panic!("{s:?} is not an exact filter: {filter:?}");
        };
        assert_eq!(parse_filter_flag(&format!("{attribute}={value}")), Ok(filter.clone()));
    }
}

fn schedule(s: &str) {
    // The zone, if any, on a line of its own after the schedule.
    let (pattern, zone) = match s.split_once('\n') {
        Some((pattern, zone)) => (pattern, Some(zone)),
        None => (s, None),
    };
    if let Ok(schedule) = Schedule::parse(pattern, zone) {
        let start = Utc.with_ymd_and_hms(2024, 3, 31, 0, 59, 59).unwrap();
        if let Some(next) = schedule.next_after(start) {
            assert!(next > start, "{s:?}: {next} is not after {start}");
        }
    }
}

/// The parsers, by the input's first byte (modulo their number).
const PARSERS: [fn(&str); 12] = [
    duration, iso8601, cpu, memory, size, sink, split, tag, annotation, port, filter, schedule,
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(rest) {
        PARSERS[usize::from(which) % PARSERS.len()](text);
    }
});
