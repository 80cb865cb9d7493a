//! A subscriber's work in cluster mode: its durable pull consumer, shared by
//! the lanes of every relay (the consumer never hands one message to two of
//! them while it is unacknowledged). Fresh events and replays come as
//! messages; a retry is the same message, NAKed with its delay. A small task
//! long-polls while the lane is idle, so new work wakes the lane at once.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::{event, layout, Shared};
use crate::store::{StoreError, Ticket, Work};

/// How long one fetch may take before the lane tries again.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the idle long-poll waits for one message.
const LONG_POLL: Duration = Duration::from_secs(20);

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
    /// Resolved once the consumer exists (NATS may be away at start).
    consumer: Option<PullConsumer>,
    /// Messages the long-poll got while the lane was busy.
    queue: Arc<Mutex<VecDeque<jetstream::Message>>>,
    /// Wakes the lane: the long-poll got a message.
    signal: Arc<Notify>,
    /// Pending + unacknowledged messages of the consumer, refreshed every second.
    depth: Arc<AtomicU64>,
    /// Messages handed out and not yet done: kept from going to another
    /// relay while this one works on them (a lease, a rate limit).
    held: Held,
    /// The long-poll, depth and progress tasks, stopped with the cursor.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Handed-out messages by stream sequence: their acker and when they came.
type Held = Arc<Mutex<HashMap<u64, (Arc<Acker>, tokio::time::Instant)>>>;

impl Drop for NatsCursor {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl NatsCursor {
    pub(super) fn open(shared: Arc<Shared>, route: String, sub: String) -> NatsCursor {
        let queue: Arc<Mutex<VecDeque<jetstream::Message>>> = Arc::default();
        let signal = Arc::new(Notify::new());
        let depth = Arc::new(AtomicU64::new(0));
        let poll = tokio::spawn(long_poll(
            shared.clone(),
            route.clone(),
            sub.clone(),
            queue.clone(),
            signal.clone(),
        ));
        let count = tokio::spawn(count(shared.clone(), route.clone(), sub.clone(), depth.clone()));
        let held: Held = Arc::default();
        let progress = tokio::spawn(keep_held(held.clone(), shared.takeover));
        NatsCursor {
            shared,
            route,
            sub,
            consumer: None,
            queue,
            signal,
            depth,
            held,
            tasks: vec![poll, count, progress],
        }
    }

    pub fn signal(&self) -> Arc<Notify> {
        self.signal.clone()
    }

    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    async fn consumer(&mut self) -> Option<PullConsumer> {
        if self.consumer.is_none() {
            self.consumer = resolve(&self.shared, &self.route, &self.sub).await;
        }
        self.consumer.clone()
    }

    pub async fn take(&mut self, max: usize, _now_ms: u64) -> Result<Vec<Work>, StoreError> {
        let mut messages: Vec<jetstream::Message> = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let n = q.len().min(max);
            q.drain(..n).collect()
        };
        if messages.len() < max {
            if let Some(c) = self.consumer().await {
                let want = max - messages.len();
                let fetch = async {
                    let mut batch = c.fetch().max_messages(want).messages().await?;
                    let mut got = Vec::new();
                    while let Some(m) = batch.next().await {
                        got.push(m?);
                    }
                    Ok::<_, async_nats::Error>(got)
                };
                match tokio::time::timeout(FETCH_TIMEOUT, fetch).await {
                    Ok(Ok(got)) => messages.extend(got),
                    Ok(Err(e)) => tracing::debug!(subscriber = %self.sub, error = %e, "fetch failed; trying again"),
                    Err(_) => tracing::debug!(subscriber = %self.sub, "fetch timed out; trying again"),
                }
            }
        }
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            if let Some(w) = self.work(m).await? {
                out.push(w);
            }
        }
        Ok(out)
    }

    /// A message as work, or None when it is not for this subscriber or its
    /// event is gone (then it is settled here).
    async fn work(&self, m: jetstream::Message) -> Result<Option<Work>, StoreError> {
        let (message_seq, delivered) = match m.info() {
            Ok(i) => (i.stream_sequence, i.delivered.max(1) as u32),
            Err(_) => return Ok(None),
        };
        let subject = m.message.subject.to_string();
        let (msg, acker) = m.split();
        let acker = Arc::new(acker);
        let stream = self.shared.stream(&self.route)?;
        let (event, event_seq) = if subject.starts_with("hr.rp.") {
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
                    let _ = acker.ack_with(AckKind::Term).await;
                    return Ok(None);
                }
            }
        } else {
            let headers = msg.headers.clone().unwrap_or_default();
            if !event::subscribers(&headers).contains(&self.sub) {
                // Not fanned out to this subscriber (it joined later, or left).
                let _ = acker.ack_with(AckKind::Ack).await;
                return Ok(None);
            }
            let stored = event::time_ms(&headers).unwrap_or_else(crate::clock::now_ms);
            (
                event::decode(&self.route, message_seq, stored, &headers, msg.payload.clone()),
                message_seq,
            )
        };
        // First delivery of a fresh event: nothing to read. Otherwise the
        // attempts so far are in its result.
        let step = delivered - 1;
        let attempts = if delivered == 1 && event_seq == message_seq {
            0
        } else {
            let key = layout::result_key(&self.route, event_seq, &self.sub);
            self.shared.result(&key).await?.map_or(step, |(r, _)| r.attempts)
        };
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(message_seq, (acker.clone(), tokio::time::Instant::now()));
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

    /// Waiting work lives in NATS and the long-poll wakes the lane; a look
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

/// While the lane has nothing, wait for one message on its behalf.
async fn long_poll(
    shared: Arc<Shared>,
    route: String,
    sub: String,
    queue: Arc<Mutex<VecDeque<jetstream::Message>>>,
    signal: Arc<Notify>,
) {
    let mut consumer = None;
    loop {
        if consumer.is_none() {
            consumer = resolve(&shared, &route, &sub).await;
            if consumer.is_none() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            // Ready now: the lane may have work waiting.
            signal.notify_one();
        }
        if !queue.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let c = consumer.clone().expect("resolved");
        let poll = async {
            let mut batch = c.batch().max_messages(1).expires(LONG_POLL).messages().await?;
            let mut got = Vec::new();
            while let Some(m) = batch.next().await {
                got.push(m?);
            }
            Ok::<_, async_nats::Error>(got)
        };
        match tokio::time::timeout(LONG_POLL + Duration::from_secs(5), poll).await {
            Ok(Ok(got)) if !got.is_empty() => {
                queue.lock().unwrap_or_else(|e| e.into_inner()).extend(got);
                signal.notify_one();
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
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
