//! Refused ingest requests, for their rate-limited log: no-route probes and
//! each route's own refusals apart, the first of each kind in full, the rest
//! at debug and summed up (see `App::request_refused`, which holds one).

use std::collections::HashMap;

/// How often refused ingest requests are summed up in the log (at most; only
/// when they keep coming): a stranger must not control the log's volume. It
/// is also the quiet spell after which a kind of refusal (no route, or each
/// route's own) is logged in full again, and a summary window is dropped.
pub const REFUSED_REQUESTS_SUMMARY_MS: u64 = 10_000;

/// Ingest requests refused, for their rate-limited log: no-route probes and
/// each route's own refusals apart, so that strangers' probes never hide a
/// route refusing genuine callbacks (a rotated token). One entry per route
/// name (from the configuration, so bounded by the routes; dropped once quiet).
#[derive(Default)]
pub struct RefusedRequests {
    /// When the summary window began (its first refusal); None: no window.
    window_start_ms: Option<u64>,
    /// The last refusal of any kind: a window this long quiet is dropped.
    last_ms: u64,
    /// Requests to a path with no route.
    no_route: RefusedKind,
    /// Each route's own refusals, by route name.
    routes: HashMap<String, RefusedKind>,
}

/// One kind of refusal: no route, or one route's.
#[derive(Default)]
struct RefusedKind {
    /// Its last refusal: after a quiet spell the next is logged in full.
    last_ms: Option<u64>,
    /// Counted (logged at debug) in the summary window.
    counted: u64,
    /// Of them, by status: how many, and the last reason.
    statuses: std::collections::BTreeMap<u16, (u64, String)>,
}

/// The log kind of a route's refusals for want of disk room: a kind of
/// their own, so that a stranger's probes of the route never hide them.
/// Names hold no `/` nor `:` ([`crate::config::valid_name`]), so no kind
/// is another's: `<route>`, `<route>/disk`, `pull:<subscriber>`.
pub fn disk_kind(route: &str) -> String {
    format!("{route}/disk")
}

/// The log kind of refused requests to a known pull subscriber.
pub fn pull_kind(subscriber: &str) -> String {
    format!("pull:{subscriber}")
}

/// A refused ingest request: for a route, its name, status and reason.
#[derive(Debug, Clone, Copy)]
pub enum RefusedBy<'a> {
    NoRoute,
    Route {
        name: &'a str,
        status: u16,
        reason: &'a str,
    },
}

/// How to log a refused ingest request.
#[derive(Debug, PartialEq, Eq)]
pub struct RefusedLog {
    /// The first of its kind in a while: at info, with its details (else at
    /// debug).
    pub first: bool,
    /// Time for a summary (a warning) of the window that ends now.
    pub summary: Option<RefusedSummary>,
}

/// The refused requests of a summary window that were logged at debug.
#[derive(Debug, PartialEq, Eq)]
pub struct RefusedSummary {
    pub refused: u64,
    /// Of them, to a path with no route.
    pub no_route: u64,
    /// Of them, by route (by name): how many, by status with the last reason.
    pub routes: Vec<RouteRefusals>,
    /// The window's length.
    pub secs: u64,
}

/// One route's refusals in a summary.
#[derive(Debug, PartialEq, Eq)]
pub struct RouteRefusals {
    pub route: String,
    pub refused: u64,
    /// Status, how many, the last reason ("" when it has none).
    pub statuses: Vec<(u16, u64, String)>,
}

impl std::fmt::Display for RefusedSummary {
    /// `route=t: 12 (401 x12: wrong token), route=u: …`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, r) in self.routes.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "route={}: {} (", r.route, r.refused)?;
            for (j, (status, n, reason)) in r.statuses.iter().enumerate() {
                if j > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "{status} x{n}")?;
                if !reason.is_empty() {
                    write!(f, ": {reason}")?;
                }
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl RefusedRequests {
    /// A refusal at `now` (ms): how to log it (see `App::request_refused`).
    pub fn record(&mut self, by: RefusedBy<'_>, now: u64) -> RefusedLog {
        let r = self;
        const QUIET: u64 = REFUSED_REQUESTS_SUMMARY_MS;
        let quiet = |last: Option<u64>| last.is_none_or(|t| now.saturating_sub(t) >= QUIET);
        let mut summary = None;
        match r.window_start_ms {
            // A window that went quiet: dropped, not summed up late (its
            // length would mislead, and its news is old).
            Some(_) if quiet(Some(r.last_ms)) => r.window_start_ms = None,
            Some(start) if now.saturating_sub(start) >= QUIET => {
                let routes: Vec<RouteRefusals> = {
                    let mut routes: Vec<_> = r
                        .routes
                        .iter_mut()
                        .filter(|(_, k)| k.counted > 0)
                        .map(|(name, k)| RouteRefusals {
                            route: name.clone(),
                            refused: std::mem::take(&mut k.counted),
                            statuses: std::mem::take(&mut k.statuses)
                                .into_iter()
                                .map(|(status, (n, reason))| (status, n, reason))
                                .collect(),
                        })
                        .collect();
                    routes.sort_by(|a, b| a.route.cmp(&b.route));
                    routes
                };
                let no_route = std::mem::take(&mut r.no_route.counted);
                let refused = no_route + routes.iter().map(|r| r.refused).sum::<u64>();
                if refused > 0 {
                    summary = Some(RefusedSummary {
                        refused,
                        no_route,
                        routes,
                        secs: now.saturating_sub(start) / 1000,
                    });
                }
                r.window_start_ms = Some(now);
            }
            _ => {}
        }
        if r.window_start_ms.is_none() {
            // A new window: what the old one counted is dropped, and so are
            // routes quiet since (a route a reload removed goes too).
            r.window_start_ms = Some(now);
            r.no_route.counted = 0;
            r.no_route.statuses.clear();
            r.routes.retain(|_, k| !quiet(k.last_ms));
            for k in r.routes.values_mut() {
                k.counted = 0;
                k.statuses.clear();
            }
        }
        r.last_ms = now;
        let kind = match by {
            RefusedBy::NoRoute => &mut r.no_route,
            RefusedBy::Route { name, .. } => r.routes.entry(name.to_string()).or_default(),
        };
        let first = quiet(kind.last_ms);
        kind.last_ms = Some(now);
        if !first {
            kind.counted += 1;
            if let RefusedBy::Route { status, reason, .. } = by {
                let e = kind.statuses.entry(status).or_insert((0, String::new()));
                e.0 += 1;
                if e.1 != reason {
                    e.1 = reason.to_string();
                }
            }
        }
        RefusedLog { first, summary }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Before, a route named `pull` refused for want of room and a pull
    /// subscriber named `disk` shared one kind (`pull/disk`): one could
    /// hide the other's first line.
    #[test]
    fn no_kind_is_another_s() {
        let kinds = [
            "pull".to_string(),
            "disk".to_string(),
            disk_kind("pull"),
            disk_kind("disk"),
            pull_kind("disk"),
            pull_kind("pull"),
        ];
        let distinct: std::collections::HashSet<&String> = kinds.iter().collect();
        assert_eq!(distinct.len(), kinds.len(), "{kinds:?}");
        let mut r = RefusedRequests::default();
        assert_eq!(r.record(route(&disk_kind("pull"), 503, "disk nearly full"), 0), first());
        assert_eq!(r.record(route(&pull_kind("disk"), 401, "wrong token"), 1), first());
    }

    fn route<'a>(name: &'a str, status: u16, reason: &'a str) -> RefusedBy<'a> {
        RefusedBy::Route { name, status, reason }
    }

    fn first() -> RefusedLog {
        RefusedLog {
            first: true,
            summary: None,
        }
    }

    fn counted() -> RefusedLog {
        RefusedLog {
            first: false,
            summary: None,
        }
    }

    /// Refused ingest requests: the first of a while of each kind (no route,
    /// each route) in full, the others counted and summed up, by route and
    /// status, at most once every 10 s while they keep coming.
    #[test]
    fn refused_requests_are_logged_once_per_kind_then_summed_up() {
        let mut r = RefusedRequests::default();
        assert_eq!(r.record(RefusedBy::NoRoute, 1_000), first());
        // A route's first refusal is logged in full although probes came first.
        assert_eq!(r.record(route("t", 401, "wrong token"), 1_001), first());
        for t in 0..998 {
            let by = if t % 2 == 0 {
                RefusedBy::NoRoute
            } else {
                route("t", 401, "wrong token")
            };
            assert_eq!(r.record(by, 1_002 + t * 9), counted());
        }
        assert_eq!(r.record(route("u", 400, "not JSON"), 10_990), first());
        assert_eq!(
            r.record(route("t", 400, "not JSON"), 11_000),
            RefusedLog {
                first: false,
                summary: Some(RefusedSummary {
                    refused: 998,
                    no_route: 499,
                    routes: vec![RouteRefusals {
                        route: "t".into(),
                        refused: 499,
                        statuses: vec![(401, 499, "wrong token".into())],
                    }],
                    secs: 10
                })
            }
        );
        assert_eq!(r.record(RefusedBy::NoRoute, 12_000), counted());
        assert_eq!(r.record(route("t", 401, "bad signature"), 19_000), counted());
        let log = r.record(route("t", 401, "wrong token"), 21_000);
        let summary = log.summary.unwrap();
        assert!(!log.first);
        assert_eq!((summary.refused, summary.no_route, summary.secs), (3, 1, 10));
        assert_eq!(
            summary.to_string(),
            "route=t: 2 (400 x1: not JSON; 401 x1: bad signature)"
        );
    }

    /// A window that went quiet is dropped, not summed up late: the next
    /// refusal, of any kind, is the first of a while, in full.
    #[test]
    fn after_a_quiet_spell_a_refusal_is_logged_in_full_and_nothing_stale() {
        let mut r = RefusedRequests::default();
        assert_eq!(r.record(RefusedBy::NoRoute, 1_000), first());
        assert_eq!(r.record(RefusedBy::NoRoute, 1_500), counted());
        assert_eq!(r.record(route("t", 401, "wrong token"), 12_000), first());
        assert_eq!(r.record(RefusedBy::NoRoute, 12_100), first());
        assert_eq!(r.record(RefusedBy::NoRoute, 12_200), counted());
        // Six quiet hours.
        assert_eq!(r.record(route("t", 401, "wrong token"), 21_612_200), first());
        assert_eq!(r.routes.len(), 1, "quiet routes are dropped");
        // A route refusing on and on, with a probe now and then, in full once.
        for t in 1..=25u64 {
            let log = r.record(route("t", 401, "wrong token"), 21_612_200 + t * 1_000);
            assert!(!log.first);
            if t == 10 {
                assert_eq!(log.summary.unwrap().to_string(), "route=t: 9 (401 x9: wrong token)");
            } else if t == 20 {
                assert_eq!(log.summary.unwrap().to_string(), "route=t: 10 (401 x10: wrong token)");
            } else {
                assert_eq!(log.summary, None, "at {t} s");
            }
        }
    }
}
