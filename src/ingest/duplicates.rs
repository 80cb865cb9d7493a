//! Duplicates' log: a provider's retries of a callback already stored are
//! answered `200` and logged, but one captured callback posted again and
//! again (an `hmac-sha256` signature never expires; a Standard Webhooks one
//! holds for its 5-minute tolerance; an `allow_ips` route takes anyone at
//! its addresses) wrote one info line each, without bound, and journald's
//! rate limit then dropped the warnings that mattered (observability review,
//! stop 62). Each route's first [`FULL_PER_WINDOW`] in a window are logged
//! in full; the rest at debug, counted, and summed up once the window is
//! over: at the route's next duplicate, or within a second by the store's
//! watcher when none comes (see `App::duplicate_accepted`).

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
    /// Where the last one logged at debug came from.
    source: String,
}

impl Window {
    fn new(start_ms: u64) -> Window {
        Window {
            start_ms,
            logged: 0,
            counted: 0,
            source: String::new(),
        }
    }
}

/// A window's duplicates logged at debug, summed up.
#[derive(Debug, PartialEq, Eq)]
pub struct DuplicatesSummary {
    pub route: String,
    pub count: u64,
    /// When the window began (ms since the epoch).
    pub since_ms: u64,
    /// Where the last of them came from.
    pub source: String,
}

impl DuplicatesSummary {
    /// The line that sums up a route's duplicates logged at debug.
    pub fn log(&self) {
        tracing::info!(
            route = %self.route,
            duplicates = self.count,
            since = %crate::admin::rfc3339(self.since_ms),
            last_source = %self.source,
            "more duplicates of stored callbacks were answered 200 (each logged at debug)"
        );
    }
}

/// How to log one duplicate.
#[derive(Debug, PartialEq, Eq)]
pub struct DuplicateLine {
    /// In full, at info (else at debug).
    pub full: bool,
    /// The route's earlier window, summed up.
    pub summary: Option<DuplicatesSummary>,
}

impl DuplicatesLog {
    /// A duplicate on `route` from `source` at `now` (ms): how to log it.
    pub fn record(&mut self, route: &str, source: &str, now: u64) -> DuplicateLine {
        let turned = |w: &Window| now.saturating_sub(w.start_ms) >= DUPLICATES_WINDOW_MS;
        let mut summary = None;
        match self.routes.get_mut(route) {
            Some(w) if turned(w) => {
                summary = summed_up(route, w);
                *w = Window::new(now);
            }
            Some(_) => {}
            None => {
                self.routes.insert(route.to_string(), Window::new(now));
            }
        }
        let w = self.routes.get_mut(route).expect("inserted above");
        let full = w.logged < FULL_PER_WINDOW;
        match full {
            true => w.logged += 1,
            false => {
                w.counted += 1;
                if w.source != source {
                    w.source = source.to_string();
                }
            }
        }
        DuplicateLine { full, summary }
    }

    /// The windows over at `now`: those with duplicates at debug summed up,
    /// and every one dropped (a route quiet since, or removed by a reload,
    /// leaves nothing behind).
    pub fn over(&mut self, now: u64) -> Vec<DuplicatesSummary> {
        let mut out = Vec::new();
        self.routes.retain(|route, w| {
            if now.saturating_sub(w.start_ms) < DUPLICATES_WINDOW_MS {
                return true;
            }
            out.extend(summed_up(route, w));
            false
        });
        out
    }
}

fn summed_up(route: &str, w: &Window) -> Option<DuplicatesSummary> {
    (w.counted > 0).then(|| DuplicatesSummary {
        route: route.to_string(),
        count: w.counted,
        since_ms: w.start_ms,
        source: w.source.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(full: bool, summary: Option<DuplicatesSummary>) -> DuplicateLine {
        DuplicateLine { full, summary }
    }

    #[test]
    fn the_first_of_a_window_in_full_the_rest_summed_up_at_the_next_window() {
        let mut log = DuplicatesLog::default();
        for i in 0..FULL_PER_WINDOW {
            assert_eq!(log.record("r", "a", 1_000 + u64::from(i)), line(true, None));
        }
        for i in 0..3_990 {
            assert!(!log.record("r", "b", 1_100 + i).full);
        }
        // Another route has its own window.
        assert!(log.record("other", "a", 2_000).full);
        // The window turns: the next is in full, with the sum of the last.
        let summary = DuplicatesSummary {
            route: "r".into(),
            count: 3_990,
            since_ms: 1_000,
            source: "b".into(),
        };
        assert_eq!(
            log.record("r", "a", 1_000 + DUPLICATES_WINDOW_MS),
            line(true, Some(summary))
        );
        // A window with nothing at debug sums nothing up.
        assert_eq!(log.record("other", "a", 2_000 + DUPLICATES_WINDOW_MS), line(true, None));
    }

    /// A flood that stops is summed up when its window is over, without a
    /// later duplicate (the change review: it never was).
    #[test]
    fn a_window_over_is_summed_up_without_a_later_duplicate_and_dropped() {
        let mut log = DuplicatesLog::default();
        for i in 0..30 {
            log.record("r", "198.51.100.7", 1_000 + i);
        }
        for n in 0..100 {
            log.record(&format!("quiet{n}"), "a", 1_000);
        }
        assert_eq!(log.over(1_000 + DUPLICATES_WINDOW_MS - 1), vec![]);
        assert_eq!(
            log.over(1_000 + DUPLICATES_WINDOW_MS),
            vec![DuplicatesSummary {
                route: "r".into(),
                count: 20,
                since_ms: 1_000,
                source: "198.51.100.7".into(),
            }]
        );
        assert!(log.routes.is_empty());
        assert_eq!(log.over(1_000 + 2 * DUPLICATES_WINDOW_MS), vec![]);
    }
}
