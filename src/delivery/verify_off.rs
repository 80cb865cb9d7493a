//! Families left to a verification that no longer comes: on a route that
//! verified (`verify = "fetch"`), callbacks contesting one dedupe key were
//! stored as events of their own, each to be checked, one let go
//! ([`super::verify_claims`]). When a reload (or restart) turns `verify`
//! off before they are delivered, no check comes, and each would be sent:
//! two bodies of one task, both. So the events of such a family are still
//! settled one to a key, as a route that never verified would have answered
//! the later ones as duplicates: the first let go is delivered, the others
//! are dead letters saying `duplicate:` (a replay of the event itself sends
//! one). Found by the combined-features review, stop 73.
//!
//! A contesting event says so (its kept header names its family's owner),
//! after a restart too. An owner does not: this relay checks the events its
//! route received up to the reload that turned `verify` off (an owner still
//! waiting for a re-check while a contestant was delivered); a relay started
//! with `verify` off already does not know them, and delivers such an owner.

use std::collections::HashMap;

use crate::config::{Config, Verify};
use crate::dedupe::DedupeKey;
use crate::ingest::contested::CONTESTS;
use crate::store::{Event, Origin, Store};

use super::verify_claims::Claim;
use super::verify_gate::{Check, Verifier};

/// A route that does not verify now, with a dedupe key a family can share:
/// the key, and when this relay saw the route stop verifying (ms; None: not
/// while this relay ran).
pub(super) type Unchecked = HashMap<String, (DedupeKey, Option<u64>)>;

/// The routes of `config` that do not verify and whose key a family may
/// share; `was_verifying`: whether a route verified in the configuration
/// replaced; `before`: the map being replaced (an earlier stop is kept).
pub(super) fn unchecked(
    config: &Config,
    was_verifying: impl Fn(&str) -> bool,
    before: &Unchecked,
    now_ms: u64,
) -> Unchecked {
    config
        .routes
        .iter()
        .filter(|r| r.verify != Verify::Fetch && !matches!(r.dedupe_key, DedupeKey::MessageId))
        .map(|r| {
            let off = if was_verifying(&r.name) {
                Some(now_ms)
            } else {
                before.get(&r.name).and_then(|(_, off)| *off)
            };
            (r.name.clone(), (r.dedupe_key.clone(), off))
        })
        .collect()
}

impl Verifier {
    /// On a route that does not verify: a duplicate when `event` belongs to a
    /// family stored while it verified and another member of it was let go
    /// first (None: it goes, as far as families are concerned).
    pub(super) async fn unchecked_family(&self, store: &Store, event: &Event) -> Option<Check> {
        let (key, off) = self.unchecked_key(&event.meta.route)?;
        let contests = event.meta.headers.iter().any(|(k, _)| k == CONTESTS);
        let maybe_owner = event.meta.origin == Origin::Callback && off.is_some_and(|off| event.meta.received_ms <= off);
        if !contests && !maybe_owner {
            return None;
        }
        match self.claims.claim(store, event, &key).await {
            Claim::Won => None,
            Claim::DuplicateOf(of) => Some(Check::Duplicate { of, checked: false }),
        }
    }
}
