//! Ping sources, decided without a clock: when a schedule next fires, and what event it sends.
//!
//! The loop that sleeps until [`Schedule::next_after`] and sends the event lives elsewhere;
//! everything here is a plain function of its inputs, so tests step time by hand.

use std::str::FromStr;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use rouse_api::eventing::PingSource;

/// The CloudEvents type of every ping event (Knative's).
pub(crate) const PING_EVENT_TYPE: &str = "dev.knative.sources.ping";

const SCHEDULE_EXAMPLES: &str = "e.g. \"*/5 * * * *\" (every five minutes), \"0 9 * * 1-5\" (09:00 on weekdays), \
                                 \"*/10 * * * * *\" (every ten seconds) or \"@hourly\"";

/// The nicknames a schedule may be instead of fields.
const NICKNAMES: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// When a ping source fires: a cron pattern read in a time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
}

impl Schedule {
    /// Parses a schedule: five crontab fields (minute hour day-of-month month day-of-week; 0
    /// and 7 are Sunday), six with seconds first, or a nickname (`@hourly`, `@daily`, ...).
    ///
    /// The zone is `timezone` (an IANA name) or a `CRON_TZ=Zone ` / `TZ=Zone ` prefix of the
    /// schedule, UTC when neither is given; both may be given only if they agree. `@every` is
    /// refused, as Knative refuses it.
    pub fn parse(schedule: &str, timezone: Option<&str>) -> Result<Schedule, String> {
        let (prefix_zone, pattern) = split_zone_prefix(schedule)?;
        let zone_name = match (prefix_zone, timezone.filter(|z| !z.is_empty())) {
            (Some(prefixed), Some(given)) if prefixed != given => {
                return Err(format!(
                    "the schedule says its zone is {prefixed} but the timezone is {given}; give the zone once, in timezone"
                ));
            }
            (Some(zone), _) | (None, Some(zone)) => Some(zone),
            (None, None) => None,
        };
        let zone = match zone_name {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| {
                format!("'{name}' is not an IANA time zone name; write e.g. Europe/Berlin, America/New_York or UTC")
            })?,
        };
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err(format!("the schedule is empty; {SCHEDULE_EXAMPLES}"));
        }
        let pattern = if pattern.starts_with('@') {
            if pattern.starts_with("@every") {
                return Err(format!(
                    "@every is not supported (nor is it in Knative); {SCHEDULE_EXAMPLES}"
                ));
            }
            match NICKNAMES.iter().find(|n| n.eq_ignore_ascii_case(pattern)) {
                // croner knows the others; @midnight is cron's other name for @daily.
                Some(&"@midnight") => "@daily",
                Some(_) => pattern,
                None => {
                    return Err(format!(
                        "'{pattern}' is not a schedule nickname; use one of {} (e.g. @hourly)",
                        NICKNAMES.join(", ")
                    ));
                }
            }
        } else {
            let fields = pattern.split_whitespace().count();
            if !(5..=6).contains(&fields) {
                return Err(format!(
                    "'{pattern}' has {fields} fields; a schedule has 5 (minute hour day-of-month month \
                     day-of-week) or 6 (seconds first); {SCHEDULE_EXAMPLES}"
                ));
            }
            // croner reads a field of only commas (`,`) as matching nothing, and then searches
            // up to a year of seconds for a match before giving up: over 100 s of CPU under
            // the fuzzer, in the ping source's task and in `rouse source ping create`.
            if let Some(field) = pattern.split_whitespace().find(|field| {
                let field = field.strip_prefix('+').unwrap_or(field);
                field.split(',').any(|item| item.trim().is_empty())
            }) {
                return Err(format!(
                    "'{pattern}' has an empty item in its field '{field}'; a field is *, a value, a range or \
                     a step, or several separated by commas; {SCHEDULE_EXAMPLES}"
                ));
            }
            // Knative's cron (robfig/cron) has no `L`, `W`, `#` or `+`; croner has, and some
            // of their combinations (`* * 4 * +L`: the 4th that is a last weekday) make its
            // search for the next time scan years of seconds: over 5 s of CPU per call in a
            // debug build, found by the fuzzer. Refused by name, as Knative refuses them.
            if let Some(field) = pattern.split_whitespace().find(|field| !standard_cron_field(field)) {
                return Err(format!(
                    "'{pattern}' has '{field}', which is not standard cron: a field is *, ?, a value (or a \
                     month or day name), a range or a step, or several separated by commas (no L, W, # or +, \
                     as in Knative); {SCHEDULE_EXAMPLES}"
                ));
            }
            pattern
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(pattern)
            .map_err(|e| format!("'{pattern}' is not a cron schedule ({e}); {SCHEDULE_EXAMPLES}"))?;
        Ok(Schedule { cron, zone })
    }

    /// A ping source's schedule, in its time zone.
    pub fn of(source: &PingSource) -> Result<Schedule, String> {
        Schedule::parse(&source.schedule, source.timezone.as_deref())
    }

    /// The first time strictly after `t` at which the schedule fires, or `None` if it never
    /// does (`0 0 30 2 *`, February 30th).
    ///
    /// Times are read on the zone's wall clock: `0 9 * * *` in Europe/Berlin is 08:00 UTC in
    /// winter and 07:00 UTC in summer. A wall time a spring-forward gap skips fires once, at the
    /// end of the gap; a time repeated when clocks go back fires once.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.zone), false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }

    /// The zone the schedule is read in.
    pub fn zone(&self) -> Tz {
        self.zone
    }
}

/// Whether a cron field uses only standard syntax: `*`, `?`, numbers, month and day names,
/// `-` ranges, `/` steps and `,` lists (an empty item is refused elsewhere, with its own
/// message).
fn standard_cron_field(field: &str) -> bool {
    const NAMES: [&str; 19] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC", "SUN", "MON", "TUE", "WED",
        "THU", "FRI", "SAT",
    ];
    field.split(',').all(|item| {
        item.split(['-', '/']).all(|part| {
            part.is_empty()
                || part == "*"
                || part == "?"
                || part.bytes().all(|b| b.is_ascii_digit())
                || NAMES.iter().any(|n| n.eq_ignore_ascii_case(part))
        })
    })
}

/// Splits a `CRON_TZ=Zone ` or `TZ=Zone ` prefix off a schedule.
fn split_zone_prefix(schedule: &str) -> Result<(Option<&str>, &str), String> {
    let trimmed = schedule.trim_start();
    let Some(rest) = trimmed.strip_prefix("CRON_TZ=").or_else(|| trimmed.strip_prefix("TZ=")) else {
        return Ok((None, schedule));
    };
    match rest.split_once(char::is_whitespace) {
        Some((zone, pattern)) if !zone.is_empty() => Ok((Some(zone), pattern)),
        _ => Err(
            "after CRON_TZ=Zone comes a space and the schedule, e.g. \"CRON_TZ=Europe/Berlin 0 9 * * *\"; \
                  or give the zone in timezone"
                .to_string(),
        ),
    }
}

/// What a ping source sends each time it fires, less the per-event `id` and `time`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingEvent {
    /// Always [`PING_EVENT_TYPE`].
    pub type_: String,
    /// `/apis/v1/namespaces/default/pingsources/{name}`.
    pub source: String,
    /// `datacontenttype`: the source's `contentType`, only when there is data (as Knative).
    pub content_type: Option<String>,
    /// The payload: `data` as is, `dataBase64` decoded, empty when there is neither.
    pub data: Bytes,
}

/// The CloudEvents source of a ping source's events (Knative's form).
pub(crate) fn ping_source_uri(name: &str) -> String {
    format!("/apis/v1/namespaces/default/pingsources/{name}")
}

/// The event a ping source sends, following Knative's PingSource adapter: the data goes as is,
/// with no content type unless the source gives one; `dataBase64` is decoded to bytes; with no
/// data the event has neither data nor content type. `dataBase64` is checked when the source
/// is accepted; should it not decode, the event carries no data.
pub fn ping_event_parts(source: &PingSource) -> PingEvent {
    let data = source
        .data
        .as_ref()
        .and_then(|data| data.payload().ok())
        .filter(|payload| !payload.is_empty());
    PingEvent {
        type_: PING_EVENT_TYPE.to_string(),
        source: ping_source_uri(&source.name),
        content_type: data.as_ref().and(source.content_type.clone()),
        data: data.map(Bytes::from).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use rouse_api::eventing::{PingData, Sink};

    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    /// The next `n` firings after `t`.
    fn firings(schedule: &Schedule, mut t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        (0..n)
            .map(|_| {
                t = schedule.next_after(t).expect("the schedule fires");
                t
            })
            .collect()
    }

    fn source(data: Option<PingData>, content_type: Option<&str>) -> PingSource {
        PingSource {
            name: "heartbeat".to_string(),
            created_at: DateTime::UNIX_EPOCH,
            labels: vec![],
            schedule: "* * * * *".to_string(),
            timezone: None,
            content_type: content_type.map(str::to_string),
            data,
            sink: Sink::Broker("default".to_string()),
        }
    }

    // --- schedules ---

    #[test]
    fn five_fields_fire_on_the_minute() {
        let s = Schedule::parse("*/15 * * * *", None).unwrap();
        assert_eq!(
            firings(&s, utc("2025-01-01T10:07:30Z"), 3),
            vec![
                utc("2025-01-01T10:15:00Z"),
                utc("2025-01-01T10:30:00Z"),
                utc("2025-01-01T10:45:00Z")
            ]
        );
        assert_eq!(s.zone(), Tz::UTC);
    }

    #[test]
    fn next_is_strictly_after() {
        let s = Schedule::parse("0 * * * *", None).unwrap();
        assert_eq!(
            s.next_after(utc("2025-01-01T10:00:00Z")),
            Some(utc("2025-01-01T11:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2025-01-01T09:59:59.999Z")),
            Some(utc("2025-01-01T10:00:00Z"))
        );
    }

    #[test]
    fn six_fields_have_seconds_first() {
        let s = Schedule::parse("*/10 * * * * *", None).unwrap();
        assert_eq!(
            firings(&s, utc("2025-01-01T10:00:05Z"), 2),
            vec![utc("2025-01-01T10:00:10Z"), utc("2025-01-01T10:00:20Z")]
        );
        let s = Schedule::parse("30 0 12 * * *", None).unwrap();
        assert_eq!(
            s.next_after(utc("2025-01-01T00:00:00Z")),
            Some(utc("2025-01-01T12:00:30Z"))
        );
    }

    #[test]
    fn zero_and_seven_are_sunday() {
        // 2025-01-05 is a Sunday.
        for pattern in ["0 8 * * 0", "0 8 * * 7", "0 8 * * SUN", "0 8 * * sun"] {
            let s = Schedule::parse(pattern, None).unwrap();
            assert_eq!(
                s.next_after(utc("2025-01-01T00:00:00Z")),
                Some(utc("2025-01-05T08:00:00Z")),
                "{pattern}"
            );
        }
    }

    #[test]
    fn day_of_month_or_day_of_week_as_in_cron() {
        // The 15th, or any Monday: 2025-01-06 (Monday) comes before the 15th.
        let s = Schedule::parse("0 0 15 * 1", None).unwrap();
        assert_eq!(
            firings(&s, utc("2025-01-01T00:00:00Z"), 3),
            vec![
                utc("2025-01-06T00:00:00Z"),
                utc("2025-01-13T00:00:00Z"),
                utc("2025-01-15T00:00:00Z")
            ]
        );
    }

    #[test]
    fn nicknames_fire_like_their_fields() {
        let t = utc("2025-01-01T10:30:00Z");
        for (nickname, next) in [
            ("@hourly", "2025-01-01T11:00:00Z"),
            ("@daily", "2025-01-02T00:00:00Z"),
            ("@midnight", "2025-01-02T00:00:00Z"),
            ("@weekly", "2025-01-05T00:00:00Z"),
            ("@monthly", "2025-02-01T00:00:00Z"),
            ("@yearly", "2026-01-01T00:00:00Z"),
            ("@annually", "2026-01-01T00:00:00Z"),
            ("@HOURLY", "2025-01-01T11:00:00Z"),
        ] {
            let s = Schedule::parse(nickname, None).unwrap();
            assert_eq!(s.next_after(t), Some(utc(next)), "{nickname}");
        }
    }

    #[test]
    fn a_time_zone_moves_the_wall_clock() {
        let s = Schedule::parse("0 9 * * *", Some("Asia/Tokyo")).unwrap();
        assert_eq!(
            s.next_after(utc("2025-01-01T00:00:00Z")),
            Some(utc("2025-01-02T00:00:00Z"))
        );
    }

    #[test]
    fn a_sources_schedule_is_read_in_its_zone() {
        let mut ping = source(None, None);
        ping.schedule = "0 9 * * *".to_string();
        ping.timezone = Some("Asia/Tokyo".to_string());
        let s = Schedule::of(&ping).unwrap();
        assert_eq!(
            s.next_after(utc("2025-01-01T00:00:00Z")),
            Some(utc("2025-01-02T00:00:00Z"))
        );
        ping.timezone = Some("Asia/Tokio".to_string());
        assert!(Schedule::of(&ping).unwrap_err().contains("Asia/Tokio"));
    }

    #[test]
    fn the_zone_may_be_a_prefix() {
        for schedule in [
            "CRON_TZ=Asia/Tokyo 0 9 * * *",
            "TZ=Asia/Tokyo 0 9 * * *",
            "  CRON_TZ=Asia/Tokyo   0 9 * * *",
        ] {
            for timezone in [None, Some(""), Some("Asia/Tokyo")] {
                let s = Schedule::parse(schedule, timezone).unwrap();
                assert_eq!(s.zone(), chrono_tz::Asia::Tokyo, "{schedule}");
                assert_eq!(
                    s.next_after(utc("2025-01-01T00:00:00Z")),
                    Some(utc("2025-01-02T00:00:00Z"))
                );
            }
        }
    }

    #[test]
    fn daily_times_follow_daylight_saving_in_berlin() {
        // Clocks go forward on 2025-03-30 (UTC+1 → UTC+2) and back on 2025-10-26.
        let s = Schedule::parse("0 9 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            firings(&s, utc("2025-03-28T12:00:00Z"), 3),
            vec![
                utc("2025-03-29T08:00:00Z"),
                utc("2025-03-30T07:00:00Z"),
                utc("2025-03-31T07:00:00Z")
            ]
        );
        assert_eq!(
            firings(&s, utc("2025-10-25T12:00:00Z"), 2),
            vec![utc("2025-10-26T08:00:00Z"), utc("2025-10-27T08:00:00Z")]
        );
    }

    #[test]
    fn a_time_skipped_by_spring_forward_fires_once_after_the_gap() {
        // 02:00 → 03:00 on 2025-03-09 in New York: 02:30 does not exist that day.
        let s = Schedule::parse("30 2 * * *", Some("America/New_York")).unwrap();
        let new_york = chrono_tz::America::New_York;
        let got = firings(&s, utc("2025-03-08T12:00:00Z"), 2);
        assert_eq!(got[0], new_york.with_ymd_and_hms(2025, 3, 9, 3, 0, 0).unwrap());
        assert_eq!(got[1], new_york.with_ymd_and_hms(2025, 3, 10, 2, 30, 0).unwrap());
    }

    #[test]
    fn a_time_repeated_by_fall_back_fires_once() {
        // 02:00 → 01:00 on 2025-11-02 in New York: 01:30 happens twice, at 05:30Z and 06:30Z.
        let s = Schedule::parse("30 1 * * *", Some("America/New_York")).unwrap();
        assert_eq!(
            firings(&s, utc("2025-11-01T12:00:00Z"), 2),
            vec![utc("2025-11-02T05:30:00Z"), utc("2025-11-03T06:30:00Z")]
        );
    }

    #[test]
    fn intervals_keep_going_through_the_repeated_hour() {
        // Every 30 minutes, through the hour New York repeats on 2025-11-02 (05:00Z–07:00Z).
        let s = Schedule::parse("*/30 * * * *", Some("America/New_York")).unwrap();
        assert_eq!(
            firings(&s, utc("2025-11-02T04:50:00Z"), 5),
            vec![
                utc("2025-11-02T05:00:00Z"),
                utc("2025-11-02T05:30:00Z"),
                utc("2025-11-02T06:00:00Z"),
                utc("2025-11-02T06:30:00Z"),
                utc("2025-11-02T07:00:00Z")
            ]
        );
    }

    #[test]
    fn a_schedule_that_never_fires_has_no_next() {
        let s = Schedule::parse("0 0 30 2 *", None).unwrap();
        assert_eq!(s.next_after(utc("2025-01-01T00:00:00Z")), None);
    }

    #[test]
    fn bad_schedules_say_what_is_wrong_and_show_an_example() {
        for (schedule, timezone, why) in [
            ("", None, "empty"),
            ("   ", None, "empty"),
            ("* * * *", None, "4 fields"),
            ("0 0 * * * * 2030", None, "7 fields"),
            ("61 * * * *", None, "not a cron schedule"),
            ("* 25 * * *", None, "not a cron schedule"),
            ("* * * 13 *", None, "not a cron schedule"),
            ("* * * * 8", None, "not a cron schedule"),
            ("every minute", None, "2 fields"),
            ("a b c d e", None, "not standard cron"),
            ("@every 5m", None, "@every"),
            ("@sometimes", None, "nickname"),
            ("CRON_TZ=Europe/Berlin", None, "after CRON_TZ=Zone"),
            ("CRON_TZ= 0 9 * * *", None, "after CRON_TZ=Zone"),
        ] {
            let err = Schedule::parse(schedule, timezone).unwrap_err();
            assert!(err.contains(why), "{schedule:?}: {err}");
            assert!(err.contains("e.g."), "{schedule:?}: {err}");
        }
    }

    /// Found by fuzzing (`small_parsers`): a field of only a comma matched nothing, and the
    /// search for the next time took over 100 s of CPU instead of answering.
    #[test]
    fn fields_with_empty_items_are_refused() {
        for schedule in [
            ", * * * *",
            "0 , * * *",
            "0 0 , * *",
            "0 0 * ,, *",
            "0 0 * * +",
            "0 0 * * 1,",
            ",5 * * * * *",
        ] {
            let err = Schedule::parse(schedule, None).unwrap_err();
            assert!(err.contains("empty item"), "{schedule:?}: {err}");
            assert!(err.contains("e.g."), "{schedule:?}: {err}");
        }
        assert!(Schedule::parse("0,30 9-17 * * 1-5", None).is_ok());
    }

    #[test]
    fn croners_extensions_are_refused_as_knative_refuses_them() {
        // `* * 4 * +L` made the next-time search take over 5 s (the fuzzer's timeout).
        for schedule in [
            "* * 4 * +L",
            "0 0 L * *",
            "0 0 * * 5L",
            "0 0 15W * *",
            "0 0 * * MON#2",
            "0 0 * * +MON",
        ] {
            let err = Schedule::parse(schedule, None).unwrap_err();
            assert!(
                err.contains("not standard cron") && err.contains("no L, W, # or +"),
                "{schedule:?}: {err}"
            );
        }
        for schedule in [
            "*/5 * * * *",
            "0 9 * JAN-MAR mon-fri",
            "0 0 ? * SUN",
            "0 0 1,15 * *",
            "5 */2 * * * *",
        ] {
            assert!(Schedule::parse(schedule, None).is_ok(), "{schedule:?}");
        }
    }

    #[test]
    fn bad_zones_say_what_is_wrong() {
        let err = Schedule::parse("0 9 * * *", Some("Mars/Olympus")).unwrap_err();
        assert!(err.contains("'Mars/Olympus' is not an IANA time zone"), "{err}");
        assert!(err.contains("Europe/Berlin"), "{err}");
        let err = Schedule::parse("CRON_TZ=Nowhere 0 9 * * *", None).unwrap_err();
        assert!(err.contains("'Nowhere'"), "{err}");
        let err = Schedule::parse("CRON_TZ=Europe/Berlin 0 9 * * *", Some("Asia/Tokyo")).unwrap_err();
        assert!(err.contains("give the zone once"), "{err}");
    }

    // --- events ---

    #[test]
    fn text_data_goes_as_is_with_its_content_type() {
        let event = ping_event_parts(&source(
            Some(PingData::Text(r#"{"beat": 1}"#.to_string())),
            Some("application/json"),
        ));
        assert_eq!(
            event,
            PingEvent {
                type_: "dev.knative.sources.ping".to_string(),
                source: "/apis/v1/namespaces/default/pingsources/heartbeat".to_string(),
                content_type: Some("application/json".to_string()),
                data: Bytes::from_static(br#"{"beat": 1}"#),
            }
        );
    }

    #[test]
    fn data_without_a_content_type_has_none() {
        let event = ping_event_parts(&source(Some(PingData::Text("hello".to_string())), None));
        assert_eq!(event.content_type, None);
        assert_eq!(event.data, Bytes::from_static(b"hello"));
    }

    #[test]
    fn base64_data_is_decoded() {
        let event = ping_event_parts(&source(
            Some(PingData::Base64("AAEC/w==".to_string())),
            Some("application/octet-stream"),
        ));
        assert_eq!(event.data, Bytes::from_static(&[0, 1, 2, 255]));
        assert_eq!(event.content_type.as_deref(), Some("application/octet-stream"));
    }

    #[test]
    fn no_data_sends_an_empty_event_without_content_type() {
        let event = ping_event_parts(&source(None, Some("application/json")));
        assert_eq!((event.data, event.content_type), (Bytes::new(), None));
        assert_eq!(event.type_, PING_EVENT_TYPE);
    }

    #[test]
    fn undecodable_base64_sends_no_data() {
        let event = ping_event_parts(&source(Some(PingData::Base64("%%%".to_string())), Some("text/plain")));
        assert_eq!((event.data, event.content_type), (Bytes::new(), None));
    }
}
