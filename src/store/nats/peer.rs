//! Requests between the relays of a cluster, over core NATS (no
//! JetStream: nothing here needs to be stored). A relay asks all of them
//! on a topic; the relay that can answer does, the others stay silent.
//! Used by pull subscribers: an acknowledgement that reaches a relay other
//! than the one holding the leases is answered by the holder.

use std::time::Duration;

use async_nats::RequestErrorKind;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::{unavailable, NatsStore};
use crate::store::{PeerInbox, PeerRequest, StoreError};

/// Requests waiting for the local side to look at them.
const INBOX: usize = 64;

fn subject(topic: &str) -> String {
    format!("hr.peer.{topic}")
}

impl NatsStore {
    /// Ask every relay (this one too) on `topic`; the first answer, or None
    /// when none answered within `wait`.
    pub async fn ask_peers(&self, topic: &str, body: Bytes, wait: Duration) -> Result<Option<Bytes>, StoreError> {
        let request = self.shared.client.request(subject(topic), body);
        match tokio::time::timeout(wait, request).await {
            Ok(Ok(m)) => Ok(Some(m.payload)),
            Ok(Err(e)) if matches!(e.kind(), RequestErrorKind::NoResponders | RequestErrorKind::TimedOut) => Ok(None),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Ok(None),
        }
    }

    /// The requests other relays make on `topic`, until the inbox is dropped.
    pub fn peer_inbox(&self, topic: &str) -> PeerInbox {
        let (tx, rx) = mpsc::channel(INBOX);
        let client = self.shared.client.clone();
        let subject = subject(topic);
        let task = tokio::spawn(async move {
            let mut subscription = match client.subscribe(subject.clone()).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(subject, error = %e, "cannot listen to the other relays");
                    return;
                }
            };
            while let Some(m) = subscription.next().await {
                let Some(reply) = m.reply else { continue };
                let (answer, answered) = oneshot::channel();
                if tx
                    .send(PeerRequest {
                        body: m.payload,
                        answer,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                let client = client.clone();
                tokio::spawn(async move {
                    if let Ok(Some(body)) = answered.await {
                        let _ = client.publish(reply, body).await;
                    }
                });
            }
        });
        PeerInbox { rx, task }
    }
}
