//! ISO-8601 durations, as Knative's delivery spec writes them (PT0.2S, PT30S, P1D).

use std::time::Duration;

pub(super) const ISO8601_EXAMPLES: &str = "write an ISO-8601 duration, e.g. PT0.2S, PT30S, PT1M or P1D";

/// Parses an ISO-8601 duration as Knative's `backoffDelay` and `timeout` write it: `PT0.2S`,
/// `PT1M30S`, `PT1.5S`, `P1D`, `P1DT12H`, `P2W`. Lowercase is accepted. Years and months are
/// refused (they have no fixed length); only the last part may have a fraction (`.` or `,`).
pub fn parse_iso8601_duration(s: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("not an ISO-8601 duration: {why}; {ISO8601_EXAMPLES}");
    let text = s.trim().to_ascii_uppercase();
    let Some(rest) = text.strip_prefix('P') else {
        return Err(bad("it starts with P"));
    };
    let mut total: u128 = 0;
    let mut number = String::new();
    let mut in_time = false;
    // Rank of the last unit read, so that each comes once and the largest first.
    let mut last_rank = 0;
    let mut had_fraction = false;
    for c in rest.chars() {
        match c {
            '0'..='9' | '.' | ',' => number.push(c),
            'T' if !in_time && number.is_empty() => in_time = true,
            'T' => return Err(bad("T comes once, right before the hours, minutes and seconds")),
            unit => {
                let (rank, unit_seconds) = match (in_time, unit) {
                    (false, 'Y') | (false, 'M') => {
                        return Err(bad("years and months have no fixed length; use days (P30D) or hours"));
                    }
                    (false, 'W') => (1, 7 * 86_400),
                    (false, 'D') => (2, 86_400),
                    (true, 'H') => (3, 3_600),
                    (true, 'M') => (4, 60),
                    (true, 'S') => (5, 1),
                    (false, 'H' | 'S') => return Err(bad("hours and seconds come after T, as in PT1H or PT5S")),
                    (true, 'W' | 'D') => return Err(bad("weeks and days come before T, as in P1DT2H")),
                    _ => return Err(bad(&format!("'{unit}' is not a unit (W, D, H, M or S)"))),
                };
                if number.is_empty() {
                    return Err(bad(&format!("'{unit}' has no number before it")));
                }
                if rank <= last_rank {
                    return Err(bad("each unit comes at most once, largest first (P1DT2H3M4S)"));
                }
                if had_fraction {
                    return Err(bad("only the last part may have a fraction"));
                }
                let (nanos, fraction) =
                    amount_nanos(&number, unit_seconds).ok_or_else(|| bad("a number is malformed"))?;
                total = total.checked_add(nanos).ok_or_else(|| bad("it is too long"))?;
                had_fraction = fraction;
                last_rank = rank;
                number.clear();
            }
        }
    }
    if !number.is_empty() {
        return Err(bad(&format!("'{number}' at the end has no unit")));
    }
    if last_rank == 0 {
        return Err(bad("it has no amount"));
    }
    if in_time && last_rank < 3 {
        return Err(bad("T is followed by hours, minutes or seconds, as in PT1S"));
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad("it is too long"))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// `number` (digits, optionally a fraction after `.` or `,`) times `unit_seconds`, in
/// nanoseconds, and whether it had a fraction. Fraction digits past the nanosecond are dropped.
pub(super) fn amount_nanos(number: &str, unit_seconds: u128) -> Option<(u128, bool)> {
    const NANOS: u128 = 1_000_000_000;
    let (whole, fraction) = match number.split_once(['.', ',']) {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (number, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || whole.len() > 20 {
        return None;
    }
    let unit_nanos = unit_seconds * NANOS;
    let mut nanos = whole.parse::<u128>().ok()?.checked_mul(unit_nanos)?;
    if let Some(fraction) = fraction {
        if !digits(fraction) {
            return None;
        }
        // 18 digits are below a nanosecond even for weeks, and keep the product within u128.
        let fraction = &fraction[..fraction.len().min(18)];
        let scale = 10u128.pow(fraction.len() as u32);
        nanos = nanos.checked_add(fraction.parse::<u128>().ok()? * unit_nanos / scale)?;
    }
    Some((nanos, fraction.is_some()))
}

/// Formats a duration as ISO-8601, the way [`parse_iso8601_duration`] reads it back exactly:
/// `PT0.2S`, `PT1M30S`, `P1DT2H`, `PT0S`.
pub fn format_iso8601_duration(d: Duration) -> String {
    use std::fmt::Write as _;
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    if secs == 0 && nanos == 0 {
        return "PT0S".to_string();
    }
    let (days, hours, minutes, seconds) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60, secs % 60);
    let mut out = String::from("P");
    if days > 0 {
        let _ = write!(out, "{days}D");
    }
    if hours > 0 || minutes > 0 || seconds > 0 || nanos > 0 {
        out.push('T');
        if hours > 0 {
            let _ = write!(out, "{hours}H");
        }
        if minutes > 0 {
            let _ = write!(out, "{minutes}M");
        }
        if nanos > 0 {
            let fraction = format!("{nanos:09}");
            let _ = write!(out, "{seconds}.{}S", fraction.trim_end_matches('0'));
        } else if seconds > 0 {
            let _ = write!(out, "{seconds}S");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any text, and text near the grammar: a duration or an error that shows the examples.
        #[test]
        fn any_text_gets_an_answer(s in "\\PC{0,24}|[pP][0-9.,WDTHMSYwdthmsy]{0,16}") {
            match parse_iso8601_duration(&s) {
                Ok(d) => prop_assert_eq!(parse_iso8601_duration(&format_iso8601_duration(d)), Ok(d)),
                Err(e) => prop_assert!(e.contains(ISO8601_EXAMPLES), "{}", e),
            }
        }

        /// `PnWnDTnHnMn.nS`, each part present or not: the sum of its parts, to the nanosecond.
        #[test]
        fn generated_durations_are_the_sum_of_their_parts(
            weeks in proptest::option::of(0u64..1_000),
            days in proptest::option::of(0u64..100_000),
            hours in proptest::option::of(0u64..100_000),
            minutes in proptest::option::of(0u64..100_000),
            seconds in proptest::option::of((0u64..100_000, proptest::option::of("[0-9]{1,12}"))),
            lowercase in any::<bool>(),
        ) {
            let mut text = String::from("P");
            let mut nanos: u128 = 0;
            for (amount, unit, unit_seconds) in [(weeks, 'W', 7 * 86_400), (days, 'D', 86_400)] {
                if let Some(n) = amount {
                    text.push_str(&format!("{n}{unit}"));
                    nanos += u128::from(n) * unit_seconds * 1_000_000_000;
                }
            }
            if hours.is_some() || minutes.is_some() || seconds.is_some() {
                text.push('T');
            }
            for (amount, unit, unit_seconds) in [(hours, 'H', 3_600), (minutes, 'M', 60)] {
                if let Some(n) = amount {
                    text.push_str(&format!("{n}{unit}"));
                    nanos += u128::from(n) * unit_seconds * 1_000_000_000;
                }
            }
            if let Some((whole, fraction)) = &seconds {
                text.push_str(&whole.to_string());
                nanos += u128::from(*whole) * 1_000_000_000;
                if let Some(fraction) = fraction {
                    text.push_str(&format!(".{fraction}S"));
                    let digits = format!("{fraction:0<9}");
                    nanos += digits[..9].parse::<u128>().unwrap();
                } else {
                    text.push('S');
                }
            }
            if lowercase {
                text = text.to_lowercase();
            }
            let parsed = parse_iso8601_duration(&text);
            if text.len() == 1 {
                prop_assert!(parsed.is_err(), "{}", text);
            } else {
                let want = Duration::new((nanos / 1_000_000_000) as u64, (nanos % 1_000_000_000) as u32);
                prop_assert_eq!(parsed, Ok(want), "{}", text);
            }
        }

        /// Years and months have no fixed length; anywhere before T they are refused.
        #[test]
        fn years_and_months_are_refused(n in 0u64..1_000, unit in "[YM]", rest in "(T1S)?") {
            let e = parse_iso8601_duration(&format!("P{n}{unit}{rest}")).unwrap_err();
            prop_assert!(e.contains("no fixed length"), "{}", e);
        }
    }
}
