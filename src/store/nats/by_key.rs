//! The event holding a dedupe key (its subject's message), for the
//! `verify = "fetch"` claims (`delivery::verify_claims`).

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use bytes::Bytes;

use super::{layout, unavailable, NatsStore};
use crate::store::{EventId, StoreError};

impl NatsStore {
    /// The id of the event stored under `hash` on `route`, if any.
    pub async fn event_by_dedupe(&self, route: &str, hash: [u8; 32]) -> Result<Option<EventId>, StoreError> {
        let Ok(stream) = self.shared.stream(route) else {
            return Ok(None);
        };
        let subject = layout::event_subject(route, &hash);
        match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => {
                let ev = super::event::decode(route, m.sequence, layout::millis(m.time), &m.headers, Bytes::new());
                Ok(Some(ev.id))
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }
}
