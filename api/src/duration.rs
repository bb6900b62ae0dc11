//! Durations as config files and flags write them: `"60s"`, `"500ms"`, `"2m"`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses `"60s"`, `"1.5s"`, `"250ms"`, `"2m"`: a number and a unit (ms, s, m, h).
///
/// Exactly, in integer nanoseconds: through `f64`, `"90807876197ms"` came back one millisecond
/// short, so an annotation printed as milliseconds did not read back to itself. Fraction
/// digits below the nanosecond are dropped.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(format!(
            "'{s}' is not a duration; write a number and a unit, e.g. \"60s\" or \"500ms\""
        ));
    }
    let unit_nanos: u128 = match unit.trim() {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(format!("'{s}' has no known unit; use ms, s, m or h, e.g. \"60s\"")),
    };
    let out_of_range = || format!("'{s}' is out of range");
    // Both parts are ASCII digits (or empty): a parse fails only by overflowing.
    let digits = |d: &str| if d.is_empty() { Some(0) } else { d.parse::<u128>().ok() };
    // 18 fraction digits are below a nanosecond even for hours, and keep the product in u128.
    let fraction = &fraction[..fraction.len().min(18)];
    let scale = 10u128.pow(fraction.len() as u32);
    let nanos = digits(whole)
        .and_then(|w| w.checked_mul(unit_nanos))
        .zip(digits(fraction))
        .and_then(|(w, f)| w.checked_add(f * unit_nanos / scale))
        .filter(|nanos| *nanos <= MAX_NANOS)
        .ok_or_else(out_of_range)?;
    Ok(Duration::new(
        (nanos / 1_000_000_000) as u64,
        (nanos % 1_000_000_000) as u32,
    ))
}

/// The longest duration accepted: 10^9 seconds (about 31 years), in nanoseconds.
const MAX_NANOS: u128 = 1_000_000_000 * 1_000_000_000;

/// Deserializes a duration written as a string (`"60s"`): `#[serde(deserialize_with = ...)]`.
pub fn deserialize_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("60").unwrap_err().contains("unit"));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_duration(".5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2.m").unwrap(), Duration::from_secs(120));
        for bad in [".s", "1.2.3s", "", "s"] {
            assert!(parse_duration(bad).unwrap_err().contains("not a duration"), "{bad}");
        }
        assert!(parse_duration("1000000001s").unwrap_err().contains("out of range"));
        assert!(
            parse_duration(&format!("{}s", "9".repeat(50)))
                .unwrap_err()
                .contains("out of range")
        );
        assert_eq!(
            parse_duration("1000000000s").unwrap(),
            Duration::from_secs(1_000_000_000)
        );
    }

    /// Found by `durations_round_trip`: through `f64`, this came back as 90807876196 ms.
    #[test]
    fn large_millisecond_counts_are_exact() {
        assert_eq!(
            parse_duration("90807876197ms").unwrap(),
            Duration::from_millis(90_807_876_197)
        );
        assert_eq!(
            parse_duration("481364743380ms").unwrap(),
            Duration::from_millis(481_364_743_380)
        );
        assert_eq!(parse_duration("0.000000001s").unwrap(), Duration::from_nanos(1));
        assert_eq!(
            parse_duration("0.0000000019s").unwrap(),
            Duration::from_nanos(1),
            "below 1 ns is dropped"
        );
    }

    proptest! {
        /// Any text: a duration within the bound or an error, never a panic.
        #[test]
        fn any_text_gets_an_answer(s in "\\PC{0,24}|[0-9. ]{0,12}(ms|s|m|h|x)?[ ]?") {
            if let Ok(d) = parse_duration(&s) {
                prop_assert!(d <= Duration::from_secs(1_000_000_000), "{s:?} is {d:?}");
            }
        }

        /// A whole number of any unit is that many of it, up to the bound and refused past it.
        #[test]
        fn whole_amounts_parse_exactly(n in 0u64..2_000_000_000_000, unit in 0usize..4) {
            let (suffix, ms) = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)][unit];
            let parsed = parse_duration(&format!(" {n}{suffix} "));
            match n.checked_mul(ms).filter(|ms| *ms <= 1_000_000_000_000) {
                Some(ms) => prop_assert_eq!(parsed, Ok(Duration::from_millis(ms))),
                None => prop_assert!(parsed.unwrap_err().contains("out of range")),
            }
        }

        /// What annotations print (`"90s"`, `"1234ms"`) reads back to the same milliseconds,
        /// and any duration written in seconds to the nanosecond reads back to itself.
        #[test]
        fn durations_round_trip(ms in 0u64..=1_000_000_000_000, nanos in 0u32..1_000_000_000) {
            prop_assert_eq!(parse_duration(&format!("{ms}ms")), Ok(Duration::from_millis(ms)));
            let d = Duration::new(ms / 1000, nanos);
            let printed = format!("{}.{:09}s", d.as_secs(), d.subsec_nanos());
            prop_assert_eq!(parse_duration(&printed), Ok(d), "{}", printed);
        }
    }
}
