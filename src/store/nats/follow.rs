//! Following a durable pull consumer shared by every relay: this relay asks
//! NATS for exactly as many messages as its reader can work on now (a push
//! lane's free slots, the pullers waiting on a pull lane; a standing window
//! of [`PREFETCH`] for the archiver and the reconciler), with pull requests
//! that wait for new work (so it wakes the reader at once). Every message is
//! held from the moment it arrives ([`super::hold`]: renewed, and checked
//! before it is sent), and the consumer's backlog is counted every second.
//! Used by subscribers' cursors ([`super::source`]), the media archiver's
//! ([`super::media_source`]) and the reconciler's ([`super::task_work`]).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::Acker;
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub(super) use super::depth::Depth;
use super::give_back::{give_back, Unread};
pub(super) use super::hold::{Held, Takeover};
use super::Shared;

/// Messages a standing reader (archiver, reconciler) keeps at hand.
pub(super) const PREFETCH: usize = 32;
/// How long one pull request waits for messages; a request lost with a
/// consumer leader is noticed 5 s after this.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// Pull requests waiting at once (more demand waits for one to end).
const MAX_REQUESTS: usize = 8;
/// How long a message the reader stopped wanting stays at hand (a puller
/// that comes right back gets it) before it goes back to NATS.
const GIVE_BACK_AFTER: Duration = Duration::from_secs(2);

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
            Follow::Subscriber { route, sub } => super::consumer::subscriber(shared, route, sub).await,
            Follow::Archiver => super::media::existing_archiver(shared).await.ok(),
            Follow::Reconciler => super::tasks::existing_reconciler(shared).await.ok(),
        }
    }
}

/// A message as the pull task hands it over: already held.
pub(super) struct Received {
    pub message: async_nats::Message,
    pub acker: Arc<Acker>,
    pub seq: u64,
    /// How many times NATS has handed it out (1 the first time).
    pub delivered: u32,
    /// Stored before its consumer was created (see [`super::consumer`]),
    /// or handed out again as a first delivery after NATS lost its
    /// consumer's state ([`Pull::arrived`]): it may have been settled
    /// already, also on its first hand-out.
    pub rewound: bool,
}

/// What arrived and what is asked for.
#[derive(Default)]
struct Inbox {
    /// Arrived (when), not yet read.
    queue: VecDeque<(Instant, Received)>,
    /// Asked of NATS by pull requests still waiting.
    requested: usize,
    /// How many the reader wants beyond what it has read.
    wanted: usize,
    /// A standing reader: `wanted` stays as it is when messages are read.
    standing: bool,
}

/// The tasks of one follower; they stop when it drops, and what it held goes
/// back at once, not after `takeover`.
pub(super) struct Follower {
    inbox: Arc<Mutex<Inbox>>,
    /// Wakes the pull task: the demand changed.
    demand: Arc<Notify>,
    /// Wakes the reader: a message came.
    pub signal: Arc<Notify>,
    /// Pending + unacknowledged messages of the consumer, counted every second.
    pub depth: Arc<Depth>,
    pub held: Held,
    /// A subscriber's cursor: what it gives back unread keeps its attempt
    /// number ([`super::give_back`]).
    unread: Option<Arc<Unread>>,
    /// How long a held message stays ours unrenewed: this relay's
    /// `takeover`, or the consumer's ack wait when shorter.
    pub takeover: Takeover,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Follower {
    /// Follow `follow` with a standing window of [`PREFETCH`] messages,
    /// counting its backlog into `depth`.
    pub fn start(shared: Arc<Shared>, follow: Follow, depth: Arc<Depth>) -> Follower {
        Self::spawn(shared, follow, depth, PREFETCH, true)
    }

    /// Follow `follow`, taking messages only as the reader asks ([`want`](Self::want)).
    pub fn on_demand(shared: Arc<Shared>, follow: Follow, depth: Arc<Depth>) -> Follower {
        Self::spawn(shared, follow, depth, 0, false)
    }

    fn spawn(shared: Arc<Shared>, follow: Follow, depth: Arc<Depth>, wanted: usize, standing: bool) -> Follower {
        let inbox = Arc::new(Mutex::new(Inbox {
            wanted,
            standing,
            ..Inbox::default()
        }));
        let (demand, signal) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let held: Held = Arc::default();
        let takeover = Takeover::new(shared.takeover);
        let pull = Pull {
            shared: shared.clone(),
            follow: follow.clone(),
            inbox: inbox.clone(),
            demand: demand.clone(),
            signal: signal.clone(),
            held: held.clone(),
            consumer_seq: Arc::default(),
        };
        let unread = match &follow {
            Follow::Subscriber { route, sub } => Some(Arc::new(Unread {
                shared: shared.clone(),
                route: route.clone(),
                sub: sub.clone(),
            })),
            Follow::Archiver | Follow::Reconciler => None,
        };
        let fetch = tokio::spawn(pull.run());
        let count = tokio::spawn(count(shared, follow, depth.clone(), takeover.clone()));
        let progress = tokio::spawn(super::hold::keep_held(held.clone(), takeover.clone()));
        Follower {
            inbox,
            demand,
            signal,
            depth,
            held,
            unread,
            takeover,
            tasks: vec![fetch, count, progress],
        }
    }

    /// `depth`, if NATS confirmed it lately: while NATS cannot be read it
    /// is not kept at its last value (`hookrelay_queue_depth` left out, as
    /// the oldest pending age is).
    pub fn depth_known(&self) -> Option<u64> {
        self.depth.known()
    }

    /// The next message that arrived, if any (a lost one is skipped: NATS
    /// has handed it out again).
    pub fn next(&self) -> Option<Received> {
        loop {
            let r = {
                let mut inbox = lock(&self.inbox);
                let (_, r) = inbox.queue.pop_front()?;
                if !inbox.standing {
                    inbox.wanted = inbox.wanted.saturating_sub(1);
                }
                r
            };
            // A standing reader's window has room again.
            self.demand.notify_one();
            if super::hold::holds(&self.held, r.seq, self.takeover.get()) {
                return Some(r);
            }
            self.release(r.seq);
        }
    }

    /// The reader wants `n` more messages than it has read: ask NATS for
    /// them; arrived ones beyond `n` go back to NATS after [`GIVE_BACK_AFTER`].
    pub fn want(&self, n: usize) {
        let excess: Vec<Received> = {
            let mut inbox = lock(&self.inbox);
            inbox.wanted = n;
            let keep = inbox.queue.len().min(n);
            let (fresh, stale): (Vec<_>, Vec<_>) = inbox
                .queue
                .drain(keep..)
                .partition(|(at, _)| at.elapsed() < GIVE_BACK_AFTER);
            inbox.queue.extend(fresh);
            stale.into_iter().map(|(_, r)| r).collect()
        };
        self.demand.notify_one();
        give_back(&self.held, self.unread.clone(), excess);
    }

    /// The reader wants nothing and cannot start anything soon: ask NATS
    /// for nothing and give back at once everything that arrived and was not
    /// read (unlike [`want`](Self::want), with no grace for a reader that
    /// comes right back).
    pub fn want_nothing_now(&self) {
        let all: Vec<Received> = {
            let mut inbox = lock(&self.inbox);
            inbox.wanted = 0;
            inbox.queue.drain(..).map(|(_, r)| r).collect()
        };
        self.demand.notify_one();
        give_back(&self.held, self.unread.clone(), all);
    }

    /// Stop holding the message: it was settled, or it should come again
    /// after `takeover` (possibly to another relay).
    pub fn release(&self, seq: u64) {
        super::hold::release(&self.held, seq);
    }
}

fn lock(inbox: &Mutex<Inbox>) -> std::sync::MutexGuard<'_, Inbox> {
    inbox.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn release(held: &Held, seq: u64) {
    super::hold::release(held, seq);
}

impl Drop for Follower {
    /// A relay that stops gives back at once only what its reader never
    /// took; what it took (an attempt in flight, a rate-limit wait, a pull
    /// lease) may still reach the subscriber while the relay stops, so it
    /// goes to another relay after `takeover`, as after a crash — not at
    /// once, which sent in-flight deliveries a second time at every restart.
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let untaken: Vec<Received> = lock(&self.inbox).queue.drain(..).map(|(_, r)| r).collect();
        give_back(&self.held, None, untaken);
        super::hold::drain(&self.held);
    }
}

/// The pull task's state.
#[derive(Clone)]
struct Pull {
    shared: Arc<Shared>,
    follow: Follow,
    inbox: Arc<Mutex<Inbox>>,
    demand: Arc<Notify>,
    signal: Arc<Notify>,
    held: Held,
    /// The consumer (by when it was created) and the highest consumer
    /// sequence a message of it came with (see [`Pull::arrived`]).
    consumer_seq: Arc<Mutex<(i128, u64)>>,
}

impl Pull {
    /// Keep pull requests out for what the reader wants beyond what arrived
    /// and what is asked for already.
    async fn run(self) {
        let mut consumer: Option<PullConsumer> = None;
        let mut requests: JoinSet<bool> = JoinSet::new();
        loop {
            let ask = {
                let inbox = lock(&self.inbox);
                inbox.wanted.saturating_sub(inbox.queue.len() + inbox.requested)
            };
            if ask > 0 && requests.len() < MAX_REQUESTS {
                if consumer.is_none() {
                    consumer = self.follow.resolve(&self.shared).await;
                }
                if let Some(c) = consumer.clone() {
                    lock(&self.inbox).requested += ask;
                    requests.spawn(self.clone().request(c, ask));
                    continue;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            tokio::select! {
                _ = self.demand.notified() => {}
                Some(done) = requests.join_next() => {
                    if !matches!(done, Ok(true)) {
                        // NATS away, or the consumer set up again: look it up anew.
                        consumer = None;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
        }
    }

    /// One pull request for `n` messages, each held as it arrives; whether
    /// it ended normally (all came, or it expired).
    async fn request(self, c: PullConsumer, n: usize) -> bool {
        let mut got = 0;
        let rewound_to = super::consumer::rewound_to(&c);
        let created = c.cached_info().created.unix_timestamp_nanos();
        // Every message this request brings takes its consumer sequence
        // after the request reached NATS, so above any seen before it was
        // sent; one at or below was handed out before (see `arrived`).
        // (Requests run side by side: one seen meanwhile by another proves
        // nothing.)
        let seen_before = {
            let last = self.consumer_seq.lock().unwrap_or_else(|e| e.into_inner());
            if last.0 == created {
                last.1
            } else {
                0
            }
        };
        let ok = match c.batch().max_messages(n).expires(PULL_EXPIRES).messages().await {
            Ok(mut messages) => loop {
                match messages.next().await {
                    None => break true,
                    Some(Err(e)) => {
                        tracing::debug!(consumer = ?self.follow, error = %e, "pull interrupted; starting again");
                        break false;
                    }
                    Some(Ok(m)) => {
                        got += 1;
                        self.arrived(m, rewound_to, created, seen_before);
                    }
                }
            },
            Err(e) => {
                tracing::debug!(consumer = ?self.follow, error = %e, "cannot pull; trying again");
                false
            }
        };
        lock(&self.inbox).requested -= n - got;
        self.demand.notify_one();
        ok
    }

    /// Hold a message that arrived and queue it for the reader (one it no
    /// longer wants goes back on its next [`Follower::want`]).
    fn arrived(&self, m: async_nats::jetstream::Message, rewound_to: u64, created: i128, seen_before: u64) {
        let info = m.info().map(|i| {
            let stored_ms = u64::try_from(i.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
            (
                i.stream_sequence,
                i.delivered.max(1) as u32,
                i.consumer_sequence,
                stored_ms,
            )
        });
        let (message, acker) = m.split();
        let acker = Arc::new(acker);
        let Ok((seq, delivered, consumer_seq, stored_ms)) = info else {
            lock(&self.inbox).requested -= 1;
            return;
        };
        // Every hand-out takes the consumer's next sequence. One that comes
        // as a first delivery with a sequence this relay had seen before
        // its request was sent was handed out already: NATS lost the
        // consumer's state of it (a node killed before it wrote it, a
        // single-node NATS restarted), and this relay may have settled it
        // since. Its result is read like a rewound consumer's, not trusted
        // to be none. (A consumer created again starts its sequence anew.)
        {
            let mut last = self.consumer_seq.lock().unwrap_or_else(|e| e.into_inner());
            if last.0 != created {
                *last = (created, 0);
            }
            last.1 = last.1.max(consumer_seq);
        }
        let again = delivered == 1 && consumer_seq <= seen_before;
        if again && matches!(self.follow, Follow::Subscriber { .. }) {
            tracing::info!(consumer = ?self.follow, stream_seq = seq, consumer_seq,
                "a message handed out again as a first delivery (NATS lost its consumer's state): its result is read");
        }
        let first_stored = (delivered == 1 && !again).then_some(stored_ms);
        if !super::hold::hold(&self.held, seq, acker.clone(), first_stored) {
            // Held here already (queued, or being worked on): not twice.
            lock(&self.inbox).requested -= 1;
            return;
        }
        let r = Received {
            message,
            acker,
            seq,
            delivered,
            rewound: seq <= rewound_to || again,
        };
        {
            let mut inbox = lock(&self.inbox);
            inbox.requested -= 1;
            inbox.queue.push_back((Instant::now(), r));
        }
        self.signal.notify_one();
    }
}

/// Refresh the consumer's backlog and ack wait every second (the ack wait
/// changes under running relays with `apply-cluster-settings`).
async fn count(shared: Arc<Shared>, follow: Follow, depth: Arc<Depth>, takeover: Takeover) {
    let mut consumer = None;
    loop {
        if consumer.is_none() {
            consumer = follow.resolve(&shared).await;
        }
        if let Some(c) = consumer.as_mut() {
            match c.info().await {
                Ok(info) => {
                    depth.record(info.num_pending + info.num_ack_pending as u64);
                    takeover.set_cluster(info.config.ack_wait);
                }
                // Set up again (a reload), or NATS is away: look it up anew.
                Err(_) => consumer = None,
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
