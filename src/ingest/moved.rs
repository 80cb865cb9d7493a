//! A reload while a callback was in flight: what ingest does when the
//! request's route was renamed or removed, all of its subscribers were
//! replaced, or its checks changed (a token revoked), between the request
//! reading the config and its event being stored.
//!
//! It decides two things. Before storing: whether the request's route is
//! still current and checks callbacks as it did ([`in_force`]); if not,
//! ingest answers
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

/// What a reload did to a request's route while the request was received.
pub(super) enum InForce {
    /// No reload since the request began: stored as it began.
    Current,
    /// A reload kept the route under its name, with at least one of the
    /// subscribers the event would be stored for, checking callbacks as it
    /// did: stored on the route in force, for its subscribers now (one the
    /// reload added is after its tail: stored for the old list, the event
    /// was never sent to it; ingest review, stop 66).
    Reloaded(Arc<RouteState>),
    /// Renamed or removed, or all of its subscribers replaced: stored as it
    /// began, the event would be nobody's. `alike`: a route in force (by
    /// name, else by path) checks callbacks as it did, so the request
    /// passed the checks in force (none does when the route was removed).
    Moved { alike: bool },
    /// The route in force (by name, else by path) checks callbacks
    /// otherwise: a token revoked, an allowlist narrowed, a signature
    /// added. The request passed the checks of before, not these.
    ChecksChanged,
}

/// What a reload did to `route` (taken from `live` when the request began).
/// A pointer compare while no reload happened; the lookup only after one.
pub(super) fn in_force(app: &App, live: &Arc<Live>, route: &RouteState) -> InForce {
    let now = app.live();
    if Arc::ptr_eq(&now, live) {
        return InForce::Current;
    }
    let r = &route.route;
    let by_name = now.routes.values().find(|n| n.route.name == r.name);
    let by_path = now.routes.get(&r.path);
    let alike = match by_name.or(by_path) {
        Some(n) if !n.route.takes_callbacks_like(r) => return InForce::ChecksChanged,
        Some(_) => true,
        None => false,
    };
    // By name, not by the old path: events and cursors are kept per route
    // name, so a route that only moved to another path (same name, one of
    // the request's subscribers still on it) takes the event, while the
    // provider's retry to the old path would get 404.
    let kept = by_name.filter(|n| {
        n.route
            .subscribers
            .iter()
            .any(|s| r.subscribers.iter().any(|o| o.name == s.name))
    });
    match kept {
        Some(n) => InForce::Reloaded(n.clone()),
        None => InForce::Moved { alike },
    }
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

/// A callback received across a reload that renamed its route (`alike`: a
/// route in force checks callbacks as this one did): the event it
/// duplicates, if one is stored, answered as such so that the provider
/// stops retrying what the relay has (the retry on a renamed route would be
/// stored again, its dedupe history being the new name's). Not on a
/// `verify = "fetch"` route (its key is contested), nor when the key is
/// owned by a forgery held as unverified once the route no longer verifies
/// (the genuine callback was dropped: stop 75).
pub(super) async fn stored_already(
    app: &App,
    r: &crate::config::Route,
    hash: [u8; 32],
    body: &[u8],
) -> Option<crate::store::EventId> {
    if r.verify == crate::config::Verify::Fetch {
        return None;
    }
    let id = app.store.event_by_dedupe(&r.name, hash).await.ok()??;
    let duplicate = !super::contested::keys_held(r)
        || super::contested::duplicate_unchecked(&app.store, app.delivery.verifier(), id, body).await;
    duplicate.then_some(id)
}
