//! How long to wait before restarting a revision whose instances keep failing.

use std::time::Duration;

/// Delay before the next start after `failures` failures in a row: `base × 2^(failures-1)`,
/// at most `max`; no delay before the first start.
pub(crate) fn restart_delay(failures: u32, base: Duration, max: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 2u32.saturating_pow(failures - 1);
    base.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(restart_delay(0, s(1), s(60)), s(0));
        assert_eq!(restart_delay(1, s(1), s(60)), s(1));
        assert_eq!(restart_delay(2, s(1), s(60)), s(2));
        assert_eq!(restart_delay(4, s(1), s(60)), s(8));
        assert_eq!(restart_delay(7, s(1), s(60)), s(60));
        assert_eq!(restart_delay(100, s(1), s(60)), s(60));
    }
}
