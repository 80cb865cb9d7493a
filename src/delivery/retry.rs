//! The retry schedule as a value: the delays between attempts (each ±20 %
//! jitter), how a subscriber's `Retry-After` lengthens one (never shortens
//! it, capped by `max_retry_after`, then spread like the delays), and what a
//! subscriber's answer means.

use std::time::{Duration, SystemTime};

use http::{HeaderValue, StatusCode};

/// A validated retry schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    /// Delay before retry 1, 2, …; then dead letter.
    steps: Vec<Duration>,
    /// The longest `Retry-After` a subscriber may ask for.
    max_retry_after: Duration,
}

/// Why a schedule is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the retry schedule is empty: give at least one delay (e.g. [\"5s\", \"1m\"])")]
    Empty,
    #[error("delay {0} of the retry schedule is zero")]
    ZeroStep(usize),
}

/// ±20 %: retries of many deliveries that failed together spread out.
const JITTER: f64 = 0.2;

impl RetrySchedule {
    pub fn new(steps: Vec<Duration>, max_retry_after: Duration) -> Result<RetrySchedule, ScheduleError> {
        if steps.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if let Some(i) = steps.iter().position(Duration::is_zero) {
            return Err(ScheduleError::ZeroStep(i));
        }
        Ok(RetrySchedule { steps, max_retry_after })
    }

    pub fn steps(&self) -> &[Duration] {
        &self.steps
    }

    pub fn max_retry_after(&self) -> Duration {
        self.max_retry_after
    }

    /// The wait before retry `step` (0-based) after a failure, when the
    /// subscriber asked for `retry_after`; None once the schedule is exhausted.
    pub fn next_delay(&self, step: u32, retry_after: Option<Duration>) -> Option<Duration> {
        self.delay_with(step, retry_after, fastrand::f64())
    }

    /// [`next_delay`](Self::next_delay) with the jitter's random draw (0..1) given.
    pub fn delay_with(&self, step: u32, retry_after: Option<Duration>, draw: f64) -> Option<Duration> {
        let base = *self.steps.get(step as usize)?;
        let draw = draw.clamp(0.0, 1.0);
        let scheduled = stretch(base, 1.0 - JITTER + 2.0 * JITTER * draw);
        // A `Retry-After` (capped) is spread like the schedule's delays, up
        // to 20 % longer: many deliveries told to wait the same time must
        // not all come back in one second (at the cap too).
        Some(retry_after.map_or(scheduled, |a| {
            scheduled.max(stretch(a.min(self.max_retry_after), 1.0 + JITTER * draw))
        }))
    }

    /// The longest one wait of the schedule can be: its longest delay, or
    /// the `Retry-After` cap if that is longer, +20 % (the jitter).
    pub fn longest_delay(&self) -> Duration {
        let step = self.steps.iter().max().copied().unwrap_or_default();
        stretch(step.max(self.max_retry_after), 1.0 + JITTER)
    }

    /// How long the whole schedule can take at the most (every delay +20 %).
    pub fn longest_span(&self) -> Duration {
        let sum = self.steps.iter().fold(Duration::ZERO, |t, d| t.saturating_add(*d));
        stretch(sum, 1.0 + JITTER)
    }

    /// How long the whole schedule can take when the subscriber answers
    /// every attempt with the longest `Retry-After` it may ask for: each
    /// delay is then itself or `max_retry_after`, whichever is longer, +20 %.
    pub fn longest_span_with_retry_after(&self) -> Duration {
        self.steps
            .iter()
            .map(|d| stretch((*d).max(self.max_retry_after), 1.0 + JITTER))
            .fold(Duration::ZERO, Duration::saturating_add)
    }
}

/// `d` times `k`, at most [`Duration::MAX`] (a delay configured absurdly
/// long must not panic a delivery).
fn stretch(d: Duration, k: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * k).unwrap_or(Duration::MAX)
}

/// What a subscriber's answer means for the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// 410: never again.
    Gone,
    /// Retry; no sooner than the given delay when the subscriber asked for one.
    Retry {
        after: Option<Duration>,
    },
}

/// Classify a subscriber's status and `Retry-After` (which counts on
/// 429/502/503/504, the answers Standard Webhooks says to slow down on).
pub fn classify(status: StatusCode, retry_after: Option<&HeaderValue>, now: SystemTime) -> Verdict {
    if status.is_success() {
        return Verdict::Delivered;
    }
    if status == StatusCode::GONE {
        return Verdict::Gone;
    }
    let after = if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
        retry_after
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now))
    } else {
        None
    };
    Verdict::Retry { after }
}

/// What a delta-seconds too large to represent stands for: "very long"
/// (RFC 9111's 2^31 s), so that it is capped like any long wait rather
/// than ignored.
const HUGE_DELTA: Duration = Duration::from_secs(1 << 31);

/// `Retry-After` as delta-seconds (digits only) or an HTTP date.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(v.parse::<u64>().map_or(HUGE_DELTA, Duration::from_secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn schedules_are_validated() {
        assert_eq!(RetrySchedule::new(vec![], s(1)), Err(ScheduleError::Empty));
        assert_eq!(
            RetrySchedule::new(vec![s(1), s(0)], s(1)),
            Err(ScheduleError::ZeroStep(1))
        );
    }

    #[test]
    fn the_longest_delay_bounds_every_wait() {
        let r = RetrySchedule::new(vec![s(100), s(10)], s(60)).unwrap();
        assert_eq!(r.longest_delay(), s(120));
        for step in 0..2 {
            for after in [None, Some(s(30)), Some(s(100_000))] {
                assert!(r.delay_with(step, after, 1.0).unwrap() <= r.longest_delay());
            }
        }
        let r = RetrySchedule::new(vec![s(5)], s(3600)).unwrap();
        assert_eq!(r.longest_delay(), s(4320), "the Retry-After cap, spread");
    }

    #[test]
    fn delays_stay_within_the_jitter_bounds() {
        let r = RetrySchedule::new(vec![s(100), s(10)], s(3600)).unwrap();
        assert_eq!(r.delay_with(0, None, 0.0), Some(s(80)));
        assert_eq!(r.delay_with(0, None, 1.0), Some(s(120)));
        for _ in 0..1000 {
            let d = r.next_delay(0, None).unwrap();
            assert!(d >= s(80) && d <= s(120), "{d:?}");
        }
        assert_eq!(r.next_delay(2, None), None, "exhausted");
        assert_eq!(r.longest_span(), s(132));
    }

    #[test]
    fn retry_after_only_lengthens_the_schedule() {
        let r = RetrySchedule::new(vec![s(5), s(7200)], s(3600)).unwrap();
        assert_eq!(r.delay_with(0, None, 0.5), Some(s(5)));
        assert_eq!(r.delay_with(0, Some(s(0)), 0.5), Some(s(5)));
        assert_eq!(r.delay_with(0, Some(s(60)), 0.0), Some(s(60)));
        assert_eq!(r.delay_with(0, Some(s(86400)), 0.0), Some(s(3600)), "capped");
        assert_eq!(r.delay_with(1, Some(s(86400)), 0.0), Some(s(5760)), "never shortened");
        // A `Retry-After` is spread like the schedule: many deliveries told
        // to wait 60 s come back over 12 s, not in one second (before, all
        // at 60 s); at the cap too, and the wait grows with what is asked.
        assert_eq!(r.delay_with(0, Some(s(60)), 0.5), Some(s(66)));
        assert_eq!(r.delay_with(0, Some(s(60)), 1.0), Some(s(72)));
        assert_eq!(r.delay_with(0, Some(s(3500)), 1.0), Some(s(4200)));
        assert_eq!(r.delay_with(0, Some(s(86400)), 0.5), Some(s(3960)));
        assert_eq!(r.delay_with(0, Some(s(86400)), 1.0), Some(s(4320)));
        for asked in [120, 3600, 86400] {
            let waits: std::collections::BTreeSet<Duration> = (0..100)
                .map(|i| r.delay_with(0, Some(s(asked)), f64::from(i) / 100.0).unwrap())
                .map(|d| Duration::from_secs(d.as_secs()))
                .collect();
            assert!(waits.len() >= 20, "{asked}: {waits:?}");
        }
        let mut last = Duration::ZERO;
        for asked in (3000..4000).step_by(50) {
            let wait = r.delay_with(0, Some(s(asked)), 0.3).unwrap();
            assert!(wait >= last, "asking {asked} s waits {wait:?}, less than asking less");
            last = wait;
        }
        // Every step lengthened to the cap (or itself, if longer), +20 %.
        assert_eq!(r.longest_span_with_retry_after(), s(4320 + 8640));
        assert_eq!(r.longest_delay(), s(8640));
        for step in 0..2 {
            assert!(r.delay_with(step, Some(s(86400)), 1.0).unwrap() <= r.longest_delay());
        }
        // Absurd values saturate, not panic.
        let huge = RetrySchedule::new(vec![Duration::MAX], Duration::MAX).unwrap();
        assert_eq!(huge.delay_with(0, Some(Duration::MAX), 1.0), Some(Duration::MAX));
        assert_eq!(huge.longest_span_with_retry_after(), Duration::MAX);
    }

    #[test]
    fn classify_status_codes() {
        let now = SystemTime::now();
        assert_eq!(classify(StatusCode::OK, None, now), Verdict::Delivered);
        assert_eq!(classify(StatusCode::NO_CONTENT, None, now), Verdict::Delivered);
        assert_eq!(classify(StatusCode::GONE, None, now), Verdict::Gone);
        assert_eq!(
            classify(StatusCode::FOUND, None, now),
            Verdict::Retry { after: None },
            "redirects fail"
        );
        assert_eq!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, None, now),
            Verdict::Retry { after: None }
        );
        let ra = HeaderValue::from_static("7");
        for status in [StatusCode::TOO_MANY_REQUESTS, StatusCode::SERVICE_UNAVAILABLE] {
            assert_eq!(classify(status, Some(&ra), now), Verdict::Retry { after: Some(s(7)) });
        }
        assert_eq!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, Some(&ra), now),
            Verdict::Retry { after: None },
            "Retry-After only counts on 429/502/503/504"
        );
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now), Some(s(60)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:40:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_after_huge_or_signed_seconds() {
        let now = SystemTime::now();
        // Too many digits for any integer: a very long wait (then capped), not none.
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(HUGE_DELTA));
        assert_eq!(parse_retry_after("18446744073709551615", now), Some(s(u64::MAX)));
        // Not delta-seconds: ignored.
        for v in ["-5", "+5", "1.5", "", " ", "5s"] {
            assert_eq!(parse_retry_after(v, now), None, "{v:?}");
        }
        let r = RetrySchedule::new(vec![s(5)], s(3600)).unwrap();
        let huge = HeaderValue::from_static("99999999999999999999999");
        let Verdict::Retry { after } = classify(StatusCode::TOO_MANY_REQUESTS, Some(&huge), now) else {
            panic!("a 429 is retried");
        };
        assert_eq!(r.delay_with(0, after, 0.0), Some(s(3600)), "capped at max_retry_after");
        assert_eq!(r.delay_with(0, after, 1.0), Some(s(4320)), "then spread");
    }

    #[test]
    fn retry_after_counts_on_bad_gateway_and_gateway_timeout() {
        let now = SystemTime::now();
        let ra = HeaderValue::from_static("7");
        for status in [StatusCode::BAD_GATEWAY, StatusCode::GATEWAY_TIMEOUT] {
            assert_eq!(classify(status, Some(&ra), now), Verdict::Retry { after: Some(s(7)) });
        }
    }
}
