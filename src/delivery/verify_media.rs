//! Media left to a verification that no longer comes: a callback stored
//! while its route verified (`verify = "fetch"`) has no media work, ingest
//! left it to the verdict ([`crate::store::NewEvent::media_after_verify`]).
//! When a reload (or restart) turned `verify` off before it was delivered,
//! its delivery writes that work as the verdict would have: the store marks
//! the events that still owe it ([`crate::store::Store::media_deferred`]).

use crate::store::{Event, Origin, Store};

use super::verify_gate::{lock, Check, Verifier};

impl Verifier {
    /// A callback stored while its route verified has no media work (ingest
    /// left it to the verdict); if a reload (or restart) turned `verify` off
    /// since, no verdict comes: its delivery writes that work, as the
    /// verdict would have (the store's mark says whether it is still owed:
    /// a read, once per event while remembered; no write for other events).
    pub(super) async fn deferred_media(&self, store: &Store, event: &Event) -> Check {
        if event.meta.origin != Origin::Callback || lock(&self.media_looked).known.contains_key(&event.id) {
            return Check::Go;
        }
        let Some(route) = self
            .media_routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&event.meta.route)
            .cloned()
        else {
            return Check::Go;
        };
        let owed = match store.media_deferred(event.id).await {
            Ok(owed) => owed,
            Err(e) => {
                tracing::warn!(route = %event.meta.route, event = %event.id, error = %e,
                    "cannot read whether the callback's media is still to be archived; asking again shortly");
                return Check::Wait {
                    due_ms: crate::clock::now_ms() + 1000,
                };
            }
        };
        if owed {
            let body = serde_json::from_slice::<serde_json::Value>(&event.body).ok();
            let urls = crate::ingest::media_urls(&route, body.as_ref());
            if !urls.is_empty() {
                if let Err(e) = store.add_verified_media(event.id, &event.meta.route, urls).await {
                    tracing::warn!(route = %event.meta.route, event = %event.id, error = %e,
                        "the callback's media work, left to a verification its route no longer does, could not be written; asking again shortly");
                    return Check::Wait {
                        due_ms: crate::clock::now_ms() + 1000,
                    };
                }
                tracing::info!(route = %event.meta.route, event = %event.id,
                    "callback stored while its route verified, delivered unchecked now that it does not: its media is archived");
            }
        }
        lock(&self.media_looked).insert(event.id, ());
        Check::Go
    }
}
