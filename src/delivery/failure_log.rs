//! Which failed attempts of a subscriber are logged at `warn`: its first,
//! then at most one a minute, naming how many failed meanwhile (logged at
//! `debug`). A wrong URL or a subscriber that is down shows in the log at
//! once, not only when its circuit opens or a delivery gives up, and a
//! backlog failing against it does not flood the log.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The shortest time between two `warn` lines of one subscriber.
pub const EVERY: Duration = Duration::from_secs(60);

/// One subscriber's (its lane's): shared by its attempts.
#[derive(Default)]
pub struct FailureLog {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last: Option<Instant>,
    /// Failures since the last `warn` line, not logged at `warn`.
    quiet: u64,
}

impl FailureLog {
    /// A failed attempt that will be retried: `Some(n)` when it is to be
    /// logged at `warn`, `n` failures having gone unreported since the last
    /// such line; `None` when it is only for `debug`.
    pub fn failed(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if s.last.is_some_and(|t| now.duration_since(t) < EVERY) {
            s.quiet += 1;
            return None;
        }
        s.last = Some(now);
        Some(std::mem::take(&mut s.quiet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_failure_then_one_a_minute_with_the_count_between() {
        let log = FailureLog::default();
        assert_eq!(log.failed(), Some(0));
        assert_eq!(log.failed(), None);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(log.failed(), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(log.failed(), Some(2));
        assert_eq!(log.failed(), None);
    }
}
