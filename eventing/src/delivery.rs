//! Delivery decisions as plain functions: which outcomes are retried, how long to wait before
//! the next attempt, and what a dead letter says about the failure. No I/O and no clock here;
//! the dispatcher sleeps and sends.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rouse_api::eventing::{BackoffPolicy, Delivery};

use crate::cloudevent::Event;

/// Base backoff delay when a trigger sets none. Knative then retries at once, which hammers a
/// subscriber that is failing because it is overloaded; 200 ms is the delay Knative's own
/// examples use (`PT0.2S`).
pub(crate) const DEFAULT_BACKOFF_DELAY: Duration = Duration::from_millis(200);
/// Per-attempt timeout when a trigger sets none. Knative sets none at all, so a subscriber that
/// never answers holds a delivery forever; 30 s leaves room for a cold start through the
/// activator (milliseconds to seconds) and a slow handler.
pub(crate) const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait between two attempts, whatever the policy (Knative's alpha `backoffMax`):
/// exponential backoff with many retries would otherwise wait for days.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Longest `knativeerrordata` value, in base64 characters (Knative's
/// `KnativeErrorDataExtensionMaxLength`).
pub(crate) const ERROR_DATA_MAX_CHARS: usize = 1024;

/// Subscriber URL of a failed delivery, on a dead letter.
pub(crate) const ERROR_DEST_EXTENSION: &str = "knativeerrordest";
/// Last HTTP status of a failed delivery, on a dead letter.
pub(crate) const ERROR_CODE_EXTENSION: &str = "knativeerrorcode";
/// Base64 of the start of the last response body of a failed delivery, on a dead letter.
pub(crate) const ERROR_DATA_EXTENSION: &str = "knativeerrordata";

/// How one delivery attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DeliveryOutcome {
    /// The subscriber answered with this HTTP status.
    Status(u16),
    /// No complete answer within the attempt's timeout.
    Timeout,
    /// The connection failed (refused, reset, closed early).
    Connection,
    /// The sink could not be resolved to an address (e.g. an unknown service).
    Unresolvable,
}

impl DeliveryOutcome {
    /// 2xx: delivered.
    pub(crate) fn is_success(&self) -> bool {
        matches!(self, DeliveryOutcome::Status(code) if (200..300).contains(code))
    }

    /// Whether another attempt may succeed where this one failed: 5xx, 404 (a service still
    /// starting), 408, 409, 429, and failures without a status. Other 4xx and 3xx say the
    /// event itself is refused, so retrying would only repeat the answer.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            DeliveryOutcome::Status(code) => *code >= 500 || matches!(code, 404 | 408 | 409 | 429),
            DeliveryOutcome::Timeout | DeliveryOutcome::Connection | DeliveryOutcome::Unresolvable => true,
        }
    }

    /// The status a dead letter reports. Failures without a response report 500, as Knative's
    /// dispatcher does, with the reason in `knativeerrordata`.
    pub(crate) fn error_code(&self) -> u16 {
        match self {
            DeliveryOutcome::Status(code) => *code,
            DeliveryOutcome::Timeout | DeliveryOutcome::Connection | DeliveryOutcome::Unresolvable => 500,
        }
    }

    /// The metric label: the status, or what happened instead. Common statuses need no
    /// allocation (this runs once per delivery).
    pub(crate) fn label(&self) -> Cow<'static, str> {
        match self {
            DeliveryOutcome::Status(200) => "200".into(),
            DeliveryOutcome::Status(201) => "201".into(),
            DeliveryOutcome::Status(202) => "202".into(),
            DeliveryOutcome::Status(204) => "204".into(),
            DeliveryOutcome::Status(code) => code.to_string().into(),
            DeliveryOutcome::Timeout => "timeout".into(),
            DeliveryOutcome::Connection => "connection".into(),
            DeliveryOutcome::Unresolvable => "unresolvable".into(),
        }
    }
}

/// What to do after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Delivered; nothing more to do.
    Delivered,
    /// Try again after this long.
    RetryAfter(Duration),
    /// No attempt left, or the failure is final: dead-letter the event.
    GiveUp,
}

/// The retry schedule of one trigger, from its delivery options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    pub backoff: BackoffPolicy,
    /// Base delay of the backoff.
    pub delay: Duration,
    /// Time one attempt may take, response body included.
    pub timeout: Duration,
}

impl RetryPolicy {
    pub(crate) fn from_delivery(delivery: &Delivery) -> Self {
        Self {
            retries: delivery.retry,
            backoff: delivery.backoff_policy,
            delay: delivery.backoff_delay.unwrap_or(DEFAULT_BACKOFF_DELAY),
            timeout: delivery.timeout.unwrap_or(DEFAULT_ATTEMPT_TIMEOUT),
        }
    }

    /// The wait before retry number `retry` (1 for the first retry): exponential
    /// `delay × 2^retry`, linear `delay × retry`, at most [`MAX_BACKOFF`].
    ///
    /// This is Knative's documented formula (and what its unit tests check). Its dispatcher
    /// actually passes go-retryablehttp's 0-based counter, so there the first linear retry is
    /// immediate and the first exponential one waits `delay`; we follow the documentation.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let factor: u128 = match self.backoff {
            BackoffPolicy::Exponential => 1u128.checked_shl(retry).unwrap_or(u128::MAX),
            BackoffPolicy::Linear => u128::from(retry),
        };
        let nanos = self.delay.as_nanos().saturating_mul(factor).min(MAX_BACKOFF.as_nanos());
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// What follows attempt number `attempt` (1 for the first) that ended with `outcome`.
    pub(crate) fn next(&self, attempt: u32, outcome: &DeliveryOutcome) -> Next {
        if outcome.is_success() {
            Next::Delivered
        } else if outcome.is_retryable() && attempt <= self.retries {
            Next::RetryAfter(self.backoff(attempt))
        } else {
            Next::GiveUp
        }
    }
}

/// `event` as sent to a dead-letter sink: the original, plus where it failed (`destination`,
/// the subscriber's URL), the last status and the start of the last response body (or the
/// reason, when there was no response).
pub(crate) fn dead_letter(event: &Event, destination: &str, outcome: &DeliveryOutcome, body: &[u8]) -> Event {
    // 3 bytes per 4 characters: the longest prefix whose encoding fits, still valid base64.
    let kept = &body[..body.len().min(ERROR_DATA_MAX_CHARS / 4 * 3)];
    let mut letter = event.clone();
    letter.set_extension(ERROR_DEST_EXTENSION, destination);
    letter.set_extension(ERROR_CODE_EXTENSION, outcome.error_code().to_string());
    letter.set_extension(ERROR_DATA_EXTENSION, BASE64.encode(kept));
    letter
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(retries: u32, backoff: BackoffPolicy, delay_ms: u64) -> RetryPolicy {
        RetryPolicy {
            retries,
            backoff,
            delay: Duration::from_millis(delay_ms),
            timeout: DEFAULT_ATTEMPT_TIMEOUT,
        }
    }

    #[test]
    fn retried_outcomes_are_knatives() {
        for code in [500, 502, 503, 504, 404, 408, 409, 429] {
            assert!(DeliveryOutcome::Status(code).is_retryable(), "{code}");
        }
        for code in [200, 202, 301, 400, 401, 403, 405, 410, 413, 422] {
            assert!(!DeliveryOutcome::Status(code).is_retryable(), "{code}");
        }
        assert!(DeliveryOutcome::Timeout.is_retryable());
        assert!(DeliveryOutcome::Connection.is_retryable());
        assert!(DeliveryOutcome::Unresolvable.is_retryable());
    }

    #[test]
    fn backoff_follows_knatives_documented_formula() {
        // Knative's retries_test: PT0.5S exponential → 1s, 2s, 4s; PT2.5S linear → 2.5s, 5s.
        let exponential = policy(5, BackoffPolicy::Exponential, 500);
        let waits: Vec<u64> = (1..=3).map(|n| exponential.backoff(n).as_millis() as u64).collect();
        assert_eq!(waits, [1000, 2000, 4000]);
        let linear = policy(5, BackoffPolicy::Linear, 2500);
        let waits: Vec<u64> = (1..=3).map(|n| linear.backoff(n).as_millis() as u64).collect();
        assert_eq!(waits, [2500, 5000, 7500]);
    }

    #[test]
    fn defaults_apply_when_delivery_sets_nothing() {
        let policy = RetryPolicy::from_delivery(&Delivery::default());
        assert_eq!(policy.retries, 0);
        assert_eq!(policy.delay, DEFAULT_BACKOFF_DELAY);
        assert_eq!(policy.timeout, DEFAULT_ATTEMPT_TIMEOUT);
        assert_eq!(
            policy.next(1, &DeliveryOutcome::Status(503)),
            Next::GiveUp,
            "retry 0 means one attempt"
        );
    }

    #[test]
    fn next_retries_until_the_last_attempt_and_never_on_final_failures() {
        let p = policy(2, BackoffPolicy::Linear, 10);
        assert_eq!(p.next(1, &DeliveryOutcome::Status(202)), Next::Delivered);
        assert_eq!(
            p.next(1, &DeliveryOutcome::Status(503)),
            Next::RetryAfter(Duration::from_millis(10))
        );
        assert_eq!(
            p.next(2, &DeliveryOutcome::Timeout),
            Next::RetryAfter(Duration::from_millis(20))
        );
        assert_eq!(p.next(3, &DeliveryOutcome::Status(503)), Next::GiveUp);
        assert_eq!(p.next(1, &DeliveryOutcome::Status(400)), Next::GiveUp);
    }

    #[test]
    fn dead_letters_carry_destination_code_and_bounded_base64_body() {
        let event = Event::new("1", "/s", "t");
        let letter = dead_letter(
            &event,
            "http://sub.localhost/",
            &DeliveryOutcome::Status(503),
            b"overloaded",
        );
        assert_eq!(letter.extension(ERROR_DEST_EXTENSION), Some("http://sub.localhost/"));
        assert_eq!(letter.extension(ERROR_CODE_EXTENSION), Some("503"));
        assert_eq!(letter.extension(ERROR_DATA_EXTENSION), Some("b3ZlcmxvYWRlZA=="));
        let big = vec![b'x'; 5000];
        let letter = dead_letter(&event, "u", &DeliveryOutcome::Timeout, &big);
        let data = letter.extension(ERROR_DATA_EXTENSION).unwrap();
        assert_eq!(data.len(), ERROR_DATA_MAX_CHARS);
        assert_eq!(BASE64.decode(data).unwrap(), vec![b'x'; 768]);
        assert_eq!(letter.extension(ERROR_CODE_EXTENSION), Some("500"));
    }

    proptest! {
        #[test]
        fn backoff_grows_and_stays_bounded(delay_ms in 0u64..100_000, retry in 1u32..200, linear: bool) {
            let p = policy(200, if linear { BackoffPolicy::Linear } else { BackoffPolicy::Exponential }, delay_ms);
            prop_assert!(p.backoff(retry) <= MAX_BACKOFF);
            prop_assert!(p.backoff(retry) <= p.backoff(retry + 1));
        }
    }
}
