//! A warning a stranger can cause, at most once a minute: the ones in
//! between are logged at debug and summed up in the next warning, so a
//! client cannot control the log's volume (HTTP/2 floods, failed TLS
//! handshakes).

use std::time::{Duration, Instant};

/// At most one warning this often; the ones in between at debug.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// When the last warning was written, and the events logged at debug since.
pub(super) struct OnceAMinute {
    last_warning: Option<Instant>,
    since: u64,
}

impl OnceAMinute {
    pub(super) const fn new() -> OnceAMinute {
        OnceAMinute {
            last_warning: None,
            since: 0,
        }
    }

    /// An event at `now`: `Some(n)` to warn (`n` events logged at debug
    /// since the last warning), `None` to log it at debug.
    pub(super) fn note(&mut self, now: Instant) -> Option<u64> {
        match self.last_warning {
            Some(at) if now.saturating_duration_since(at) < WARN_EVERY => {
                self.since += 1;
                None
            }
            _ => {
                self.last_warning = Some(now);
                Some(std::mem::take(&mut self.since))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_a_minute_counts_the_events_between() {
        let t0 = Instant::now();
        let mut log = OnceAMinute::new();
        assert_eq!(log.note(t0), Some(0));
        assert_eq!(log.note(t0 + Duration::from_secs(1)), None);
        assert_eq!(log.note(t0 + Duration::from_secs(59)), None);
        assert_eq!(log.note(t0 + Duration::from_secs(60)), Some(2));
        assert_eq!(log.note(t0 + Duration::from_secs(61)), None);
        assert_eq!(log.note(t0 + Duration::from_secs(200)), Some(1));
    }
}
