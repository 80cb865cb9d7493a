//! Cluster mode: dead letters whose event has expired. NATS expires an event
//! `store.retention` after it arrived and its dead letter `store.retention`
//! after the delivery died, so a letter outlives its event by as long as the
//! delivery was retried. Such a letter cannot be sent again: it is left out
//! of the list or its subscriber's count, a replay drops it without
//! counting it, and the retention sweep drops it. A route's stream holds
//! its events from its first sequence on, so a letter below it names an
//! expired event (one stream read per route, no read per letter).

use std::collections::HashMap;

use super::super::{layout, unavailable, NatsStore};
use crate::store::StoreError;

/// The first sequence each route's stream still holds; a route whose stream
/// is gone or cannot be read is left out (its letters are left alone).
pub(in crate::store::nats) struct Floors(HashMap<String, u64>);

impl Floors {
    /// Whether the event `seq` of `route` has expired.
    pub fn expired(&self, route: &str, seq: u64) -> bool {
        self.0.get(route).is_some_and(|first| seq < *first)
    }
}

impl NatsStore {
    /// The floors of the routes of `letters` (route, subscriber, sequence).
    pub(in crate::store::nats) async fn floors(&self, letters: &[(String, String, u64)]) -> Floors {
        let mut floors = HashMap::new();
        for (route, _, _) in letters {
            if floors.contains_key(route) {
                continue;
            }
            let stream = match self.shared.stream(route) {
                Ok(s) => Some(s),
                Err(_) => self.removed_route_stream(route).await.ok().flatten(),
            };
            let Some(stream) = stream else { continue };
            if let Ok(info) = stream.get_info().await {
                floors.insert(route.clone(), info.state.first_sequence.max(1));
            }
        }
        Floors(floors)
    }

    /// The dead letters (route, subscriber, sequence), oldest first, but
    /// those whose event has expired: what the list and the counts show.
    pub(in crate::store::nats) async fn live_letters(
        &self,
        sub: Option<&str>,
    ) -> Result<Vec<(String, String, u64)>, StoreError> {
        let mut letters = self.dead_subjects(sub).await?;
        let floors = self.floors(&letters).await;
        letters.retain(|(route, _, seq)| !floors.expired(route, *seq));
        Ok(letters)
    }

    /// Purge the dead letters whose event has expired; how many.
    pub(in crate::store::nats) async fn drop_expired_letters(&self) -> Result<usize, StoreError> {
        let letters = self.dead_subjects(None).await?;
        let floors = self.floors(&letters).await;
        let dl = self.shared.js.get_stream(layout::DEAD).await.map_err(unavailable)?;
        let mut dropped = 0;
        for (route, sub, seq) in letters {
            if !floors.expired(&route, seq) {
                continue;
            }
            match dl.purge().filter(layout::dead_subject(&route, &sub, seq)).await {
                Ok(_) => dropped += 1,
                Err(e) => {
                    tracing::warn!(route, subscriber = sub, seq, error = %e, "cannot drop the dead letter of an expired event; the next sweep tries again");
                }
            }
        }
        if dropped > 0 {
            tracing::info!(
                dropped,
                "retention: dropped dead letters whose events expired (cluster mode: an event expires store.retention after it arrived)"
            );
        }
        Ok(dropped)
    }
}
