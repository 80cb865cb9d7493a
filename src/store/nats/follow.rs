//! Following a durable pull consumer shared by every relay: a prefetch task
//! keeps a small window of messages streaming in (one pull request serves
//! many, and new work wakes the reader at once), every message is held from
//! the moment it arrives and kept from going to another relay by progress
//! acknowledgements while this one works on it, and the consumer's backlog
//! is counted every second. Used by subscribers' cursors ([`super::source`])
//! the media archiver's ([`super::media_source`]) and the reconciler's
//! ([`super::task_work`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::AckKind;
use futures_util::StreamExt;
use tokio::sync::{mpsc, Notify};

use super::Shared;

/// Messages a reader keeps at hand (streaming in, plus buffered).
pub(super) const PREFETCH: usize = 32;
/// How long one pull request of the stream lasts; heartbeats tell a dead one.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
const HEARTBEAT: Duration = Duration::from_secs(5);
/// The longest this relay keeps a message from the others: a pull lease's
/// maximum; after it a message whose record failed goes to another relay.
const MAX_HOLD: Duration = Duration::from_secs(3600);

/// Handed-out messages by stream sequence: their acker and when they came.
pub(super) type Held = Arc<Mutex<HashMap<u64, (Arc<Acker>, tokio::time::Instant)>>>;

/// Which consumer to follow.
#[derive(Clone, Debug)]
pub(super) enum Follow {
    /// A subscriber's cursor on its route's stream.
    Subscriber { route: String, sub: String },
    /// The archiver's, on the media work stream.
    Archiver,
    /// The reconciler's, on the task work stream.
    Reconciler,
}

impl Follow {
    async fn resolve(&self, shared: &Shared) -> Option<PullConsumer> {
        if !shared.ready.load(Ordering::Acquire) {
            return None;
        }
        match self {
            Follow::Subscriber { route, sub } => {
                let stream = shared.stream(route).ok()?;
                super::existing_consumer(&stream, sub).await.ok()
            }
            Follow::Archiver => super::media::existing_archiver(shared).await.ok(),
            Follow::Reconciler => super::tasks::existing_reconciler(shared).await.ok(),
        }
    }
}

/// A message as the prefetch task hands it over: already held.
pub(super) struct Received {
    pub message: async_nats::Message,
    pub acker: Arc<Acker>,
    pub seq: u64,
    /// How many times NATS has handed it out (1 the first time).
    pub delivered: u32,
}

/// The tasks and channels of one follower; the tasks stop when it drops,
/// and what it held goes back at once, not after `takeover`.
pub(super) struct Follower {
    pub rx: mpsc::Receiver<Received>,
    /// Wakes the reader: a message came.
    pub signal: Arc<Notify>,
    /// Pending + unacknowledged messages of the consumer, refreshed every second.
    pub depth: Arc<AtomicU64>,
    pub held: Held,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Follower {
    /// Follow `follow`, counting its backlog into `depth`.
    pub fn start(shared: Arc<Shared>, follow: Follow, depth: Arc<AtomicU64>) -> Follower {
        let (tx, rx) = mpsc::channel(PREFETCH);
        let signal = Arc::new(Notify::new());
        let held: Held = Arc::default();
        let fetch = tokio::spawn(prefetch(
            shared.clone(),
            follow.clone(),
            tx,
            held.clone(),
            signal.clone(),
        ));
        let count = tokio::spawn(count(shared.clone(), follow, depth.clone()));
        let progress = tokio::spawn(keep_held(held.clone(), shared.takeover));
        Follower {
            rx,
            signal,
            depth,
            held,
            tasks: vec![fetch, count, progress],
        }
    }

    /// Stop holding the message: it was settled, or it should come again
    /// after `takeover` (possibly to another relay).
    pub fn release(&self, seq: u64) {
        release(&self.held, seq);
    }
}

pub(super) fn release(held: &Held, seq: u64) {
    held.lock().unwrap_or_else(|e| e.into_inner()).remove(&seq);
}

impl Drop for Follower {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
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

/// Keep up to [`PREFETCH`] messages streaming in from the consumer (the
/// next pull request goes out as the window empties), each held from the
/// moment it arrives.
async fn prefetch(shared: Arc<Shared>, follow: Follow, tx: mpsc::Sender<Received>, held: Held, signal: Arc<Notify>) {
    loop {
        let Some(c) = follow.resolve(&shared).await else {
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
                tracing::debug!(consumer = ?follow, error = %e, "cannot pull; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Some(m) = messages.next().await {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    // A missed heartbeat (NATS away) or the consumer gone: pull anew.
                    tracing::debug!(consumer = ?follow, error = %e, "pull interrupted; starting again");
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

/// Refresh the consumer's backlog every second.
async fn count(shared: Arc<Shared>, follow: Follow, depth: Arc<AtomicU64>) {
    let mut consumer = None;
    loop {
        if consumer.is_none() {
            consumer = follow.resolve(&shared).await;
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
