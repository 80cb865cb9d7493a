//! Which acknowledgements refused as not leased were recorded already: an
//! id whose delivery to the subscriber the store shows acknowledged, named
//! so in the `409` (`delivered`). A forwarder whose first acknowledgement
//! reached the relay but whose answer was lost sends it again and is
//! refused: told the delivery is recorded, it takes the id as confirmed for
//! the attempt it acknowledged, so a later replay of the event (a later
//! attempt) is posted to its service, not acknowledged unsent as a message
//! it delivered already.
//!
//! With the attempt number the forwarder sent, the attempt itself is looked
//! for in the delivery's history (an operator's replay may have made the
//! delivery pending again meanwhile), and must be acknowledged in every
//! entry under that number; without the number, or with one the history
//! no longer keeps, the delivery must be delivered now; a later attempt
//! acknowledged (another forwarder's delivery) names it too: the
//! forwarder asking is offered the event again only by a replay. Only the first
//! [`LOOKED_AT`] such ids are looked up, a few at once: a `409` for
//! expired leases stays cheap.
//!
//! An id the relay cannot tell about (the store not answering, the
//! delivery's result row unreadable, or past [`LOOKED_AT`]) is named
//! `unknown`: a forwarder asking whether to post a later attempt asks again
//! (taken for "not recorded", a replay was acknowledged unsent).

use std::collections::HashMap;

use futures_util::StreamExt;

use crate::state::App;
use crate::store::{Attempt, DeliveryState, EventId};

/// Ids looked up per refused acknowledgement, at most.
const LOOKED_AT: usize = 64;
/// Lookups at once.
const AT_ONCE: usize = 8;

/// What the relay found of the refused acknowledgements (ids as strings).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Recorded as delivered already.
    pub delivered: Vec<String>,
    /// Not known: not looked up, or unreadable now.
    pub unknown: Vec<String>,
}

/// What one look-up found.
enum Found {
    Delivered,
    Not,
    Unknown,
}

/// Of `not_leased`, those in `acked` (the request acknowledged them as
/// delivered) whose delivery to `subscriber` the store records as
/// acknowledged (`attempts`: the attempt number each was handed out with,
/// when the client said), and those it cannot tell about.
pub async fn recorded_delivered(
    app: &App,
    subscriber: &str,
    not_leased: &[EventId],
    acked: &[EventId],
    attempts: &HashMap<EventId, u32>,
) -> Recorded {
    let asked: Vec<EventId> = not_leased.iter().filter(|id| acked.contains(id)).copied().collect();
    let mut out = Recorded {
        unknown: asked.iter().skip(LOOKED_AT).map(|id| id.to_string()).collect(),
        ..Recorded::default()
    };
    let found: Vec<(EventId, Found)> = futures_util::stream::iter(asked.into_iter().take(LOOKED_AT))
        .map(|id| async move { (id, look_up(app, subscriber, id, attempts).await) })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    for (id, found) in found {
        match found {
            Found::Delivered => out.delivered.push(id.to_string()),
            Found::Unknown => out.unknown.push(id.to_string()),
            Found::Not => {}
        }
    }
    out
}

/// Whether `id`'s delivery to `subscriber` is recorded acknowledged (see
/// [`recorded_delivered`]).
async fn look_up(app: &App, subscriber: &str, id: EventId, attempts: &HashMap<EventId, u32>) -> Found {
    let view = match app.store.event_view(id).await {
        Ok(Some(v)) => v,
        Ok(None) => return Found::Not,
        Err(e) => {
            tracing::warn!(event = %id, subscriber, error = %e,
                "could not read whether a refused acknowledgement was recorded already (answered unknown)");
            return Found::Unknown;
        }
    };
    let Some(d) = view.deliveries.iter().find(|d| d.subscriber == subscriber) else {
        return Found::Not;
    };
    if d.unreadable {
        return Found::Unknown;
    }
    let numbered: Vec<&Attempt> = match attempts.get(&id) {
        Some(n) => d.history.iter().filter(|a| a.attempt == *n).collect(),
        None => Vec::new(),
    };
    let recorded = match numbered.is_empty() {
        // No number, or not in the history kept: delivered now.
        true => d.state == DeliveryState::Delivered,
        // That attempt acknowledged, and no other hand-out under its
        // number (two replay rounds in cluster mode can share one)
        // that was not.
        false => numbered.iter().all(|a| acknowledged(a)),
    };
    // Or a later attempt acknowledged (another forwarder of the
    // subscriber delivered it): an offer after that is a replay.
    let later = attempts
        .get(&id)
        .is_some_and(|n| d.history.iter().any(|a| a.attempt > *n && acknowledged(a)));
    match recorded || later {
        true => Found::Delivered,
        false => Found::Not,
    }
}

/// An attempt a pull client acknowledged: no error, and no status (or a
/// 2xx one).
fn acknowledged(a: &Attempt) -> bool {
    a.error.is_none() && a.status.is_none_or(|s| (200..300).contains(&s))
}
