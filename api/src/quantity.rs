//! Kubernetes resource quantities for CPU (`500m`, `1`, `0.5`) and memory (`128Mi`, `1G`, `1e9`).

/// CPU in millicores: `500m` = 500, `1` = 1000, `0.25` = 250.
pub fn parse_cpu(q: &str) -> Result<u64, String> {
    let hint = "write CPUs as cores (\"1\", \"0.5\") or millicores (\"500m\")";
    let millis = match q.strip_suffix('m') {
        Some(m) => m.parse::<f64>().map_err(|_| format!("is not a CPU quantity; {hint}"))?,
        None => q.parse::<f64>().map_err(|_| format!("is not a CPU quantity; {hint}"))? * 1000.0,
    };
    if !millis.is_finite() || !(1.0..=1e9).contains(&millis) {
        return Err(format!("is out of range; {hint}, at least 1m"));
    }
    Ok(millis.round() as u64)
}

/// Memory in bytes: binary suffixes `Ki Mi Gi Ti`, decimal `k M G T`, or a plain number.
pub fn parse_memory(q: &str) -> Result<u64, String> {
    let hint = "write memory as e.g. \"128Mi\", \"1Gi\" or \"500M\"";
    let bytes = quantity_bytes(q).ok_or_else(|| format!("is not a memory quantity; {hint}"))?;
    // Docker refuses limits under 6 MiB; say so here rather than at start.
    if !(6.0 * 1048576.0..=1e15).contains(&bytes) {
        return Err(format!("is out of range; {hint}, at least 6Mi"));
    }
    Ok(bytes.round() as u64)
}

/// A size in bytes written as a memory quantity (`10Mi`, `500k`, `1048576`), with no floor
/// of its own: for sizes other than a container's memory (a log file's, say).
pub fn parse_size(q: &str) -> Result<u64, String> {
    let hint = "write a size as e.g. \"10Mi\", \"512Ki\" or \"1G\"";
    let bytes = quantity_bytes(q).ok_or_else(|| format!("is not a size; {hint}"))?;
    if !(1.0..=1e15).contains(&bytes) {
        return Err(format!("is out of range; {hint}, at least 1 byte"));
    }
    Ok(bytes.round() as u64)
}

/// The bytes a memory quantity stands for; `None` when it is not one (or not finite).
fn quantity_bytes(q: &str) -> Option<f64> {
    const UNITS: [(&str, f64); 9] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("", 1.0),
    ];
    let (number, factor) = UNITS
        .iter()
        .find_map(|(suffix, factor)| q.strip_suffix(suffix).map(|n| (n, *factor)))
        .unwrap_or((q, 1.0));
    let value: f64 = number.parse().ok()?;
    Some(value * factor).filter(|bytes| bytes.is_finite())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn cpu_quantities() {
        assert_eq!(parse_cpu("500m"), Ok(500));
        assert_eq!(parse_cpu("1"), Ok(1000));
        assert_eq!(parse_cpu("0.25"), Ok(250));
        assert_eq!(parse_cpu("2.5"), Ok(2500));
        for bad in ["", "m", "one", "0", "-1", "0.1m", "1Gi"] {
            assert!(parse_cpu(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_quantities() {
        assert_eq!(parse_memory("128Mi"), Ok(128 * 1024 * 1024));
        assert_eq!(parse_memory("1Gi"), Ok(1 << 30));
        assert_eq!(parse_memory("500M"), Ok(500_000_000));
        assert_eq!(parse_memory("1e9"), Ok(1_000_000_000));
        assert_eq!(parse_memory("67108864"), Ok(67_108_864));
        for bad in ["", "Mi", "lots", "1Ki", "-5Mi", "128MB"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_have_no_memory_floor() {
        assert_eq!(parse_size("10Mi"), Ok(10 << 20));
        assert_eq!(parse_size("1Ki"), Ok(1024));
        assert_eq!(parse_size("500k"), Ok(500_000));
        for bad in ["", "0", "lots", "-1Ki", "10MB", "inf"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    /// Text near the grammar (numbers, fractions, exponents, suffixes) and any text at all.
    const QUANTITY_TEXT: &str = "\\PC{0,16}|-?[0-9]{0,20}(\\.[0-9]{0,6})?(e-?[0-9]{1,3})?(m|k|M|G|T|Ki|Mi|Gi|Ti|Ei)?";

    proptest! {
        #[test]
        fn any_text_gets_a_bounded_answer(q in QUANTITY_TEXT) {
            if let Ok(millis) = parse_cpu(&q) {
                prop_assert!((1..=1_000_000_000).contains(&millis), "{q:?} is {millis}m");
                prop_assert_eq!(parse_cpu(&format!("{millis}m")), Ok(millis));
            }
            if let Ok(bytes) = parse_memory(&q) {
                prop_assert!((6 << 20..=1_000_000_000_000_000).contains(&bytes), "{q:?} is {bytes}");
                prop_assert_eq!(parse_memory(&bytes.to_string()), Ok(bytes));
            }
            if let Ok(bytes) = parse_size(&q) {
                prop_assert!((1..=1_000_000_000_000_000).contains(&bytes), "{q:?} is {bytes}");
                prop_assert_eq!(parse_size(&bytes.to_string()), Ok(bytes));
            }
        }

        #[test]
        fn cpus_round_trip(millis in 1u64..=1_000_000_000, cores in 1u64..=1_000_000) {
            prop_assert_eq!(parse_cpu(&format!("{millis}m")), Ok(millis));
            prop_assert_eq!(parse_cpu(&cores.to_string()), Ok(cores * 1000));
        }

        #[test]
        fn suffixes_multiply(n in 1u64..100_000, unit in 0usize..8) {
            let (suffix, factor) = [
                ("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40),
                ("k", 1_000), ("M", 1_000_000), ("G", 1_000_000_000), ("T", 1_000_000_000_000),
            ][unit];
            let bytes = n * factor;
            let in_range = bytes <= 1_000_000_000_000_000;
            let size = parse_size(&format!("{n}{suffix}"));
            prop_assert_eq!(size.clone().ok(), in_range.then_some(bytes), "{}{}: {:?}", n, suffix, size);
            let memory = parse_memory(&format!("{n}{suffix}"));
            prop_assert_eq!(memory.is_ok(), in_range && bytes >= 6 << 20, "{}{}: {:?}", n, suffix, memory);
        }
    }
}
