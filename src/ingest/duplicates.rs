//! Duplicates' log: a provider's retries of a callback already stored are
//! answered `200` and logged, but one captured callback posted again and
//! again (an `hmac-sha256` signature never expires; a Standard Webhooks one
//! holds for its 5-minute tolerance; an `allow_ips` route takes anyone at
//! its addresses) wrote one info line each, without bound, and journald's
//! rate limit then dropped the warnings that mattered (observability review,
//! stop 62). Each route's first [`FULL_PER_WINDOW`] in a window are logged
//! in full; the rest at debug, counted, and summed up at the route's next
//! duplicate after the window (see `App::duplicate_accepted`).

use std::collections::HashMap;

/// How long a route's duplicates window lasts (ms).
pub const DUPLICATES_WINDOW_MS: u64 = 10_000;

/// Duplicates logged in full per route and window.
pub const FULL_PER_WINDOW: u32 = 10;

/// Each route's duplicates window, by route name (from the configuration, so
/// bounded by the routes; a route quiet for a window is dropped when
/// another's window turns).
#[derive(Default)]
pub struct DuplicatesLog {
    routes: HashMap<String, Window>,
}

struct Window {
    start_ms: u64,
    /// Logged in full in this window.
    logged: u32,
    /// Logged at debug in this window.
    counted: u64,
}

/// How to log one duplicate.
#[derive(Debug, PartialEq, Eq)]
pub struct DuplicateLine {
    /// In full, at info (else at debug).
    pub full: bool,
    /// The route's earlier window ended with this many logged at debug:
    /// (how many, since when in ms since the epoch).
    pub summary: Option<(u64, u64)>,
}

impl DuplicatesLog {
    /// A duplicate on `route` at `now` (ms): how to log it.
    pub fn record(&mut self, route: &str, now: u64) -> DuplicateLine {
        let turned = |w: &Window| now.saturating_sub(w.start_ms) >= DUPLICATES_WINDOW_MS;
        let mut summary = None;
        match self.routes.get_mut(route) {
            Some(w) if turned(w) => {
                if w.counted > 0 {
                    summary = Some((w.counted, w.start_ms));
                }
                *w = Window {
                    start_ms: now,
                    logged: 0,
                    counted: 0,
                };
                // Routes whose window turned with nothing to sum up go.
                self.routes
                    .retain(|name, w| name == route || !turned(w) || w.counted > 0);
            }
            Some(_) => {}
            None => {
                self.routes.insert(
                    route.to_string(),
                    Window {
                        start_ms: now,
                        logged: 0,
                        counted: 0,
                    },
                );
            }
        }
        let w = self.routes.get_mut(route).expect("inserted above");
        let full = w.logged < FULL_PER_WINDOW;
        match full {
            true => w.logged += 1,
            false => w.counted += 1,
        }
        DuplicateLine { full, summary }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_a_window_in_full_the_rest_summed_up_at_the_next_window() {
        let mut log = DuplicatesLog::default();
        for i in 0..FULL_PER_WINDOW {
            assert_eq!(
                log.record("r", 1_000 + u64::from(i)),
                DuplicateLine {
                    full: true,
                    summary: None
                }
            );
        }
        for i in 0..3_990 {
            assert!(!log.record("r", 1_100 + i).full);
        }
        // Another route has its own window.
        assert!(log.record("other", 2_000).full);
        // The window turns: the next is in full, with the sum of the last.
        assert_eq!(
            log.record("r", 1_000 + DUPLICATES_WINDOW_MS),
            DuplicateLine {
                full: true,
                summary: Some((3_990, 1_000))
            }
        );
        // A window with nothing at debug sums nothing up.
        assert_eq!(
            log.record("other", 2_000 + DUPLICATES_WINDOW_MS),
            DuplicateLine {
                full: true,
                summary: None
            }
        );
    }

    #[test]
    fn quiet_routes_are_dropped_when_a_window_turns() {
        let mut log = DuplicatesLog::default();
        for n in 0..100 {
            log.record(&format!("r{n}"), 0);
        }
        log.record("r0", DUPLICATES_WINDOW_MS);
        assert_eq!(log.routes.len(), 1);
    }
}
