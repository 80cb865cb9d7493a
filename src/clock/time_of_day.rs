//! The time of day, for what is compared with other machines' clocks: a
//! provider's signature timestamp, the `webhook-timestamp` (and signature)
//! we send, certificate validity, an HTTP-date `Retry-After`.
//!
//! It is the scheduling time ([`super::now`]) moved by the wall clock's step
//! since the anchor: how far `SystemTime::now()` is from the anchor's wall
//! time advanced by the monotonic clock. A clock NTP steps while the daemon
//! runs (no RTC at boot, a VM restored, a suspend) is followed at once.
//! Differences under [`IGNORED`] are not followed (slew, the gap between
//! two reads), so the value is stable: with tokio's clock paused it stands
//! exactly still, and moves exactly with `advance`, as the scheduling time
//! does (tests of signature staleness rely on that).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A change of the wall clock's step smaller than this is not followed.
const IGNORED: Duration = Duration::from_secs(1);

/// The step followed, in milliseconds (positive: the wall clock is ahead of
/// the anchored time).
static STEP_MS: AtomicI64 = AtomicI64::new(0);

/// The current time of day.
pub fn time_of_day() -> SystemTime {
    let kept = STEP_MS.load(Ordering::Relaxed);
    let step = follow(kept, measured_step_ms());
    if step != kept {
        STEP_MS.store(step, Ordering::Relaxed);
    }
    shift(super::now(), step)
}

/// [`time_of_day`] in seconds since the Unix epoch (signature timestamps).
pub fn now_secs() -> i64 {
    time_of_day()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// How far the wall clock is from the anchor's wall time advanced by the
/// monotonic clock, in milliseconds.
fn measured_step_ms() -> i64 {
    let (wall, at) = super::anchor();
    let expected = wall + at.elapsed();
    let actual = SystemTime::now();
    match actual.duration_since(expected) {
        Ok(ahead) => ahead.as_millis().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_millis().min(i64::MAX as u128) as i64),
    }
}

/// The step to follow: `measured` when it differs from the `kept` one by
/// [`IGNORED`] or more, else the kept one.
fn follow(kept: i64, measured: i64) -> i64 {
    if measured.abs_diff(kept) >= IGNORED.as_millis() as u64 {
        measured
    } else {
        kept
    }
}

fn shift(t: SystemTime, step_ms: i64) -> SystemTime {
    let d = Duration::from_millis(step_ms.unsigned_abs());
    if step_ms >= 0 {
        t + d
    } else {
        t.checked_sub(d).unwrap_or(UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_a_step_of_a_second_or_more_and_ignores_smaller_ones() {
        assert_eq!(follow(0, 3), 0, "jitter between reads");
        assert_eq!(follow(0, 999), 0, "slew");
        assert_eq!(follow(0, -3_600_000), -3_600_000, "stepped back an hour");
        assert_eq!(follow(-3_600_000, -3_600_400), -3_600_000, "stable once followed");
        assert_eq!(follow(-3_600_000, 2), 2, "stepped forward again");
        let t = UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(shift(t, -2_000), t - Duration::from_secs(2));
        assert_eq!(shift(t, 1_500), t + Duration::from_millis(1_500));
    }

    #[tokio::test(start_paused = true)]
    async fn stands_still_while_tokios_clock_is_paused_and_moves_with_advance() {
        let first = time_of_day();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(time_of_day(), first);
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(time_of_day(), first + Duration::from_secs(600));
    }

    #[test]
    fn is_the_hosts_time_of_day() {
        let real = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        assert!(now_secs().abs_diff(real) <= 2);
    }
}
