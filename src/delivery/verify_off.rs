//! What a verification that no longer comes had decided: on a route that
//! verified (`verify = "fetch"`) and no longer does (a reload, or a restart,
//! turned it off), a callback stored while it verified keeps what
//! verification decided about it, and only that (combined-features review
//! and the review of its mend, stop 74):
//!
//! - held as `unverified` (for any subscriber: the verdict is the event's),
//!   it is held for the others too: it was sent to a subscriber whose lane
//!   had not reached it yet when `verify` went off;
//! - of the callbacks contesting one dedupe key, stored as events of their
//!   own ([`super::verify_claims`]), only the first let go is delivered, as a
//!   route that never verified would have answered the later ones as
//!   duplicates: each was sent, two bodies of one task;
//! - one let go settles its expected task, as a verified one does
//!   ([`super::verify_task`]): its task stayed `waiting`.
//!
//! A callback not checked yet is sent unchecked, as the route now sends
//! every callback (the operator's choice). Such callbacks are known by their
//! kept header ([`VERIFIED_BY`], and a contesting one by [`CONTESTS`]), after
//! a restart too; one stored by an earlier version has neither, and this
//! relay checks the callbacks its route received up to the reload that
//! turned `verify` off.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, Route, Verify};
use crate::dedupe::DedupeKey;
use crate::ingest::contested::{CONTESTS, VERIFIED_BY};
use crate::store::{Event, EventView, Origin, Store};

use super::verify_claims::Claim;
use super::verify_gate::{lock, Check, Verifier};

/// A route that does not verify now, and when this relay saw it stop
/// verifying (ms; None: not while this relay ran).
pub(super) type Unchecked = HashMap<String, (Arc<Route>, Option<u64>)>;

/// The routes of `config` that do not verify; `was_verifying`: whether a
/// route verified in the configuration replaced; `before`: the map being
/// replaced (an earlier stop is kept).
pub(super) fn unchecked(
    config: &Config,
    was_verifying: impl Fn(&str) -> bool,
    before: &Unchecked,
    now_ms: u64,
) -> Unchecked {
    config
        .routes
        .iter()
        .filter(|r| r.verify != Verify::Fetch)
        .map(|r| {
            let off = if was_verifying(&r.name) {
                Some(now_ms)
            } else {
                before.get(&r.name).and_then(|(_, off)| *off)
            };
            (r.name.clone(), (Arc::new(r.clone()), off))
        })
        .collect()
}

/// Whether `event` was stored while its route verified: its mark, or (an
/// earlier version's, unmarked) a callback received by the time this relay
/// saw the route stop verifying.
/// `off` is read only for an unmarked callback.
fn stored_verifying(event: &Event, off: impl FnOnce() -> Option<u64>) -> bool {
    event
        .meta
        .headers
        .iter()
        .any(|(k, _)| k == VERIFIED_BY || k == CONTESTS)
        || (event.meta.origin == Origin::Callback && off().is_some_and(|off| event.meta.received_ms <= off))
}

/// Why a delivery of the event was held as `unverified`, if one was (its
/// result keeps the hold after a replay released and delivered it; a row
/// of an earlier version only as its dead letter's error): the verdict is
/// the event's.
pub fn held_reason(view: &EventView) -> Option<String> {
    view.deliveries.iter().find_map(|d| {
        d.held.clone().or_else(|| {
            d.last_error
                .as_deref()?
                .strip_prefix(crate::store::result::UNVERIFIED)
                .map(str::to_string)
        })
    })
}

impl Verifier {
    /// Whether `event`, of a route that does not verify now, was stored
    /// while it did (its mark, or the time rule for an earlier version's).
    pub fn stored_while_verifying(&self, event: &Event) -> bool {
        stored_verifying(event, || self.stopped_verifying_at(&event.meta.route))
    }

    /// On a route that does not verify, for a delivery not released by an
    /// operator's replay: what verification had decided about `event`, if
    /// it was stored while the route verified (None: it goes).
    pub(super) async fn unchecked_check(&self, store: &Store, event: &Event) -> Option<Check> {
        // Every delivery of a route that does not verify comes here: the
        // marks are read before the route is taken out of the map.
        if !self.stored_while_verifying(event) {
            return None;
        }
        let (route, _) = self.unchecked_route(&event.meta.route)?;
        if let Some(Some(reason)) = lock(&self.verdicts).known.get(&event.id).cloned() {
            return Some(Check::Hold { reason, again: true });
        }
        // Held for another subscriber (after a restart: by the store).
        let view = match store.event_view(event.id).await {
            Ok(view) => view,
            Err(e) => {
                tracing::warn!(route = %event.meta.route, event = %event.id, error = %e,
                    "cannot read whether the callback was held as unverified; asking again shortly");
                return Some(Check::Wait {
                    due_ms: crate::clock::now_ms() + 1000,
                });
            }
        };
        if let Some(reason) = view.as_ref().and_then(held_reason) {
            return Some(Check::Hold { reason, again: true });
        }
        if !matches!(route.dedupe_key, DedupeKey::MessageId) {
            if let Claim::DuplicateOf(of) = self.claims.claim(store, event, &route.dedupe_key).await {
                return Some(Check::Duplicate { of, checked: false });
            }
        }
        if let Ok(body) = serde_json::from_slice(&event.body) {
            super::verify_task::settle(store, &route, event, &body).await;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EventId, EventMeta};

    #[test]
    fn a_callback_stored_while_its_route_verified_is_known_by_its_mark_or_its_time() {
        let event = |headers: Vec<(String, String)>, origin, received_ms| Event {
            id: EventId::from_parts(1, 0),
            meta: EventMeta {
                route: "r".into(),
                received_ms,
                source: None,
                content_type: None,
                headers,
                subscribers: vec!["s".into()],
                dedupe_fallback: false,
                origin,
            },
            body: bytes::Bytes::from_static(b"{}"),
        };
        let mark = |k: &str| vec![(k.to_string(), "x".to_string())];
        assert!(stored_verifying(&event(mark(VERIFIED_BY), Origin::Callback, 9), || {
            None
        }));
        assert!(stored_verifying(&event(mark(CONTESTS), Origin::Poll, 9), || None));
        assert!(!stored_verifying(
            &event(mark("user-agent"), Origin::Callback, 9),
            || None
        ));
        // Unmarked (an earlier version's): by when this relay saw verify go off.
        assert!(stored_verifying(&event(vec![], Origin::Callback, 9), || Some(9)));
        assert!(!stored_verifying(&event(vec![], Origin::Callback, 10), || Some(9)));
        assert!(!stored_verifying(&event(vec![], Origin::Poll, 9), || Some(9)));
    }
}
