//! Requests between the relays of a cluster, over core NATS (no
//! JetStream: nothing here needs to be stored). A relay asks all of them
//! on a topic; the relays that can answer do (one or several), the others
//! stay silent.
//! Used by pull subscribers: an acknowledgement that reaches a relay other
//! than the one holding the leases is answered by the holder.

use std::time::Duration;

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
    /// Ask every relay (this one too) on `topic` and hand each answer to
    /// `answer` as it comes, until `answer` says it has heard enough (true)
    /// or `wait` is over. Several relays may answer one request.
    pub async fn ask_peers(
        &self,
        topic: &str,
        body: Bytes,
        wait: Duration,
        answer: &mut (dyn FnMut(Bytes) -> bool + Send),
    ) -> Result<(), StoreError> {
        let client = &self.shared.client;
        let inbox = client.new_inbox();
        let mut answers = client.subscribe(inbox.clone()).await.map_err(unavailable)?;
        client
            .publish_with_reply(subject(topic), inbox, body)
            .await
            .map_err(unavailable)?;
        let until = tokio::time::Instant::now() + wait;
        while let Ok(Some(m)) = tokio::time::timeout_at(until, answers.next()).await {
            if answer(m.payload) {
                break;
            }
        }
        Ok(())
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
