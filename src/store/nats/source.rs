//! A subscriber's work in cluster mode: its durable pull consumer, shared by
//! the lanes of every relay (the consumer never hands one message to two of
//! them while it is unacknowledged). Fresh events and replays come as
//! messages; a retry is the same message, NAKed with its delay. A prefetch
//! task keeps a small window of messages streaming in (one pull request
//! serves many), so a lane never waits for a round trip to get its next
//! piece of work, and new work wakes it at once.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::AckKind;
use futures_util::StreamExt;
use tokio::sync::{mpsc, Notify};

use super::{event, layout, Shared};
use crate::store::result::ResultRow;
use crate::store::{DeliveryState, StoreError, Ticket, Work};

/// Messages a lane keeps at hand (streaming in, plus buffered).
const PREFETCH: usize = 32;
/// How long one pull request of the stream lasts; heartbeats tell a dead one.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
const HEARTBEAT: Duration = Duration::from_secs(5);

/// The NATS backend's handle on one piece of work.
#[derive(Clone)]
pub struct NatsTicket {
    pub(super) route: String,
    pub(super) sub: String,
    /// The event's sequence in its route's stream.
    pub(super) event_seq: u64,
    /// The sequence of the message handed out (the event's, or a replay's).
    pub(super) message_seq: u64,
    /// Settles the message (any relay could, with its reply subject).
    pub(super) acker: Arc<Acker>,
    /// The delivery's result as it was when the work was taken (none for a
    /// fresh event's first delivery).
    pub(super) row: Option<ResultRow>,
    /// The lane's held messages: a record that failed lets go of this one,
    /// so that it comes again after `takeover`.
    pub(super) held: Held,
}

impl NatsTicket {
    /// Stop renewing the message: NATS hands it out again after `takeover`.
    pub(super) fn let_go(&self) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.message_seq);
    }
}

/// A message as the prefetch task hands it over: already held.
struct Received {
    message: async_nats::Message,
    acker: Arc<Acker>,
    seq: u64,
    delivered: u32,
}

impl std::fmt::Debug for NatsTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NatsTicket({}.{}.{})", self.route, self.message_seq, self.sub)
    }
}
impl PartialEq for NatsTicket {
    fn eq(&self, o: &Self) -> bool {
        (self.message_seq, &self.sub, &self.route) == (o.message_seq, &o.sub, &o.route)
    }
}
impl Eq for NatsTicket {}
impl Hash for NatsTicket {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (self.message_seq, &self.sub, &self.route).hash(h)
    }
}

pub struct NatsCursor {
    shared: Arc<Shared>,
    route: String,
    sub: String,
    /// Messages streamed in, waiting for the lane.
    rx: mpsc::Receiver<Received>,
    /// Wakes the lane: a message came.
    signal: Arc<Notify>,
    /// Pending + unacknowledged messages of the consumer, refreshed every second.
    depth: Arc<AtomicU64>,
    /// Messages handed out and not yet done: kept from going to another
    /// relay while this one works on them (a lease, a rate limit).
    held: Held,
    /// The prefetch, depth and progress tasks, stopped with the cursor.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Handed-out messages by stream sequence: their acker and when they came.
pub(super) type Held = Arc<Mutex<HashMap<u64, (Arc<Acker>, tokio::time::Instant)>>>;

impl Drop for NatsCursor {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // What this lane held goes back at once, not after `takeover`.
        let held: Vec<Arc<Acker>> = {
            let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
            h.drain().map(|(_, (a, _))| a).collect()
        };
        if let (false, Ok(rt)) = (held.is_empty(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                for a in held {
                    let _ = a.ack_with(AckKind::Nak(None)).await;
                }
            });
        }
    }
}

impl NatsCursor {
    pub(super) fn open(shared: Arc<Shared>, route: String, sub: String) -> NatsCursor {
        let (tx, rx) = mpsc::channel(PREFETCH);
        let signal = Arc::new(Notify::new());
        let depth = Arc::new(AtomicU64::new(0));
        let held: Held = Arc::default();
        let fetch = tokio::spawn(prefetch(
            shared.clone(),
            route.clone(),
            sub.clone(),
            tx,
            held.clone(),
            signal.clone(),
        ));
        let count = tokio::spawn(count(shared.clone(), route.clone(), sub.clone(), depth.clone()));
        let progress = tokio::spawn(keep_held(held.clone(), shared.takeover));
        NatsCursor {
            shared,
            route,
            sub,
            rx,
            signal,
            depth,
            held,
            tasks: vec![fetch, count, progress],
        }
    }

    pub fn signal(&self) -> Arc<Notify> {
        self.signal.clone()
    }

    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    pub async fn take(&mut self, max: usize, _now_ms: u64) -> Result<Vec<Work>, StoreError> {
        let mut out = Vec::new();
        while out.len() < max {
            let Ok(r) = self.rx.try_recv() else { break };
            if let Some(w) = self.work(r).await? {
                out.push(w);
            }
        }
        Ok(out)
    }

    fn release(&self, seq: u64) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&seq);
    }

    /// A message as work, or None when there is nothing to send (then it is
    /// settled here): not for this subscriber, its event gone, or already
    /// settled by a relay whose acknowledgement was lost.
    async fn work(&self, r: Received) -> Result<Option<Work>, StoreError> {
        let Received {
            message: msg,
            acker,
            seq: message_seq,
            delivered,
        } = r;
        let stream = self.shared.stream(&self.route)?;
        let replay = msg.subject.as_str().starts_with("hr.rp.");
        let (event, event_seq) = if replay {
            // A replay: the payload names the event.
            let seq: u64 = std::str::from_utf8(&msg.payload)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            match stream.direct_get(seq).await {
                Ok(e) => (
                    event::decode(&self.route, seq, layout::millis(e.time), &e.headers, e.payload),
                    seq,
                ),
                Err(_) => {
                    self.release(message_seq);
                    let _ = acker.ack_with(AckKind::Term).await;
                    return Ok(None);
                }
            }
        } else {
            let headers = msg.headers.clone().unwrap_or_default();
            if !event::subscribers(&headers).contains(&self.sub) {
                // Not fanned out to this subscriber (it joined later, or left).
                self.release(message_seq);
                let _ = acker.ack_with(AckKind::Ack).await;
                return Ok(None);
            }
            let stored = event::time_ms(&headers).unwrap_or_else(crate::clock::now_ms);
            (
                event::decode(&self.route, message_seq, stored, &headers, msg.payload.clone()),
                message_seq,
            )
        };
        // A fresh event's first delivery: nothing to read. Otherwise the
        // attempts so far are in its result.
        let step = delivered - 1;
        let row = if delivered == 1 && !replay {
            None
        } else {
            let key = layout::result_key(&self.route, event_seq, &self.sub);
            self.shared.result(&key).await?.map(|(r, _)| r)
        };
        if !replay {
            // Settled before, and the acknowledgement did not arrive.
            let settle = match row.as_ref().map(|r| &r.state) {
                Some(DeliveryState::Delivered | DeliveryState::Skipped) => Some(AckKind::Ack),
                Some(DeliveryState::Dead) => Some(AckKind::Term),
                _ => None,
            };
            if let Some(kind) = settle {
                self.release(message_seq);
                let _ = acker.ack_with(kind).await;
                return Ok(None);
            }
        }
        let attempts = row.as_ref().map_or(step, |r| r.attempts);
        Ok(Some(Work {
            event,
            step,
            attempts,
            ticket: Ticket::Nats(NatsTicket {
                route: self.route.clone(),
                sub: self.sub.clone(),
                event_seq,
                message_seq,
                acker,
                row,
                held: self.held.clone(),
            }),
        }))
    }

    /// The message was settled in `record`: stop holding it.
    pub async fn done(&mut self, ticket: &NatsTicket) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ticket.message_seq);
    }

    /// Waiting work lives in NATS and the prefetch wakes the lane; a look
    /// every second keeps its depth (counted by another task) current.
    pub fn next_due(&mut self) -> Option<u64> {
        Some(crate::clock::now_ms() + 1000)
    }
}

async fn resolve(shared: &Shared, route: &str, sub: &str) -> Option<PullConsumer> {
    if !shared.ready.load(Ordering::Acquire) {
        return None;
    }
    let stream = shared.stream(route).ok()?;
    super::existing_consumer(&stream, sub).await.ok()
}

/// Keep up to [`PREFETCH`] messages streaming in from the consumer (one
/// pull request serves many; the next goes out as the window empties), each
/// held from the moment it arrives.
async fn prefetch(
    shared: Arc<Shared>,
    route: String,
    sub: String,
    tx: mpsc::Sender<Received>,
    held: Held,
    signal: Arc<Notify>,
) {
    loop {
        let Some(c) = resolve(&shared, &route, &sub).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let messages = c
            .stream()
            .max_messages_per_batch(PREFETCH)
            .expires(PULL_EXPIRES)
            .heartbeat(HEARTBEAT)
            .messages()
            .await;
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(subscriber = %sub, error = %e, "cannot pull; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Some(m) = messages.next().await {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    // A missed heartbeat (NATS away) or the consumer gone: pull anew.
                    tracing::debug!(subscriber = %sub, error = %e, "pull interrupted; starting again");
                    break;
                }
            };
            let Ok((seq, delivered)) = m.info().map(|i| (i.stream_sequence, i.delivered.max(1) as u32)) else {
                continue;
            };
            let (message, acker) = m.split();
            let acker = Arc::new(acker);
            held.lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(seq, (acker.clone(), tokio::time::Instant::now()));
            let r = Received {
                message,
                acker,
                seq,
                delivered,
            };
            if tx.send(r).await.is_err() {
                return;
            }
            signal.notify_one();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The longest this relay keeps a message from the others: a pull lease's
/// maximum; after it a message whose record failed goes to another relay.
const MAX_HOLD: Duration = Duration::from_secs(3600);

/// Tell NATS every third of `takeover` that held messages are still being
/// worked on, so only a relay that stopped (died, lost NATS) hands them over.
async fn keep_held(held: Held, takeover: Duration) {
    let period = takeover / 3;
    loop {
        tokio::time::sleep(period).await;
        let now = tokio::time::Instant::now();
        let due: Vec<Arc<Acker>> = {
            let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
            h.retain(|_, (_, since)| now.duration_since(*since) < MAX_HOLD);
            h.values()
                .filter(|(_, since)| now.duration_since(*since) >= period)
                .map(|(a, _)| a.clone())
                .collect()
        };
        for acker in due {
            let _ = acker.ack_with(AckKind::Progress).await;
        }
    }
}

/// Refresh the subscriber's backlog from its consumer every second.
async fn count(shared: Arc<Shared>, route: String, sub: String, depth: Arc<AtomicU64>) {
    let mut consumer = None;
    loop {
        if consumer.is_none() {
            consumer = resolve(&shared, &route, &sub).await;
        }
        if let Some(c) = consumer.as_mut() {
            match c.info().await {
                Ok(info) => depth.store(info.num_pending + info.num_ack_pending as u64, Ordering::Relaxed),
                // Set up again (a reload), or NATS is away: look it up anew.
                Err(_) => consumer = None,
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
