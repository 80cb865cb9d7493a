//! The one clock: wall-clock time that follows tokio's clock.
//!
//! Due times, signature timestamps, the circuit and retention all read time
//! here. It is the real time of day, read afresh on every call (so a clock
//! that NTP steps, or that jumps after a suspend, is followed at once),
//! moved by however far tokio's clock is ahead of the monotonic clock: none
//! in production, where tokio's clock is the monotonic clock; in a test that
//! pauses tokio's clock (`start_paused`) and `advance`s it, the time
//! advanced, so nothing else is needed to test retry schedules or retention
//! without sleeping. (The time of day may step back: event ids keep their
//! own floor, see the stores' append.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The current time of day.
pub fn now() -> SystemTime {
    let tokio_now = tokio::time::Instant::now().into_std();
    let mono = std::time::Instant::now();
    shifted(SystemTime::now(), tokio_now, mono)
}

/// `wall` moved by how far `tokio_now` (tokio's clock) is from `mono` (the
/// monotonic clock read at the same time).
fn shifted(wall: SystemTime, tokio_now: std::time::Instant, mono: std::time::Instant) -> SystemTime {
    match tokio_now.checked_duration_since(mono) {
        Some(ahead) => wall + ahead,
        None => wall - mono.duration_since(tokio_now),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since the Unix epoch (signature timestamps).
pub fn now_secs() -> i64 {
    now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The tokio instant at which the wall clock reads `ms` (for sleeping until a due time).
pub fn instant_at(ms: u64) -> tokio::time::Instant {
    let now = now_ms();
    let base = tokio::time::Instant::now();
    if ms >= now {
        base + Duration::from_millis(ms - now)
    } else {
        base.checked_sub(Duration::from_millis(now - ms)).unwrap_or(base)
    }
}

/// Due work that could not be taken yet is looked at again after this
/// (never a busy loop).
pub const RECHECK: Duration = Duration::from_millis(10);

/// A delivery lane copies its queue depth from the store at least this
/// often, also while it has nothing to do (an open circuit, no puller): in
/// cluster mode the store counts the backlog apart from the lane.
pub const DEPTH_REFRESH: Duration = Duration::from_secs(1);

/// A ticker at [`DEPTH_REFRESH`] for a lane's loop (missed ticks skipped).
pub fn depth_refresh() -> tokio::time::Interval {
    let mut t = tokio::time::interval(DEPTH_REFRESH);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    t
}

/// When a loop that takes due work from the store (a delivery lane, the
/// archiver) should look again, having taken `took` of its free `capacity`
/// at `now`: at once when it filled its capacity (more may be due) or when
/// work came due while it took some; at the next due time; shortly when
/// work was added after the take; not at all (until woken) when it has no
/// free capacity or nothing is due.
pub fn next_wake(
    capacity: usize,
    took: usize,
    next_due_ms: Option<u64>,
    now: tokio::time::Instant,
) -> Option<tokio::time::Instant> {
    if capacity == 0 {
        return None;
    }
    if took == capacity {
        return Some(now);
    }
    next_due_ms.map(|due| {
        if due > now_ms() {
            instant_at(due)
        } else if took > 0 {
            now
        } else {
            now + RECHECK
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_loops_wake_when_something_can_be_due() {
        let now = tokio::time::Instant::now();
        let t = now_ms();
        assert_eq!(
            next_wake(0, 0, Some(t), now),
            None,
            "no free capacity: wait to be woken"
        );
        assert_eq!(next_wake(4, 4, None, now), Some(now), "filled: more may be due");
        assert_eq!(next_wake(4, 1, None, now), None, "nothing waits");
        assert_eq!(
            next_wake(4, 0, Some(t + 5_000), now),
            Some(now + Duration::from_secs(5))
        );
        assert_eq!(next_wake(4, 1, Some(t), now), Some(now), "came due while taking");
        assert_eq!(next_wake(4, 0, Some(t), now), Some(now + RECHECK), "never a busy loop");
    }

    #[tokio::test(start_paused = true)]
    async fn follows_a_paused_tokio_clock() {
        let t0 = now_ms();
        tokio::time::advance(Duration::from_secs(3600)).await;
        let t1 = now_ms();
        assert!((3_600_000..3_600_050).contains(&(t1 - t0)), "{}", t1 - t0);
        let due = t1 + 5_000;
        assert_eq!(
            instant_at(due) - tokio::time::Instant::now(),
            Duration::from_millis(5_000)
        );
    }

    #[test]
    fn is_the_wall_clock_moved_by_tokios_lead_over_the_monotonic_clock() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mono = std::time::Instant::now();
        let s = Duration::from_secs(5);
        assert_eq!(shifted(wall, mono, mono), wall, "production: the wall clock as read");
        assert_eq!(shifted(wall, mono + s, mono), wall + s, "a paused clock advanced");
        assert_eq!(shifted(wall, mono, mono + s), wall - s, "a paused clock left behind");
    }

    #[test]
    fn is_the_time_of_day_outside_a_runtime() {
        let real = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(now_ms().abs_diff(real) < 1000);
    }
}
