//! Publishing a message JetStream must store, under a message id so that
//! publishing it again is a no-op within the stream's duplicate window:
//! tried again until a deadline while it is not stored (a stream electing a
//! leader, an answer lost: the try may have been stored, and the next one
//! is then a duplicate JetStream drops).

use async_nats::HeaderMap;
use bytes::Bytes;

use super::backoff::Backoff;
use super::{event, unavailable, Shared};
use crate::store::StoreError;

impl Shared {
    /// Publish `body` on `subject` with message id `id`, tried again until
    /// `give_up` (at least once).
    pub(super) async fn publish_stored(
        &self,
        subject: &str,
        id: &str,
        body: Bytes,
        give_up: tokio::time::Instant,
    ) -> Result<(), StoreError> {
        let mut headers = HeaderMap::new();
        headers.insert(event::NONCE, id);
        let mut backoff = Backoff::until(give_up);
        loop {
            let stored = match self
                .js
                .publish_with_headers(subject.to_string(), headers.clone(), body.clone())
                .await
            {
                Ok(ack) => ack.await.map_err(unavailable),
                Err(e) => Err(unavailable(e)),
            };
            let e = match stored {
                Ok(ack) => {
                    if !ack.duplicate {
                        self.wrote(1);
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            tracing::debug!(subject, error = %e, "a message not stored");
            if !backoff.wait().await {
                return Err(e);
            }
        }
    }
}
