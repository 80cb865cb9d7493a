//! Requests between the relays of a cluster, over core NATS (no
//! JetStream: nothing here needs to be stored). A relay asks all of them
//! on a topic; the relay that can answer does, the others decline.
//! Used by pull subscribers: an acknowledgement that reaches a relay other
//! than the one holding the leases is answered by the holder.
//!
//! So that "nobody can" is known without waiting the whole time: every
//! relay listening on a topic says so on the topic's roll call
//! (`hr.here.<topic>`) when it starts and every [`HELLO_EVERY`], and answers
//! every request, declining with an empty body. A relay that has listened
//! to the roll call long enough ([`WARM`]) knows who listens: once every
//! relay heard within [`GONE_AFTER`] declined, nobody will answer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{unavailable, NatsStore};
use crate::store::{PeerInbox, PeerRequest, StoreError};

/// Requests waiting for the local side to look at them.
const INBOX: usize = 64;
/// How often a listening relay says so.
const HELLO_EVERY: Duration = Duration::from_secs(1);
/// A relay not heard for this long is taken as gone (it stopped, died or
/// lost NATS); asks still wait for it until their `wait` while it counts.
const GONE_AFTER: Duration = Duration::from_secs(3);
/// How long a relay listens to a roll call before it trusts it: more than
/// one hello of every other relay.
const WARM: Duration = Duration::from_millis(1500);
/// Names the relay (its listener on the topic) in hellos and answers.
const PEER: &str = "Hr-Peer";

fn subject(topic: &str) -> String {
    format!("hr.peer.{topic}")
}

fn roll_call(topic: &str) -> String {
    format!("hr.here.{topic}")
}

/// Who listens on each topic, as this relay heard it.
#[derive(Default)]
pub(super) struct Peers {
    topics: Mutex<HashMap<String, Roll>>,
}

/// One topic's roll call.
struct Roll {
    /// Listeners of this relay on the topic (each hears the roll call).
    listening: usize,
    /// Since when this relay hears the roll call without a break.
    since: Instant,
    /// Each listener heard, when last.
    heard: HashMap<String, Instant>,
}

impl Peers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Roll>> {
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn heard(&self, topic: &str, who: &str) {
        if let Some(r) = self.lock().get_mut(topic) {
            r.heard.insert(who.to_owned(), Instant::now());
        }
    }

    /// The listeners on `topic` that must answer before "nobody can" is
    /// known; None while this relay does not know them all.
    fn expected(&self, topic: &str) -> Option<HashSet<String>> {
        let topics = self.lock();
        let r = topics.get(topic)?;
        (r.since.elapsed() >= WARM).then(|| {
            r.heard
                .iter()
                .filter(|(_, at)| at.elapsed() < GONE_AFTER)
                .map(|(who, _)| who.clone())
                .collect()
        })
    }
}

/// A listener's place in its topic's roll call; leaving it (the inbox
/// dropped) forgets the roll call once no listener of this relay hears it.
struct Listening {
    shared: Arc<super::Shared>,
    topic: String,
}

impl Listening {
    fn join(shared: Arc<super::Shared>, topic: &str) -> Listening {
        shared
            .peers
            .lock()
            .entry(topic.to_owned())
            .or_insert_with(|| Roll {
                listening: 0,
                since: Instant::now(),
                heard: HashMap::new(),
            })
            .listening += 1;
        Listening {
            shared,
            topic: topic.to_owned(),
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let mut topics = self.shared.peers.lock();
        if let Some(r) = topics.get_mut(&self.topic) {
            r.listening -= 1;
            if r.listening == 0 {
                topics.remove(&self.topic);
            }
        }
    }
}

fn named(who: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(PEER, who);
    h
}

impl NatsStore {
    /// Ask every relay (this one too) on `topic`; the first answer, or None
    /// when none answered: as soon as every relay listening on the topic
    /// declined, else after `wait`.
    pub async fn ask_peers(&self, topic: &str, body: Bytes, wait: Duration) -> Result<Option<Bytes>, StoreError> {
        let client = &self.shared.client;
        let expected = self.shared.peers.expected(topic);
        let inbox = client.new_inbox();
        let mut answers = client.subscribe(inbox.clone()).await.map_err(unavailable)?;
        client
            .publish_with_reply(subject(topic), inbox, body)
            .await
            .map_err(unavailable)?;
        let mut declined = HashSet::new();
        let until = Instant::now() + wait;
        loop {
            let Ok(Some(m)) = tokio::time::timeout_at(until, answers.next()).await else {
                return Ok(None);
            };
            if !m.payload.is_empty() {
                return Ok(Some(m.payload));
            }
            if let Some(who) = m.headers.as_ref().and_then(|h| h.get(PEER)) {
                declined.insert(who.to_string());
            }
            if expected.as_ref().is_some_and(|e| e.is_subset(&declined)) {
                return Ok(None);
            }
        }
    }

    /// The requests other relays make on `topic`, until the inbox is dropped;
    /// this relay says it listens on the topic's roll call meanwhile.
    pub fn peer_inbox(&self, topic: &str) -> PeerInbox {
        let (tx, rx) = mpsc::channel(INBOX);
        let shared = self.shared.clone();
        let client = shared.client.clone();
        let (subject, roll, topic) = (subject(topic), roll_call(topic), topic.to_owned());
        // This listener's name: unique, and new when a lane starts again.
        let me = client.new_inbox();
        let task = tokio::spawn(async move {
            let (mut requests, mut hellos) = match (
                client.subscribe(subject.clone()).await,
                client.subscribe(roll.clone()).await,
            ) {
                (Ok(r), Ok(h)) => (r, h),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(subject, error = %e, "cannot listen to the other relays");
                    return;
                }
            };
            let _listening = Listening::join(shared.clone(), &topic);
            let mut hello = tokio::time::interval(HELLO_EVERY);
            loop {
                tokio::select! {
                    _ = hello.tick() => {
                        let _ = client.publish_with_headers(roll.clone(), named(&me), Bytes::new()).await;
                    }
                    Some(h) = hellos.next() => {
                        if let Some(who) = h.headers.as_ref().and_then(|h| h.get(PEER)) {
                            shared.peers.heard(&topic, who.as_str());
                        }
                    }
                    m = requests.next() => {
                        let Some(m) = m else { return };
                        let Some(reply) = m.reply else { continue };
                        let (answer, answered) = oneshot::channel();
                        if tx.send(PeerRequest { body: m.payload, answer }).await.is_err() {
                            return;
                        }
                        let (client, me) = (client.clone(), me.clone());
                        tokio::spawn(async move {
                            // Declined (None, or dropped): an empty answer.
                            let body = answered.await.ok().flatten().unwrap_or_default();
                            let _ = client.publish_with_headers(reply, named(&me), body).await;
                        });
                    }
                }
            }
        });
        PeerInbox { rx, task }
    }
}
