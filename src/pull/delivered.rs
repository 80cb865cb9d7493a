//! Which acknowledgements refused as not leased were recorded already: an
//! id the store shows delivered to the subscriber, named so in the `409`
//! (`delivered`). A forwarder whose first acknowledgement reached the relay
//! but whose answer was lost sends it again and is refused: told the
//! delivery is recorded, it forgets the id, so a later replay of the event
//! is posted to its service, not acknowledged unsent as a message it
//! delivered already.

use crate::state::App;
use crate::store::{DeliveryState, EventId};

/// Of `not_leased`, those in `acked` (the request acknowledged them as
/// delivered) whose delivery to `subscriber` the store records as
/// delivered. An id the store cannot read now is left out: the forwarder
/// then keeps it, as before.
pub async fn recorded_delivered(app: &App, subscriber: &str, not_leased: &[EventId], acked: &[EventId]) -> Vec<String> {
    let mut out = Vec::new();
    for id in not_leased.iter().filter(|id| acked.contains(id)) {
        let Ok(Some(view)) = app.store.event_view(*id).await else {
            continue;
        };
        let delivered = view
            .deliveries
            .iter()
            .any(|d| d.subscriber == subscriber && d.state == DeliveryState::Delivered);
        if delivered {
            out.push(id.to_string());
        }
    }
    out
}
