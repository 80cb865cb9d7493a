//! Which occurrences of a failure that keeps coming are logged at `warn`
//! (or `error`): the first, then less and less often while it keeps
//! failing (1, 2, 4 … minutes apart, at most an hour), each naming how many
//! failed since the last such line (those at `debug`); a success brings the
//! interval back to a minute. Kept per push subscriber (its failed
//! attempts: a wrong URL or a subscriber that is down shows in the log at
//! once, not only when its circuit opens or a delivery gives up, and
//! neither a failing backlog nor the circuit's probes of a subscriber down
//! for days flood the log) and per provider key (polls the provider refuses
//! for the key or account: one line per open task and poll flooded the log).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The shortest time between two `warn` lines of one subscriber.
pub const EVERY: Duration = Duration::from_secs(60);
/// The longest, while it keeps failing.
pub const AT_MOST: Duration = Duration::from_secs(3600);

/// One subscriber's (its lane's, shared by its attempts) or one key's.
#[derive(Default)]
pub struct FailureLog {
    state: Mutex<State>,
    /// A failure since the last success (a success takes no lock while
    /// there is none).
    failing: AtomicBool,
}

#[derive(Default)]
struct State {
    last: Option<Instant>,
    /// The time to the next `warn` line after `last` (`EVERY` when unset).
    every: Option<Duration>,
    /// Failures since the last `warn` line, not logged at `warn`.
    quiet: u64,
    /// A success since the last `warn` line.
    succeeded: bool,
}

/// A failure to log at `warn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warn {
    /// Failures since the last such line.
    pub quiet: u64,
    /// When the next one may come at the soonest.
    pub next_in: Duration,
}

impl FailureLog {
    /// A failure (an attempt that will be retried, a refused poll): `Some`
    /// when it is to be logged at `warn`; `None` when it is only for `debug`.
    pub fn failed(&self) -> Option<Warn> {
        self.failing.store(true, Ordering::Relaxed);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let every = s.every.unwrap_or(EVERY);
        match s.last {
            Some(t) if now.duration_since(t) < every => {
                s.quiet += 1;
                None
            }
            last => {
                // Failing on since the last line: the next one later.
                let next_in = match last {
                    Some(_) if !s.succeeded => (every * 2).min(AT_MOST),
                    _ => EVERY,
                };
                s.succeeded = false;
                s.last = Some(now);
                s.every = Some(next_in);
                Some(Warn {
                    quiet: std::mem::take(&mut s.quiet),
                    next_in,
                })
            }
        }
    }

    /// A success (a delivered attempt, an answered poll): the next failure
    /// may be logged a minute after the last line.
    pub fn succeeded(&self) {
        if !self.failing.swap(false, Ordering::Relaxed) {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.every = None;
        s.succeeded = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warned(log: &FailureLog) -> Option<(u64, u64)> {
        log.failed().map(|w| (w.quiet, w.next_in.as_secs()))
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_failure_then_less_and_less_often_until_one_is_delivered() {
        let log = FailureLog::default();
        assert_eq!(warned(&log), Some((0, 60)));
        assert_eq!(warned(&log), None);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(warned(&log), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(warned(&log), Some((2, 120)), "failing on: the next in 2 minutes");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(warned(&log), None);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(warned(&log), Some((1, 240)));
        for _ in 0..10 {
            tokio::time::advance(AT_MOST).await;
            log.failed().expect("at most an hour apart");
        }
        assert_eq!(warned(&log), None);
        // Delivered again: the next failure a minute after the last line.
        log.succeeded();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(warned(&log), Some((1, 60)));
    }
}
