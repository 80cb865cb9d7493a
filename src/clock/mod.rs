//! The relay's clocks.
//!
//! [`now`] / [`now_ms`] schedule and number: due times, ids, retention,
//! ages. They are the wall time read once (the anchor), advanced by tokio's
//! monotonic clock, so a wall clock stepped while the daemon runs moves no
//! due time (a retry waits its delay, not its delay plus the step), and a
//! test that pauses tokio's clock (`start_paused`) sees them stand exactly
//! still until it `advance`s, which moves them by exactly that much.
//!
//! [`time_of_day`] / [`now_secs`] are for what is compared with other
//! machines' clocks (a provider's signature timestamp, the
//! `webhook-timestamp` we sign, certificate validity, an HTTP-date
//! `Retry-After`): the anchored time plus the wall clock's step since the
//! anchor, so an NTP step is followed at once (see `time_of_day`).
//!
//! [`pauses`] tells how long what the process reads may have waited unseen
//! (the process stopped, its VM frozen).

pub mod pauses;
mod time_of_day;

pub use time_of_day::{now_secs, time_of_day};

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wall time and the monotonic instant it corresponds to.
static ANCHOR: OnceLock<(SystemTime, std::time::Instant)> = OnceLock::new();

fn anchor() -> (SystemTime, std::time::Instant) {
    *ANCHOR.get_or_init(|| (SystemTime::now(), std::time::Instant::now()))
}

/// The scheduling time: the anchor advanced by tokio's clock.
pub fn now() -> SystemTime {
    let (wall, at) = anchor();
    let mono = tokio::time::Instant::now().into_std();
    match mono.checked_duration_since(at) {
        Some(ahead) => wall + ahead,
        None => wall - at.duration_since(mono),
    }
}

/// [`now`] in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
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

    /// Review 33, finding 6: exact, also on a busy machine.
    #[tokio::test(start_paused = true)]
    async fn the_time_of_day_stands_still_while_tokios_clock_is_paused() {
        let first = now_ms();
        let t0 = std::time::Instant::now();
        let mut moved = 0u32;
        while t0.elapsed() < Duration::from_secs(2) {
            for _ in 0..10_000 {
                if now_ms() != first {
                    moved += 1;
                }
            }
            std::thread::yield_now();
        }
        assert_eq!(moved, 0, "now_ms() moved {moved} times with tokio's clock paused");
    }

    #[test]
    fn is_the_time_of_day_outside_a_runtime() {
        let real = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(now_ms().abs_diff(real) < 1000);
    }
}
