//! The local service failing every delivery (down, restarting, answering
//! errors): after [`PAUSE_AFTER`] failures in a row the forwarder stops
//! pulling at full speed — each message pulled would fail at once, a failed
//! attempt each, the whole backlog a step of its retry schedule at a time
//! and dead letters after an outage long enough — and tries one message at
//! a time instead, the deliveries in flight answered first, with a wait
//! between tries that doubles from 1 s to 30 s, until one is delivered (as
//! a push subscriber's circuit breaker probes).

use std::time::Duration;

use super::backoff::Backoff;

/// Failed local deliveries in a row that pause the pulls.
pub const PAUSE_AFTER: u32 = 5;

/// Where the forwarder stands with its local service.
pub struct Pause {
    backoff: Backoff,
    /// The failures in a row at the last pause: a pull that brought nothing
    /// to try (or a relay away) fails nothing, and the next try is not put
    /// off longer for it.
    seen: u32,
}

impl Default for Pause {
    fn default() -> Pause {
        Pause {
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
            seen: 0,
        }
    }
}

impl Pause {
    /// Whether `failures` in a row pause the pulls.
    pub fn would_pause(&self, failures: u32) -> bool {
        failures >= PAUSE_AFTER
    }

    /// With `failures` failed deliveries in a row now: the wait before the
    /// next pull, which then takes one message (None: pull at full speed).
    /// Says so when the pause starts and when it ends.
    pub fn before_pull(&mut self, failures: u32) -> Option<Duration> {
        if failures < PAUSE_AFTER {
            if self.backoff.failures() > 0 {
                tracing::info!("the local service delivered again: pulling at full speed");
                self.backoff.reset();
            }
            self.seen = 0;
            return None;
        }
        if failures == self.seen {
            return Some(Duration::ZERO);
        }
        self.seen = failures;
        let wait = self.backoff.next_delay();
        if self.backoff.failures() == 1 {
            tracing::warn!(
                failures,
                "the local service failed {PAUSE_AFTER} deliveries in a row: pulling one message at a time, \
                 with a pause between tries (up to 30 s), until it delivers again (each try is an attempt)"
            );
        }
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_after_failures_in_a_row_longer_each_time_until_one_delivers() {
        let mut p = Pause::default();
        assert_eq!(p.before_pull(PAUSE_AFTER - 1), None);
        let first = p.before_pull(PAUSE_AFTER).unwrap();
        let second = p.before_pull(PAUSE_AFTER + 1).unwrap();
        assert!(
            first <= Duration::from_secs(1) && second >= Duration::from_secs(1),
            "{first:?} {second:?}"
        );
        // Nothing tried since (an empty pull): no longer pause.
        assert_eq!(p.before_pull(PAUSE_AFTER + 1), Some(Duration::ZERO));
        assert!(
            p.before_pull(PAUSE_AFTER + 2).unwrap() >= Duration::from_secs(2),
            "doubled on the next failure"
        );
        assert_eq!(p.before_pull(0), None);
        assert!(
            p.before_pull(PAUSE_AFTER).unwrap() <= Duration::from_secs(1),
            "starts over"
        );
    }
}
