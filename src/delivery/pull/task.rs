//! The pull lane's task: the one owner of the subscriber's work source and
//! leases. It takes work from the store only while pullers wait (and only as
//! much as they asked for), parks an `after_archive` subscriber's messages
//! until their event's media is archived (like a push lane does before an
//! attempt), hands it out in due order, expires leases at their deadline
//! (a failed attempt), and turns acknowledgements into records
//! ([`super::settle`]) before letting the work go. It sleeps until something
//! can change what it has to do: a request, the store's work signal, a lease
//! or wait deadline, the next due retry, a finished record, new settings.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::leases::Leases;
use super::settle::{self, Settled};
use super::{AckError, AckRequest, Applied, Cmd, Handout, PullLane, PullRequest, MAX_LEASED};
use crate::clock;
use crate::delivery::attempt::filter_matches;
use crate::delivery::handover::Turn;
use crate::delivery::media_gate::{self, Gate};
use crate::delivery::verify_gate::Verifier;
use crate::metrics::Metrics;
use crate::pull::wire::{message_size, ANSWER_BUDGET};
use crate::store::{EventId, Store, Ticket, Work, WorkSource};

/// How long a stopping lane waits for records in progress.
const SETTLE_ON_STOP: Duration = Duration::from_secs(2);
/// The lease when the settings have none (they always do for a pull subscriber).
const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Bytes of one key's Standard Webhooks signature in `webhook-signature`
/// (`v1,` and 44 of base64, a space), rounded up.
const SIGNATURE_SIZE: usize = 64;

/// A message taken from the store for a hand-out.
pub(super) struct Ready {
    work: Work,
    /// `hookrelay-media` for an `after_archive` subscriber, read when the
    /// message was taken (its media was final then, so it stays so).
    media: Option<HeaderValue>,
}

struct State {
    lane: Arc<PullLane>,
    store: Store,
    metrics: Arc<Metrics>,
    leases: Leases<Ready>,
    /// Long-polls waiting for work, first come first served.
    waiting: VecDeque<PullRequest>,
    /// Records in progress; each yields its tickets and whether each was recorded.
    settling: JoinSet<Vec<(Ticket, EventId, bool)>>,
    /// The messages of those records: not taken again meanwhile (a backend
    /// that redelivers on its own may offer them).
    recording: HashMap<EventId, Ticket>,
    /// Callbacks of `verify = "fetch"` routes are checked before they are offered.
    verifier: Arc<Verifier>,
}

/// What a stopping lane needs: its turn (let go as soon as what it leases
/// is [`Held`](crate::delivery::handover::Held)), and whether the stop is a
/// shutdown (true) rather than a reload's.
pub(super) struct Stopping {
    pub turn: Turn,
    pub closed: watch::Receiver<bool>,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    lane: Arc<PullLane>,
    store: Store,
    mut source: WorkSource,
    metrics: Arc<Metrics>,
    verifier: Arc<Verifier>,
    mut rx: mpsc::Receiver<Cmd>,
    mut stop: watch::Receiver<bool>,
    stopping: Stopping,
) {
    let name = lane.subscriber().name.clone();
    let held = stopping.turn.held();
    let signal = source.signal();
    let mut st = State {
        lane,
        store,
        metrics,
        leases: Leases::default(),
        waiting: VecDeque::new(),
        settling: JoinSet::new(),
        recording: HashMap::new(),
        verifier,
    };
    // The queue depth the admin views show (see `clock::DEPTH_REFRESH`).
    let mut refresh = clock::depth_refresh();
    loop {
        if *stop.borrow() {
            break;
        }
        let now = Instant::now();
        st.expire(now);
        st.waiting.retain(|w| !w.reply.is_closed());
        let mut took = None;
        if !st.waiting.is_empty() {
            let room = MAX_LEASED.saturating_sub(st.leases.leased());
            let wanted: usize = st.waiting.iter().map(|w| w.max).sum::<usize>().min(room);
            let need = wanted.saturating_sub(st.leases.ready());
            if need > 0 {
                took = Some(st.fill(&mut source, need).await);
            } else {
                source.want_none();
            }
            st.confirm_ready(&mut source).await;
            st.hand_out(now);
        } else {
            // Nobody pulls through this relay: take nothing from the shared
            // cursor (in cluster mode), so the pullers of other relays get it.
            source.want_none();
        }
        // What is there was handed out: pullers whose wait is over get nothing.
        while let Some(i) = st.waiting.iter().position(|w| w.until <= now) {
            let w = st.waiting.remove(i).expect("found");
            let _ = w.reply.send(Vec::new());
        }
        if st.waiting.is_empty() {
            st.give_back_ready(&mut source).await;
        }
        let labels = st.metrics.sub(&name);
        if st.lane.has_earlier_tokens() {
            // A pull waiting is answered under the token it was authorized
            // with: that token is kept for it too.
            let leased = st.leases.held().map(|l| l.token_gen);
            let live: HashSet<u64> = leased.chain(st.waiting.iter().map(|w| w.token_gen)).collect();
            st.lane.prune_tokens(|g| live.contains(&g));
        }
        st.lane.depth.store(source.depth(), Ordering::Relaxed);
        st.lane.leased.store(st.leases.leased(), Ordering::Relaxed);
        st.lane.waiting.store(st.waiting.len(), Ordering::Relaxed);
        st.metrics
            .pull_leased
            .get_or_create(&labels)
            .set(st.leases.leased() as i64);

        // Wake for the next lease or wait deadline, and, while pullers wait
        // with room to lease, for the next due retry.
        let mut wake_at = st.leases.next_deadline();
        let mut earliest = |t: Instant| wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
        if let Some(t) = st.waiting.iter().map(|w| w.until).min() {
            earliest(t);
        }
        if !st.waiting.is_empty() && st.leases.leased() < MAX_LEASED {
            match took {
                Some(Err(())) => earliest(now + crate::delivery::attempt::READ_ERROR_PAUSE),
                _ => {
                    if let Some(due) = source.next_due() {
                        let t = if due > clock::now_ms() {
                            clock::instant_at(due)
                        } else if took.is_some_and(|n| n.is_ok_and(|n| n > 0)) {
                            now
                        } else {
                            now + clock::RECHECK
                        };
                        earliest(t);
                    }
                }
            }
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some(done) = st.settling.join_next() => {
                for (ticket, event, recorded) in done.unwrap_or_default() {
                    st.recording.remove(&event);
                    // Unrecorded work stays handed out: the cursor never passes it.
                    if recorded {
                        source.done(&ticket).await;
                    }
                }
            }
            // An earlier pull lane of the subscriber recorded work it still leased.
            _ = held.changed() => held.release_settled(&mut source).await,
            cmd = rx.recv() => match cmd {
                None => break,
                // Authorized with a token a reload replaced, and no longer
                // kept (pruned before the request got here): its token could
                // not acknowledge anything, so it gets nothing.
                Some(Cmd::Pull(p)) if !st.lane.token_gen_open(p.token_gen) => {
                    let _ = p.reply.send(Vec::new());
                }
                Some(Cmd::Pull(p)) => st.waiting.push_back(p),
                Some(Cmd::Ack(a)) => st.ack(a),
            },
            // New work: hand it to waiting pullers, or at least count it.
            _ = signal.notified() => {}
            _ = st.lane.changed.notified() => {}
            _ = sleep_until(wake_at), if wake_at.is_some() => {}
            _ = refresh.tick() => {}
        }
    }
    // Pullers still waiting see the lane gone.
    st.waiting.clear();
    st.lane.waiting.store(0, Ordering::Relaxed);
    let Stopping { turn, mut closed } = stopping;
    if *closed.borrow() {
        // A shutdown: leases are forgotten (offered again after a
        // restart); records in progress may finish.
        st.leases.drain();
        st.lane.leased.store(0, Ordering::Relaxed);
        let _ = tokio::time::timeout(SETTLE_ON_STOP, async {
            while st.settling.join_next().await.is_some() {}
        })
        .await;
        return;
    }
    // A reload stopped the lane (its subscriber switched to push, removed or
    // moved to another route). Its forwarders still deliver what they lease:
    // the lane keeps serving their acknowledgements, and expires the leases
    // they do not answer, until the last lease and lapse are over. What it
    // leases is held for the subscriber's next lane meanwhile, which starts
    // now with everything else (see `handover`).
    for offer in st.leases.take_ready() {
        source.give_back(&offer.item.work.ticket).await;
    }
    for l in st.leases.held() {
        held.hold(l.offer.id, l.offer.item.work.ticket.clone());
    }
    for (event, ticket) in &st.recording {
        held.hold(*event, ticket.clone());
    }
    let mut kept = source.kept_while_leased();
    if let Some(kept) = kept.as_mut() {
        // It takes nothing more: what came goes back to NATS at once.
        kept.give_back_all();
    }
    drop(turn);
    if st.leases.held().next().is_some() {
        tracing::info!(subscriber = %name, leased = st.leases.held().count(),
            "pull lane stopped by a reload: it still answers its forwarders' acknowledgements of the messages \
             they lease until each lease is over; those messages are not delivered otherwise meanwhile");
    }
    loop {
        st.expire(Instant::now());
        st.lane.leased.store(st.leases.leased(), Ordering::Relaxed);
        if st.lane.has_earlier_tokens() {
            let live: HashSet<u64> = st.leases.held().map(|l| l.token_gen).collect();
            st.lane.prune_tokens(|g| live.contains(&g));
        }
        if st.leases.held().next().is_none() && st.settling.is_empty() {
            break;
        }
        let wake_at = st.leases.next_deadline();
        tokio::select! {
            biased;
            // A shutdown: what is still leased is offered again after a restart.
            _ = async { closed.wait_for(|c| *c).await.is_ok() } => break,
            Some(done) = st.settling.join_next() => {
                for (ticket, event, recorded) in done.unwrap_or_default() {
                    st.recording.remove(&event);
                    // Unrecorded work stays held: nothing passes it before a restart.
                    if recorded {
                        if let Some(kept) = kept.as_mut() {
                            kept.done(&ticket).await;
                        }
                        held.settle(&event);
                    }
                }
            }
            cmd = rx.recv() => match cmd {
                // No more hand-outs: the puller sees the lane gone.
                Some(Cmd::Pull(_)) => {}
                Some(Cmd::Ack(a)) => st.ack(a),
                None => break,
            },
            _ = sleep_until(wake_at), if wake_at.is_some() => {}
        }
    }
    st.lane.leased.store(0, Ordering::Relaxed);
}

impl State {
    /// Leases whose deadline passed are failed attempts, like a hand-back:
    /// each lapses for the retry delay it waits anyway, at most one more
    /// lease (offered to nobody, but a late acknowledgement of its holder
    /// still counts), then is recorded and let go, due when the delay ends;
    /// one whose schedule is exhausted is a dead letter now. (The lapse is
    /// short so a cluster relay never holds such a message for hours.)
    fn expire(&mut self, now: Instant) {
        let expired = self.leases.expire(now);
        let sub = self.lane.subscriber();
        let mut items: Vec<Settled> = Vec::new();
        if !expired.is_empty() {
            let ids: Vec<String> = expired.iter().take(5).map(|l| l.offer.id.to_string()).collect();
            tracing::warn!(subscriber = %sub.name, count = expired.len(), first = ?ids,
                "pull leases ran out without an answer: a failed attempt each (its holder may still acknowledge it \
                 for one more lease, or until the retry delay is over if that is sooner)");
            for l in expired {
                match sub.retry.next_delay(l.offer.item.work.step, None) {
                    Some(delay) => {
                        let due = clock::now_ms() + delay.as_millis() as u64;
                        let end = now + delay.min(l.length);
                        self.leases.lapse(l, end, due);
                    }
                    None => {
                        let (work, number) = (l.offer.item.work, l.offer.attempt);
                        items.push(settle::expired(work, number, l.at_ms, l.length, &sub, None));
                    }
                }
            }
        }
        for (l, due) in self.leases.lapses_over(now) {
            let (work, number) = (l.offer.item.work, l.offer.attempt);
            items.push(settle::expired(work, number, l.at_ms, l.length, &sub, Some(due)));
        }
        if !items.is_empty() {
            self.settle(items, None);
        }
    }

    /// Record `items` (answering `reply` once done), keeping their messages
    /// from being taken again until then.
    fn settle(&mut self, items: Vec<Settled>, reply: Option<super::Reply>) {
        self.recording.extend(items.iter().map(|s| (s.event, s.ticket.clone())));
        let (store, metrics, name) = (
            self.store.clone(),
            self.metrics.clone(),
            self.lane.subscriber().name.clone(),
        );
        self.settling.spawn(settle::record(store, metrics, name, items, reply));
    }

    /// Take up to `need` messages from the store into the ready queue; those
    /// the subscriber's filter does not match are recorded as skipped, those
    /// waiting for their media (`after_archive`) as deferred. How many were
    /// taken, or Err when the store could not be read.
    async fn fill(&mut self, source: &mut WorkSource, need: usize) -> Result<usize, ()> {
        let sub = self.lane.subscriber();
        let work = match source.take(need, clock::now_ms()).await {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(subscriber = %sub.name, error = %e, "cannot read work from the store");
                return Err(());
            }
        };
        let mut took = work.len();
        let mut settled: Vec<Settled> = Vec::new();
        for w in work {
            if self.leases.holds(&w.event.id) || self.recording.contains_key(&w.event.id) {
                // A backend that redelivers on its own (a NATS consumer whose ack
                // wait is shorter than the lease) may hand out what we hold: the
                // lease we have stands. That copy is let go, or it would stay
                // handed out and never come again. (The sled cursor hands out
                // no copy of what it holds: an expired lease's retry, due at
                // once, waits until its record is done.)
                tracing::debug!(subscriber = %sub.name, event = %w.event.id, "work handed out again while held; ignored");
                source.ignore(&w.ticket);
                took -= 1;
                continue;
            }
            if !filter_matches(&sub, &w.event) {
                settled.push(settle::skipped(w));
                continue;
            }
            let check = self.verifier.check(&w.event, &sub.name).await;
            if let Some(outcome) = check.outcome(&self.metrics, &sub.name, &w.event) {
                settled.push(Settled {
                    ticket: w.ticket,
                    event: w.event.id,
                    attempt: None,
                    outcome,
                    cause: settle::Cause::Answer,
                });
                continue;
            }
            let media = match sub.after_archive {
                false => None,
                true => match media_gate::check(&self.store, &sub.name, w.event.id).await {
                    Gate::Go(header) => Some(header),
                    Gate::Wait { due_ms } => {
                        settled.push(settle::deferred(w, due_ms));
                        continue;
                    }
                },
            };
            let (id, attempt) = (w.event.id, w.attempts + 1);
            self.leases.push_ready(id, Ready { work: w, media }, attempt);
        }
        if !settled.is_empty() {
            self.settle(settled, None);
        }
        Ok(took)
    }

    /// Keep only the ready messages this relay may still hand out: in
    /// cluster mode one that waited (a puller left before its answer) may
    /// have gone to another relay meanwhile (always true for the embedded
    /// store).
    async fn confirm_ready(&mut self, source: &mut WorkSource) {
        if self.leases.ready() == 0 {
            return;
        }
        let tickets: Vec<(EventId, Ticket)> = self
            .leases
            .ready_offers()
            .map(|o| (o.id, o.item.work.ticket.clone()))
            .collect();
        for (id, ticket) in tickets {
            if !source.confirm(&ticket).await {
                self.leases.remove_ready(&id);
            }
        }
    }

    /// Nobody waits here any more (the pullers left while their messages
    /// were being taken, or their wait ended with the subscriber's leases
    /// full): in cluster mode what is ready goes back to NATS at once, for
    /// any relay (the forwarder may pull through another one now), its
    /// attempt number not spent. Kept otherwise, it would stay held here,
    /// renewed, until a puller came to this relay. On one host it stays
    /// ready (the cursor offers nothing it handed out again before a restart).
    async fn give_back_ready(&mut self, source: &mut WorkSource) {
        if !self.store.is_clustered() || self.leases.ready() == 0 {
            return;
        }
        let offers = self.leases.take_ready();
        tracing::debug!(subscriber = %self.lane.subscriber().name, count = offers.len(),
            "no puller waits at this relay: giving its ready messages back to the cluster");
        for o in offers {
            source.give_back(&o.item.work.ticket).await;
        }
    }

    /// Give ready messages to waiting pullers, first come first served, each
    /// up to what it asked for and what fits in one answer
    /// ([`ANSWER_BUDGET`]: the rest stays ready, not leased, for the next
    /// pull); a puller that got something is answered now.
    fn hand_out(&mut self, now: Instant) {
        let sub = self.lane.subscriber();
        let lease = sub.pull().map_or(DEFAULT_LEASE, |p| p.lease);
        let signatures = sub.keys.len() * SIGNATURE_SIZE;
        let size = |r: &Ready| {
            let ev = &r.work.event;
            let strings = ev.meta.route.len()
                + ev.meta.content_type.as_ref().map_or(0, String::len)
                + r.media.as_ref().map_or(0, |m| m.len())
                + signatures;
            message_size(ev.body.len(), strings)
        };
        while self.leases.ready() > 0 && self.leases.leased() < MAX_LEASED {
            let Some(w) = self.waiting.pop_front() else { break };
            let room = MAX_LEASED - self.leases.leased();
            let n = self.leases.fitting(w.max.min(room), ANSWER_BUDGET, size);
            let ids = self.leases.lease(n, &w.holder, now, lease, clock::now_ms());
            // Under the token the pull was authorized with (a reload may
            // have rotated it while the pull waited): the token its
            // forwarder has acknowledges it.
            for id in &ids {
                if let Some(l) = self.leases.get_mut(id) {
                    l.token_gen = w.token_gen;
                }
            }
            let handouts: Vec<Handout> = ids
                .iter()
                .filter_map(|id| self.leases.get(id))
                .map(|l| Handout {
                    event: l.offer.item.work.event.clone(),
                    attempt: l.offer.attempt,
                    media: l.offer.item.media.clone(),
                })
                .collect();
            if w.reply.send(handouts).is_err() {
                // The puller left before its answer: nobody has these.
                self.leases.give_back(&ids);
            }
        }
    }

    /// Claim the leases (all or nothing, or those held when `partial`) and
    /// record what the puller says.
    fn ack(&mut self, a: AckRequest) {
        self.expire(Instant::now());
        let mut ids: Vec<_> = a.lists.all().copied().collect();
        if let Some(under) = a.under {
            // An earlier token acknowledges only what was handed out under it:
            // the others are not held for this request.
            let bad: Vec<EventId> = ids
                .iter()
                .filter(|id| self.leases.token_gen(id) != Some(under))
                .copied()
                .collect();
            if !bad.is_empty() && !a.partial {
                let _ = a.reply.send(Err(AckError::NotLeased(bad)));
                return;
            }
            let bad: HashSet<EventId> = bad.into_iter().collect();
            ids.retain(|id| !bad.contains(id));
        }
        let (claimed, not_held) = if a.partial {
            let (claimed, _) = self.leases.claim_held(&a.holder, &ids, Instant::now());
            let taken: HashSet<EventId> = claimed.iter().map(|(l, _)| l.offer.id).collect();
            // In the order given, those under another token included.
            let not_held = a.lists.all().filter(|id| !taken.contains(id)).copied().collect();
            (claimed, not_held)
        } else {
            match self.leases.claim(&a.holder, &ids, Instant::now()) {
                Ok(c) => (c, Vec::new()),
                Err(bad) => {
                    let _ = a.reply.send(Err(AckError::NotLeased(bad)));
                    return;
                }
            }
        };
        if claimed.is_empty() {
            let summary = Default::default();
            let _ = a.reply.send(Ok(Applied { summary, not_held }));
            return;
        }
        let sub = self.lane.subscriber();
        let acked: HashSet<_> = a.lists.ack.iter().collect();
        let released: HashSet<_> = a.lists.release.iter().collect();
        let items: Vec<Settled> = claimed
            .into_iter()
            .map(|(l, lapsed)| {
                let (work, number) = (l.offer.item.work, l.offer.attempt);
                if acked.contains(&work.event.id) {
                    settle::acknowledged(work, number, l.at_ms)
                } else if released.contains(&work.event.id) {
                    match lapsed {
                        None => settle::released(work),
                        // Its lease ran out before the release: that expiry
                        // was a failed attempt (a release only keeps the
                        // retry step of a live lease), recorded now with the
                        // due time it got then.
                        Some(due) => settle::expired(work, number, l.at_ms, l.length, &sub, Some(due)),
                    }
                } else {
                    let local = a.lists.local.get(&work.event.id);
                    settle::handed_back(work, number, l.at_ms, &sub, local)
                }
            })
            .collect();
        let reply = a.reply;
        let reply: super::Reply = Box::new(move |r| {
            let _ = reply.send(r.map(|summary| Applied { summary, not_held }));
        });
        self.settle(items, Some(reply));
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}
