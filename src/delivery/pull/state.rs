//! What the pull lane's task ([`super::task`]) owns and does to it: the
//! subscriber's leases, the pullers waiting, the records in progress. It
//! expires leases (a failed attempt each), takes work from the store into
//! the ready queue (recording what is skipped, refused or deferred), hands
//! ready messages out to waiting pullers, turns acknowledgements into
//! records ([`super::settle`]), and gives back what nobody waits for.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use http::HeaderValue;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::leases::{Claimed, Leases};
use super::settle::{self, Settled};
use super::{AckRequest, Handout, PullLane, PullRequest, MAX_LEASED};
use crate::clock;
use crate::delivery::attempt::filter_matches;
use crate::delivery::media_gate::{self, Gate};
use crate::delivery::verify_gate::Verifier;
use crate::metrics::Metrics;
use crate::pull::wire::{message_size, ANSWER_BUDGET};
use crate::store::{EventId, Store, Ticket, Work, WorkSource};

/// The lease when the settings have none (they always do for a pull subscriber).
const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Bytes of one key's Standard Webhooks signature in `webhook-signature`
/// (`v1,` and 44 of base64, a space), rounded up.
const SIGNATURE_SIZE: usize = 64;

/// Messages of one fill checked against the provider's record at once.
const VERIFY_AT_ONCE: usize = 16;

/// A message taken from the store for a hand-out.
pub(super) struct Ready {
    pub(super) work: Work,
    /// `hookrelay-media` for an `after_archive` subscriber, read when the
    /// message was taken (its media was final then, so it stays so).
    media: Option<HeaderValue>,
}

/// What a record task did: each ticket, its event, and whether it was recorded.
pub(super) type Record = Vec<(Ticket, EventId, bool)>;

pub(super) struct State {
    pub(super) lane: Arc<PullLane>,
    store: Store,
    pub(super) metrics: Arc<Metrics>,
    pub(super) leases: Leases<Ready>,
    /// Long-polls waiting for work, first come first served.
    pub(super) waiting: VecDeque<PullRequest>,
    /// Records in progress; each yields its tickets and whether each was recorded.
    pub(super) settling: JoinSet<Record>,
    /// The messages of those records: not taken again meanwhile (a backend
    /// that redelivers on its own may offer them).
    pub(super) recording: HashMap<EventId, Ticket>,
    /// The messages of each record task, to put back those of one that
    /// ended without saying what it recorded (it panicked).
    records: HashMap<tokio::task::Id, Vec<EventId>>,
    /// The leases claimed by acknowledgements whose records are in
    /// progress: put back as they were if the record fails, so that the
    /// acknowledgement sent again (it got `503`) applies.
    acking: HashMap<EventId, Claimed<Ready>>,
    /// Acknowledgements naming a message of `acking` (sent again before the
    /// first one was answered, or by two clients at once): applied once that
    /// record is done, to the lease as it is then (gone if recorded, put back
    /// if not).
    parked: Vec<AckRequest>,
    /// Callbacks of `verify = "fetch"` routes are checked before they are offered.
    verifier: Arc<Verifier>,
}

impl State {
    pub(super) fn new(lane: Arc<PullLane>, store: Store, metrics: Arc<Metrics>, verifier: Arc<Verifier>) -> Self {
        State {
            lane,
            store,
            metrics,
            leases: Leases::default(),
            waiting: VecDeque::new(),
            settling: JoinSet::new(),
            recording: HashMap::new(),
            records: HashMap::new(),
            acking: HashMap::new(),
            parked: Vec::new(),
            verifier,
        }
    }

    /// Leases whose deadline passed are failed attempts, like a hand-back:
    /// each lapses for the retry delay it waits anyway, at most one more
    /// lease (offered to nobody, but a late acknowledgement of its holder
    /// still counts), then is recorded and let go, due when the delay ends;
    /// one whose schedule is exhausted lapses for one more lease, then is a
    /// dead letter (a delivery that succeeded just after its lease is not
    /// one). (The lapse is short so a cluster relay never holds such a
    /// message for hours.)
    pub(super) fn expire(&mut self, now: Instant) {
        let expired = self.leases.expire(now);
        let sub = self.lane.subscriber();
        let mut items: Vec<Settled> = Vec::new();
        if !expired.is_empty() {
            let ids: Vec<String> = expired.iter().take(5).map(|l| l.offer.id.to_string()).collect();
            tracing::warn!(subscriber = %sub.name, count = expired.len(), first = ?ids,
                "pull leases ran out without an answer: a failed attempt each (its holder may still acknowledge it \
                 for one more lease, or until the retry delay is over if that is sooner; in cluster mode, one another \
                 relay took over and settled meanwhile stays as that relay recorded it)");
            for l in expired {
                match sub.retry.next_delay(l.offer.item.work.step, None) {
                    Some(delay) => {
                        let due = clock::now_ms() + delay.as_millis() as u64;
                        let end = now + delay.min(l.length);
                        self.leases.lapse(l, end, due);
                    }
                    // Its due time is not used: recorded, it is a dead letter.
                    None => {
                        let end = now + l.length;
                        self.leases.lapse(l, end, clock::now_ms());
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

    /// How many more messages may be leased: [`MAX_LEASED`] less the leases
    /// held and the live ones whose acknowledgement is being recorded (put
    /// back if that fails, they would be leased again past the bound).
    pub(super) fn room(&self) -> usize {
        let acking = self.acking.values().filter(|(_, lapse)| lapse.is_none()).count();
        MAX_LEASED.saturating_sub(self.leases.leased() + acking)
    }

    /// The token generations of the leases held, those whose
    /// acknowledgement is being recorded included (put back if it fails,
    /// they need their token still).
    pub(super) fn token_gens(&self) -> impl Iterator<Item = u64> + '_ {
        let acking = self.acking.values().map(|(l, _)| l.token_gen);
        self.leases.held().map(|l| l.token_gen).chain(acking)
    }

    /// A record task ended: what it recorded (see [`recorded`](Self::recorded)).
    /// One that ended without saying (it panicked) recorded nothing as far as
    /// the lane knows: its acknowledgement was answered `503` (its
    /// [`Reply`](super::Reply) was dropped), its leases are put back as they
    /// were and the acknowledgements waiting for them are applied, as for a
    /// record that failed (recorded after all, a message is only written
    /// again, or comes again, never lost).
    pub(super) fn joined(
        &mut self,
        done: Result<(tokio::task::Id, Record), tokio::task::JoinError>,
    ) -> Vec<(Ticket, EventId)> {
        let (id, done) = match done {
            Ok((id, done)) => (id, done),
            Err(e) => {
                let events = self.records.get(&e.id()).cloned().unwrap_or_default();
                tracing::error!(subscriber = %self.lane.subscriber().name, error = %e, count = events.len(),
                    "a pull record task ended before it finished; its messages are taken as not recorded");
                let done = events
                    .into_iter()
                    .filter_map(|ev| self.recording.get(&ev).map(|t| (t.clone(), ev, false)))
                    .collect();
                (e.id(), done)
            }
        };
        self.records.remove(&id);
        self.recorded(done)
    }

    /// A record in progress is done (`done`: each ticket, its event, and
    /// whether it was recorded). The leases of an acknowledgement that could
    /// not be recorded are put back as they were (it was answered `503`:
    /// sent again, it applies); the acknowledgements that waited for those
    /// messages are applied now. The tickets recorded, with their events.
    fn recorded(&mut self, done: Vec<(Ticket, EventId, bool)>) -> Vec<(Ticket, EventId)> {
        let mut out = Vec::with_capacity(done.len());
        let mut restored = 0usize;
        for (ticket, event, recorded) in done {
            self.recording.remove(&event);
            let claimed = self.acking.remove(&event);
            if recorded {
                out.push((ticket, event));
            } else if let Some(c) = claimed {
                self.leases.restore(c);
                restored += 1;
            }
        }
        if restored > 0 {
            tracing::warn!(subscriber = %self.lane.subscriber().name, count = restored,
                "acknowledgement not recorded: its leases are kept as they were, for the acknowledgement sent again");
        }
        if !self.parked.is_empty() {
            let parked = std::mem::take(&mut self.parked);
            self.ack_all(parked);
        }
        out
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
        let events = items.iter().map(|s| s.event).collect();
        let task = self.settling.spawn(settle::record(store, metrics, name, items, reply));
        self.records.insert(task.id(), events);
    }

    /// Take up to `need` messages from the store into the ready queue; those
    /// the subscriber's filter does not match are recorded as skipped, those
    /// waiting for their media (`after_archive`) as deferred. How many were
    /// taken, or Err when the store could not be read.
    pub(super) async fn fill(&mut self, source: &mut WorkSource, need: usize) -> Result<usize, ()> {
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
        let mut fresh = Vec::with_capacity(work.len());
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
            fresh.push(w);
        }
        // Checked against the provider's record (`verify = "fetch"`) several
        // at once, in their order: a slow provider holds this lane's
        // long-polls and acknowledgements for one answer's time, not one
        // per message.
        let (verifier, store, name) = (&self.verifier, &self.store, sub.name.as_str());
        let checked: Vec<_> = futures_util::stream::iter(fresh)
            .map(|w| async move {
                let attempted = (w.attempts > 0).then_some(name);
                let check = verifier.check(store, &w.event, w.released, attempted).await;
                (w, check)
            })
            .buffered(VERIFY_AT_ONCE)
            .collect()
            .await;
        for (w, check) in checked {
            if let Some(outcome) = check.outcome(&self.metrics, &sub.name, &w.event) {
                settled.push(Settled {
                    ticket: w.ticket,
                    event: w.event.id,
                    attempt: None,
                    outcome,
                    cause: settle::Cause::Verify,
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
    pub(super) async fn confirm_ready(&mut self, source: &mut WorkSource) {
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
    pub(super) async fn give_back_ready(&mut self, source: &mut WorkSource) {
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
    pub(super) fn hand_out(&mut self, now: Instant) {
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
        while self.leases.ready() > 0 && self.room() > 0 {
            let Some(w) = self.waiting.pop_front() else { break };
            let room = self.room();
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
                    round: l.offer.item.work.ticket.round(),
                })
                .collect();
            if w.reply.send(handouts).is_err() {
                // The puller left before its answer: nobody has these.
                self.leases.give_back(&ids);
            }
        }
    }

    /// Apply acknowledgements that came together (queued while the lane
    /// was busy, or waiting behind one record), in order. The leases each
    /// names are pinned before any is applied: applying one expires what is
    /// due, and must leave the others' alone.
    pub(super) fn ack_all(&mut self, acks: Vec<AckRequest>) {
        for a in &acks {
            self.leases.pin(a.lists.all(), a.arrived, &a.holder);
        }
        for a in acks {
            self.ack(a);
        }
    }

    /// Claim the leases (all or nothing, or those held when `partial`) and
    /// record what the puller says. A lease live when the request came is
    /// claimable by it, also if its deadline passed while the request
    /// waited for the lane (see [`Leases::pin`]): on its last retry step an
    /// expiry is a dead letter, and the puller that answered in time would
    /// get `409` for a message it delivered.
    pub(super) fn ack(&mut self, a: AckRequest) {
        self.leases.pin(a.lists.all(), a.arrived, &a.holder);
        self.expire(Instant::now());
        if a.lists.all().any(|id| self.acking.contains_key(id)) {
            // Its leases stay pinned until it is applied.
            self.parked.push(a);
            return;
        }
        let named: Vec<EventId> = a.lists.all().copied().collect();
        self.apply(a);
        // What it did not claim expires at its deadline again, unless an
        // acknowledgement that waits names it too.
        let waited_for: HashSet<EventId> = self.parked.iter().flat_map(|p| p.lists.all().copied()).collect();
        self.leases.unpin(named.iter().filter(|id| !waited_for.contains(id)));
    }
}

mod apply;
