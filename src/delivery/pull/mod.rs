//! A pull subscriber's lane: the subscriber's cursor (the same
//! [`WorkSource`](crate::store::WorkSource) a push lane reads), advanced by
//! the private side's acknowledgements instead of by an HTTP client. Leases
//! take the place of attempts in flight.
//!
//! An `after_archive` pull subscriber gets a message once its event's media
//! is archived, with the `hookrelay-media` header among its headers, exactly
//! as a push subscriber would (the waiting is recorded as a deferral, not as
//! a hand-out).
//!
//! One task per pull subscriber ([`task`]) owns the work source and the
//! [`leases`] (with the pullers waiting and the records in progress:
//! [`state`]); request handlers talk to it through [`PullLane::pull`] and
//! [`PullLane::ack`], so several forwarders pulling one subscriber are served
//! one at a time and never get a message another one holds. A long-poll waits
//! on the store's work signal (no periodic polling). Leases live in this
//! relay's memory: after a restart the cursor offers unfinished messages
//! again, with the same id (at-least-once). In cluster mode an
//! acknowledgement that reaches another relay is handed to this one
//! ([`peer`]). Only the `WorkSource` seam and
//! `Store::record` are used, so another backend plugs in as it is (a NATS
//! durable consumer would set its ack wait to at least the lease, so that the
//! relay's lease expires first). This module knows neither HTTP nor sled; the
//! pull API ([`crate::pull`]) is the HTTP side.

mod ack;
mod leases;
mod peer;
pub mod settle;
mod state;
mod task;

#[cfg(test)]
#[path = "late_ack_tests.rs"]
mod late_ack_tests;
#[cfg(test)]
#[path = "record_ended_tests.rs"]
mod record_ended_tests;
#[cfg(test)]
#[path = "restored_bound_tests.rs"]
mod restored_bound_tests;
#[cfg(test)]
#[path = "shutdown_ack_tests.rs"]
mod shutdown_ack_tests;
#[cfg(test)]
pub(crate) mod test_relay;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::handover::Opening;
use crate::clock;
use crate::config::Subscriber;
use crate::metrics::Metrics;
pub use crate::pull::wire::LocalAnswer;
use crate::store::{Event, Store};
pub use ack::{ack_across, AckError, AckLists, AckSummary};
use ack::{AckRequest, Applied, Reply};

/// Messages leased at once per pull subscriber, whoever holds them: bounds
/// the memory a subscriber's forwarders can pin.
pub const MAX_LEASED: usize = 1000;
/// Requests queued for the lane's task; more wait for room.
const MAILBOX: usize = 1024;

/// One message handed out.
#[derive(Debug, Clone)]
pub struct Handout {
    pub event: Event,
    /// 1 for the first hand-out; grows with each hand-back and expired lease.
    pub attempt: u32,
    /// The `hookrelay-media` header of an `after_archive` subscriber's message.
    pub media: Option<http::HeaderValue>,
    /// The round of delivery it belongs to, in cluster mode ([`crate::store::Ticket::round`]).
    pub round: Option<u32>,
}

/// The lane is stopping: no more pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// The last pull: when and from where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastPull {
    /// Wall-clock ms; None until the first pull since the relay started.
    pub at_ms: Option<u64>,
    /// The client address as the public listener saw it (trusted proxies applied).
    pub from: Option<IpAddr>,
}

enum Cmd {
    Pull(PullRequest),
    Ack(AckRequest),
}

pub(super) struct PullRequest {
    holder: String,
    /// The generation of the token the request was authorized with: what it
    /// is handed is leased under that token, which acknowledges it even if a
    /// reload rotates the token while the request waits.
    token_gen: u64,
    max: usize,
    /// When to answer with nothing.
    until: tokio::time::Instant,
    reply: oneshot::Sender<Vec<Handout>>,
}

/// One pull subscriber's lane, shared between its task and the request handlers.
pub struct PullLane {
    /// The subscriber's settings (token, lease, filter, retry); a reload replaces them.
    sub: RwLock<Arc<Subscriber>>,
    /// The task's mailbox.
    tx: mpsc::Sender<Cmd>,
    /// Wakes the task when the settings change.
    changed: Notify,
    /// Pending deliveries (leased ones included), as the task last counted
    /// them ([`super::handover::UNKNOWN_DEPTH`] before its source is open).
    depth: AtomicU64,
    /// Messages leased now.
    leased: AtomicUsize,
    /// Long-polls waiting now.
    waiting: AtomicUsize,
    last: Mutex<LastPull>,
    /// When the lane started (ms): "time since the last pull" counts from here
    /// until a first pull, so a forwarder that never came is noticed.
    started_ms: u64,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Asked of the other relays when an acknowledgement is for their leases.
    store: Store,
    /// Answers the other relays' acknowledgements for this relay's leases
    /// (cluster mode only).
    peer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The generation of the current token, and earlier tokens (with their
    /// generation) that leases handed out under them still need.
    tokens: Mutex<Tokens>,
}

/// A pull subscriber's token generations: one per token (a token rotated
/// back to while still kept gets its generation again, so that it
/// acknowledges everything handed out under it as one set).
struct Tokens {
    current: u64,
    /// The generation a new token gets.
    next: u64,
    earlier: Vec<(u64, crate::auth::Secret)>,
}

impl PullLane {
    /// Start the lane's task over `source`.
    pub(super) fn start(
        sub: &Subscriber,
        store: Store,
        opening: Opening,
        (closed, forget): (watch::Receiver<bool>, watch::Receiver<bool>),
        metrics: Arc<Metrics>,
        verifier: Arc<super::verify_gate::Verifier>,
    ) -> Arc<PullLane> {
        let (tx, rx) = mpsc::channel(MAILBOX);
        let (stop, stop_rx) = watch::channel(false);
        let lane = Arc::new(PullLane {
            sub: RwLock::new(Arc::new(sub.clone())),
            tx,
            changed: Notify::new(),
            depth: AtomicU64::new(opening.depth()),
            leased: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            last: Mutex::new(LastPull::default()),
            started_ms: clock::now_ms(),
            stop,
            task: Mutex::new(None),
            store: store.clone(),
            peer: Mutex::new(None),
            tokens: Mutex::new(Tokens {
                current: 0,
                next: 1,
                earlier: Vec::new(),
            }),
        });
        if let Some(inbox) = store.peer_inbox(&peer::topic(&sub.name)) {
            *lane.peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer::serve(Arc::downgrade(&lane), inbox));
        }
        let name = sub.name.clone();
        let t = tokio::spawn({
            let lane = lane.clone();
            let mut stop_rx = stop_rx;
            async move {
                let Some((source, turn)) = opening.source(&store, &name, &mut stop_rx).await else {
                    return;
                };
                let stopping = task::Stopping { turn, closed, forget };
                task::run(lane, store, source, metrics, verifier, rx, stop_rx, stopping).await;
            }
        });
        *lane.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        lane
    }

    /// New settings from a reload (a new lease applies to the next hand-outs).
    pub(super) fn update(&self, sub: &Subscriber) {
        {
            let mut current = self.sub.write().unwrap_or_else(|e| e.into_inner());
            let old = current.pull().map(|p| p.token.clone());
            if let Some((old, new)) = old.zip(sub.pull()).filter(|(old, new)| new.token != *old) {
                // A rotated token: the old one still acknowledges the leases
                // handed out under it, until they are over (the task prunes it).
                let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
                let gen = tokens.current;
                tokens.earlier.push((gen, old));
                // A token rotated back to while still kept takes up its
                // generation again: rotated away once more, it acknowledges
                // what it was handed both times.
                match tokens.earlier.iter().position(|(_, t)| *t == new.token) {
                    Some(i) => tokens.current = tokens.earlier.remove(i).0,
                    None => {
                        tokens.current = tokens.next;
                        tokens.next += 1;
                    }
                }
            }
            *current = Arc::new(sub.clone());
        }
        self.changed.notify_one();
    }

    /// The current token and its generation, read together (a reload
    /// changes both under the settings' lock): a request authorized with the
    /// token is tagged with the generation that token has.
    pub fn current_token(&self) -> (Option<crate::auth::Secret>, u64) {
        let sub = self.sub.read().unwrap_or_else(|e| e.into_inner());
        let gen = self.tokens.lock().unwrap_or_else(|e| e.into_inner()).current;
        (sub.pull().map(|p| p.token.clone()), gen)
    }

    /// Whether a request authorized under token generation `gen` may still
    /// be handed something: `gen` is the current generation, or an earlier
    /// one still kept (so its token acknowledges what the request gets).
    fn token_gen_open(&self, gen: u64) -> bool {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.current == gen || tokens.earlier.iter().any(|(g, _)| *g == gen)
    }

    /// The generation of the earlier token `presented` matches, if leases
    /// handed out under it may still be acknowledged with it.
    pub fn earlier_token(&self, presented: &[String]) -> Option<u64> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .earlier
            .iter()
            .find(|(_, t)| crate::auth::token_matches(presented, std::slice::from_ref(t)))
            .map(|(g, _)| *g)
    }

    /// Forget earlier tokens nothing needs: `live` are the generations of
    /// the leases now and of the pulls waiting (all of them authorized
    /// before any later rotation).
    fn prune_tokens(&self, live: impl Fn(u64) -> bool) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if !tokens.earlier.is_empty() {
            tokens.earlier.retain(|(g, _)| live(*g));
        }
    }

    /// Whether an earlier token is still kept.
    fn has_earlier_tokens(&self) -> bool {
        !self.tokens.lock().unwrap_or_else(|e| e.into_inner()).earlier.is_empty()
    }

    /// Whether its task is over (a lane stopped by a reload: its last lease too).
    pub(crate) fn has_ended(&self) -> bool {
        super::lane::task_ended(&self.task)
    }

    /// Whether the lane was told to stop (by a reload, or a shutdown).
    fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    pub(super) fn signal_stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Stop the task: waiting pulls are answered `Stopped`. It goes on
    /// serving acknowledgements of its leases until the last is over:
    /// stopped by a reload (see [`super::handover`]), or by a shutdown until
    /// its grace ends (then leases are forgotten, their messages offered
    /// again after the restart).
    pub(super) async fn stop(&self) {
        self.signal_stop();
        if let Some(p) = self.peer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            p.abort();
        }
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }

    pub fn subscriber(&self) -> Arc<Subscriber> {
        self.sub.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Up to `max` messages, leased to `holder` under token generation
    /// `token_gen` (the one the request was authorized with:
    /// [`current_token`](Self::current_token)); waits up to `wait` for the
    /// first one. An empty list when none came in time, or when that token
    /// was replaced and is no longer kept meanwhile.
    pub async fn pull(
        &self,
        holder: String,
        token_gen: u64,
        max: usize,
        wait: Duration,
        from: Option<IpAddr>,
    ) -> Result<Vec<Handout>, Stopped> {
        self.seen(from);
        let (reply, rx) = oneshot::channel();
        let req = PullRequest {
            holder,
            token_gen,
            max,
            until: tokio::time::Instant::now() + wait,
            reply,
        };
        self.tx.send(Cmd::Pull(req)).await.map_err(|_| Stopped)?;
        let got = rx.await.map_err(|_| Stopped)?;
        // A long-poll is a pull for its whole length.
        self.seen(from);
        Ok(got)
    }

    /// Acknowledge (`ack`), hand back (`retry`) or release messages leased
    /// to `holder`. Answers once every result is recorded. On one host all
    /// or nothing. In cluster mode the leases of one forwarder may be held
    /// by several relays: this relay applies the ones it holds and asks the
    /// other relays to apply the rest ([`peer`]); the ids no relay leases to
    /// `holder` are refused, the others applied.
    /// `under`: presented with an earlier token of this generation
    /// ([`earlier_token`](Self::earlier_token)): only leases handed out
    /// under it are claimed, all or nothing, and other relays are not asked.
    /// A lane a reload stopped never asks the other relays either: it is
    /// reached with its own token, which may be one the reload replaced,
    /// and a peer applies what it is asked for any lease of the holder
    /// (the subscriber's current ones too), with no token to check.
    pub async fn ack(&self, holder: String, lists: AckLists, under: Option<u64>) -> Result<AckSummary, AckError> {
        self.ack_arrived(tokio::time::Instant::now(), holder, lists, under)
            .await
    }

    /// [`ack`](Self::ack) of a request that came at `arrived`.
    async fn ack_arrived(
        &self,
        arrived: tokio::time::Instant,
        holder: String,
        lists: AckLists,
        under: Option<u64>,
    ) -> Result<AckSummary, AckError> {
        if !self.store.is_clustered() || under.is_some() || self.is_stopped() {
            return self
                .ack_here(arrived, holder, lists, false, under)
                .await
                .map(|a| a.summary);
        }
        let here = self
            .ack_here(arrived, holder.clone(), lists.clone(), true, None)
            .await?;
        if here.not_held.is_empty() {
            return Ok(here.summary);
        }
        let name = self.subscriber().name.clone();
        let ask: Vec<crate::store::EventId> = here
            .not_held
            .iter()
            .filter(|id| !here.later_here.contains(id))
            .copied()
            .collect();
        let there = match ask.is_empty() {
            true => Applied::default(),
            false => peer::ask(&self.store, &name, holder, &lists.only(&ask), arrived).await?,
        };
        let mut applied = here.summary;
        applied += there.summary;
        let not_leased: Vec<crate::store::EventId> = here
            .not_held
            .iter()
            .filter(|id| here.later_here.contains(id) || there.not_held.contains(id))
            .copied()
            .collect();
        match not_leased {
            none if none.is_empty() => Ok(applied),
            not_leased if applied == AckSummary::default() => Err(AckError::NotLeased(not_leased)),
            not_leased => Err(AckError::NotLeasedRestApplied { not_leased, applied }),
        }
    }

    /// [`ack`](Self::ack) of this relay's leases only: all or nothing, or
    /// (`partial`) those it holds, naming the others.
    async fn ack_here(
        &self,
        arrived: tokio::time::Instant,
        holder: String,
        lists: AckLists,
        partial: bool,
        under: Option<u64>,
    ) -> Result<Applied, AckError> {
        let (reply, rx) = oneshot::channel();
        let req = AckRequest {
            holder,
            lists,
            partial,
            under,
            arrived,
            reply,
        };
        self.tx.send(Cmd::Ack(req)).await.map_err(|_| AckError::Stopped)?;
        rx.await.map_err(|_| AckError::Stopped)?
    }

    fn seen(&self, from: Option<IpAddr>) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = LastPull {
            at_ms: Some(clock::now_ms()),
            from,
        };
    }

    /// Pending deliveries as the task last counted them; `None` while the
    /// lane waits for the subscriber's stopped push lane to finish its
    /// attempts (its work source is not open yet: the store's count stands for it).
    pub fn queue_depth(&self) -> Option<u64> {
        super::handover::depth(&self.depth)
    }
    pub fn leased(&self) -> usize {
        self.leased.load(Ordering::Relaxed)
    }
    /// Long-polls waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
    pub fn last_pull(&self) -> LastPull {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seconds since a pull last asked for or received messages: 0 while a
    /// long-poll waits; since the lane started when none came yet.
    pub fn seconds_since_pull(&self, now_ms: u64) -> u64 {
        if self.waiting() > 0 {
            return 0;
        }
        let since = self.last_pull().at_ms.unwrap_or(self.started_ms);
        now_ms.saturating_sub(since) / 1000
    }
}
