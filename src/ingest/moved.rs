//! A reload while a callback was in flight: what ingest does when the
//! request's route was renamed or removed, or all of its subscribers were
//! replaced, between the request reading the config and its event being
//! stored.
//!
//! It decides two things. Before storing: whether the request's route is
//! still current ([`route_still_current`]); if not, ingest answers
//! [`Answer::RouteChanged`](super::Answer::RouteChanged) (503) and the
//! provider's retry finds the route in force. After the store refused the
//! callback for a reload's new topology (`StoreError::RouteChanged`, cluster
//! mode: the store saw the topology before this relay swapped its config):
//! which route now takes it, and how long is left to store it there
//! ([`route_in_force`]), waiting for the swap at most [`RELOAD_WAIT`] and
//! answering within [`ANSWER_WITHIN`] of the request's start.

use std::sync::Arc;
use std::time::Duration;

use crate::state::{App, Live, RouteState};

/// How long a request the store refused for a reload's new topology waits
/// for that reload to swap the config, at most.
const RELOAD_WAIT: Duration = Duration::from_secs(5);

/// A request waiting out a reload is answered within this (from its start):
/// providers give up at about 15 s.
const ANSWER_WITHIN: Duration = Duration::from_secs(12);

/// Whether `route` (taken from `live` when the request began) is still the
/// route for its path under its name in the configuration in force now,
/// with at least one of the subscribers the event would be stored for. A
/// pointer compare while no reload happened; the lookup only after one.
pub(super) fn route_still_current(app: &App, live: &Arc<Live>, route: &RouteState) -> bool {
    let now = app.live();
    if Arc::ptr_eq(&now, live) {
        return true;
    }
    // By name, not by the old path: events and cursors are kept per route
    // name, so a route that only moved to another path (same name, one of
    // the request's subscribers still on it) takes the event as it began,
    // while the provider's retry to the old path would get 404.
    let r = &route.route;
    now.config.routes.iter().find(|n| n.name == r.name).is_some_and(|n| {
        n.subscribers
            .iter()
            .any(|s| r.subscribers.iter().any(|o| o.name == s.name))
    })
}

/// After the store refused a callback for a reload's new topology
/// (`RouteChanged`): the route that now takes it, once the reload swapped
/// the config (waited for, bounded), found by name (its subscribers were
/// replaced), else by path (it was renamed), and how long its write there
/// may take (the commit timeout, or less so that the answer comes within
/// [`ANSWER_WITHIN`]); `None` when there is none, or it checks or stores
/// callbacks differently (its own checks were not run on this request), or
/// no time is left: the provider's retry goes there.
pub(super) async fn route_in_force(
    app: &App,
    live: &Arc<Live>,
    route: &RouteState,
    started: tokio::time::Instant,
) -> Option<(Arc<RouteState>, Duration)> {
    let wait = RELOAD_WAIT.min(ANSWER_WITHIN.saturating_sub(started.elapsed()));
    let now = app.live_after_reload(live, wait).await?;
    let r = &route.route;
    let found = now
        .routes
        .values()
        .find(|n| n.route.name == r.name)
        .or_else(|| now.routes.get(&r.path))?;
    if !found.route.takes_callbacks_like(r) {
        return None;
    }
    let left = ANSWER_WITHIN
        .saturating_sub(started.elapsed())
        .min(super::COMMIT_TIMEOUT);
    (!left.is_zero()).then(|| (found.clone(), left))
}
