//! A consumer's backlog as last counted from NATS, and whether NATS has
//! confirmed it lately: a count NATS has not confirmed for a while is not
//! known, rather than kept at its last value (which an alert would take for
//! the current one) while NATS cannot be read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How long a count of the backlog stands without NATS confirming it (the
/// follower counts every second).
const KNOWN_FOR: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(super) struct Depth {
    value: AtomicU64,
    /// When `value` was last read from NATS (ms since `since`; 0: not yet).
    counted: AtomicU64,
    since: Instant,
}

impl Default for Depth {
    fn default() -> Depth {
        Depth {
            value: AtomicU64::new(0),
            counted: AtomicU64::new(0),
            since: Instant::now(),
        }
    }
}

impl Depth {
    /// NATS counted `n`.
    pub fn record(&self, n: u64) {
        self.value.store(n, Ordering::Relaxed);
        let at = (self.since.elapsed().as_millis() as u64).max(1);
        self.counted.store(at, Ordering::Relaxed);
    }

    /// The count, if NATS confirmed it within the last [`KNOWN_FOR`].
    pub fn known(&self) -> Option<u64> {
        let at = self.counted.load(Ordering::Relaxed);
        let age = (self.since.elapsed().as_millis() as u64).saturating_sub(at);
        (at > 0 && age <= KNOWN_FOR.as_millis() as u64).then(|| self.value.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_count_is_known_until_nats_leaves_it_unconfirmed_for_5_s() {
        let d = Depth::default();
        assert_eq!(d.known(), None, "not counted yet");
        tokio::time::advance(Duration::from_secs(30)).await;
        d.record(7);
        assert_eq!(d.known(), Some(7));
        tokio::time::advance(Duration::from_millis(4_900)).await;
        assert_eq!(d.known(), Some(7));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(d.known(), None, "unconfirmed for 5.1 s");
        d.record(0);
        assert_eq!(d.known(), Some(0), "confirmed again");
    }
}
