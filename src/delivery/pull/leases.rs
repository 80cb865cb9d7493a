//! The leases of one pull subscriber, as a value: which messages are handed
//! out, to whom, until when, and which are ready to be offered (again).
//!
//! A message is in exactly one place: ready (taken from the store, not handed
//! out), leased (handed out, its deadline not passed), lapsed (its deadline
//! passed: offered to nobody, but its holder may still acknowledge it until
//! the retry delay it would wait anyway is over), or gone from here (claimed,
//! or its lapse over: the caller records either). Knows nothing of the store,
//! HTTP or the clock: the caller says what time it is.

use std::collections::{BTreeSet, HashMap, VecDeque};

use tokio::time::Instant;

use crate::store::EventId;

/// A message ready to be handed out.
#[derive(Debug)]
pub(super) struct Offer<T> {
    pub id: EventId,
    pub item: T,
    /// The attempt number its next hand-out carries.
    pub attempt: u32,
}

/// A message handed out.
#[derive(Debug)]
pub(super) struct Lease<T> {
    pub offer: Offer<T>,
    /// Who may acknowledge it (the puller's forwarder id; "" when it sent none).
    pub holder: String,
    /// When it is offered again if not acknowledged.
    pub until: Instant,
    /// Wall-clock ms of the hand-out: the attempt's start in its record.
    pub at_ms: u64,
    /// How long the lease was (the settings may change before it ends).
    pub length: std::time::Duration,
    /// Which of the subscriber's tokens it was handed out under (a reload
    /// may change the token while it lasts).
    pub token_gen: u64,
}

/// A lease taken out by [`Leases::claim`], with its lapse if it had lapsed
/// (its expiry was a failed attempt already).
pub(super) type Claimed<T> = (Lease<T>, Option<Lapse>);

/// A lapsed lease's lapse: when it ends, and when its retry is due then (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lapse {
    pub end: Instant,
    pub due_ms: u64,
}

pub(super) struct Leases<T> {
    leased: HashMap<EventId, Lease<T>>,
    /// The leases by deadline, to expire them in order without a scan.
    deadlines: BTreeSet<(Instant, EventId)>,
    /// Leases whose deadline passed, still claimable by their holder until
    /// the end of their lapse (by which they are ordered in `lapse_ends`),
    /// with when their retry is due (ms) once the lapse is over.
    lapsed: HashMap<EventId, (Lease<T>, Instant, u64)>,
    lapse_ends: BTreeSet<(Instant, EventId)>,
    /// Offered first to first: hand-outs that reached nobody in front, fresh
    /// work behind.
    ready: VecDeque<Offer<T>>,
}

impl<T> Default for Leases<T> {
    fn default() -> Self {
        Leases {
            leased: HashMap::new(),
            deadlines: BTreeSet::new(),
            lapsed: HashMap::new(),
            lapse_ends: BTreeSet::new(),
            ready: VecDeque::new(),
        }
    }
}

impl<T> Leases<T> {
    pub fn leased(&self) -> usize {
        self.leased.len()
    }

    pub fn ready(&self) -> usize {
        self.ready.len()
    }

    /// The messages ready to be handed out, in order.
    pub fn ready_offers(&self) -> impl Iterator<Item = &Offer<T>> {
        self.ready.iter()
    }

    /// Forget a ready message (it may no longer be handed out from here).
    pub fn remove_ready(&mut self, id: &EventId) {
        self.ready.retain(|o| o.id != *id);
    }

    /// Take out every ready message (nobody here may hand them out now).
    pub fn take_ready(&mut self) -> Vec<Offer<T>> {
        self.ready.drain(..).collect()
    }

    /// Fresh work, offered after what is already waiting.
    pub fn push_ready(&mut self, id: EventId, item: T, attempt: u32) {
        self.ready.push_back(Offer { id, item, attempt });
    }

    /// How many of the first `max` ready messages fit in `budget`, each
    /// taking `size`: at least one when any is ready (a message larger than
    /// the budget goes alone).
    pub fn fitting(&self, max: usize, budget: usize, size: impl Fn(&T) -> usize) -> usize {
        let mut used = 0usize;
        let mut n = 0;
        for o in self.ready.iter().take(max) {
            used = used.saturating_add(size(&o.item));
            if n > 0 && used > budget {
                break;
            }
            n += 1;
        }
        n
    }

    /// Hand out up to `max` ready messages to `holder` for `length` from
    /// `now`; their ids.
    pub fn lease(
        &mut self,
        max: usize,
        holder: &str,
        now: Instant,
        length: std::time::Duration,
        at_ms: u64,
    ) -> Vec<EventId> {
        let until = now + length;
        let n = max.min(self.ready.len());
        let mut ids = Vec::with_capacity(n);
        for offer in self.ready.drain(..n) {
            ids.push(offer.id);
            self.deadlines.insert((until, offer.id));
            self.leased.insert(
                offer.id,
                Lease {
                    offer,
                    holder: holder.to_string(),
                    until,
                    at_ms,
                    length,
                    token_gen: 0,
                },
            );
        }
        ids
    }

    /// Whether `id` is here already (leased, lapsed or ready).
    pub fn holds(&self, id: &EventId) -> bool {
        self.leased.contains_key(id) || self.lapsed.contains_key(id) || self.ready.iter().any(|o| o.id == *id)
    }

    pub fn get(&self, id: &EventId) -> Option<&Lease<T>> {
        self.leased.get(id)
    }

    pub fn get_mut(&mut self, id: &EventId) -> Option<&mut Lease<T>> {
        self.leased.get_mut(id)
    }

    /// The attempt number `id` is leased (or lapsed) with.
    pub fn attempt(&self, id: &EventId) -> Option<u32> {
        self.leased
            .get(id)
            .or_else(|| self.lapsed.get(id).map(|(l, _, _)| l))
            .map(|l| l.offer.attempt)
    }

    /// The token generation of `id`'s lease, live or lapsed.
    pub fn token_gen(&self, id: &EventId) -> Option<u64> {
        self.leased
            .get(id)
            .or_else(|| self.lapsed.get(id).map(|(l, _, _)| l))
            .map(|l| l.token_gen)
    }

    /// Hand-outs that reached nobody (the puller left): ready again, in
    /// front, with the same attempt number.
    pub fn give_back(&mut self, ids: &[EventId]) {
        for id in ids.iter().rev() {
            if let Some(l) = self.leased.remove(id) {
                self.deadlines.remove(&(l.until, *id));
                self.ready.push_front(l.offer);
            }
        }
    }

    /// Take out the leases whose deadline is `now` or earlier, in deadline
    /// order: they can no longer be claimed, and the caller records each as a
    /// failed attempt.
    pub fn expire(&mut self, now: Instant) -> Vec<Lease<T>> {
        let mut expired = Vec::new();
        while let Some(&(until, id)) = self.deadlines.first() {
            if until > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(l) = self.leased.remove(&id) {
                expired.push(l);
            }
        }
        expired
    }

    /// Keep the leases of `ids` held by `holder` that were live at `since`
    /// from expiring (out of the deadline order, so nothing wakes for them)
    /// until [`unpin`](Self::unpin): an acknowledgement of `holder` that
    /// came then names them, and may claim them whenever it is applied.
    pub fn pin<'a>(&mut self, ids: impl IntoIterator<Item = &'a EventId>, since: Instant, holder: &str) {
        for id in ids {
            if let Some(l) = self.leased.get(id).filter(|l| l.until > since && l.holder == holder) {
                self.deadlines.remove(&(l.until, *id));
            }
        }
    }

    /// The leases of `ids` expire at their deadline again (at the next
    /// [`expire`](Self::expire) if it passed while they were pinned).
    pub fn unpin<'a>(&mut self, ids: impl IntoIterator<Item = &'a EventId>) {
        for id in ids {
            if let Some(l) = self.leased.get(id) {
                self.deadlines.insert((l.until, *id));
            }
        }
    }

    /// Keep an expired lease claimable by its holder until `end` (offered
    /// to nobody meanwhile); its retry is due at `due_ms` after that.
    pub fn lapse(&mut self, lease: Lease<T>, end: Instant, due_ms: u64) {
        let id = lease.offer.id;
        self.lapse_ends.insert((end, id));
        self.lapsed.insert(id, (lease, end, due_ms));
    }

    /// Take out the lapsed leases whose lapse ended at `now` or earlier,
    /// each with when its retry is due.
    pub fn lapses_over(&mut self, now: Instant) -> Vec<(Lease<T>, u64)> {
        let mut over = Vec::new();
        while let Some(&(end, id)) = self.lapse_ends.first() {
            if end > now {
                break;
            }
            self.lapse_ends.pop_first();
            if let Some((l, _, due)) = self.lapsed.remove(&id) {
                over.push((l, due));
            }
        }
        over
    }

    /// When the next lease expires or lapse ends.
    pub fn next_deadline(&self) -> Option<Instant> {
        let lease = self.deadlines.first().map(|(t, _)| *t);
        let lapse = self.lapse_ends.first().map(|(t, _)| *t);
        lease.into_iter().chain(lapse).min()
    }

    /// Whether `holder` may claim `id` at `now`: leased to it and not
    /// expired (then: a pinned lease may be past its deadline now), or lapsed.
    fn claimable(&self, holder: &str, id: &EventId, now: Instant) -> bool {
        let live = self.leased.get(id).is_some_and(|l| l.holder == holder && l.until > now);
        let lapsed = self.lapsed.get(id).is_some_and(|(l, _, _)| l.holder == holder);
        live || lapsed
    }

    /// Take the leases of `ids` out, if every one is held by `holder` (and
    /// not expired at `now`, or lapsed); otherwise change nothing and name
    /// the ids that are not (never handed out, another puller's, expired and
    /// over, already claimed). A lapsed one comes with when its retry is due
    /// (ms): its expiry was a failed attempt already.
    pub fn claim(&mut self, holder: &str, ids: &[EventId], now: Instant) -> Result<Vec<Claimed<T>>, Vec<EventId>> {
        let bad: Vec<EventId> = ids
            .iter()
            .filter(|id| !self.claimable(holder, id, now))
            .copied()
            .collect();
        if !bad.is_empty() {
            return Err(bad);
        }
        Ok(self.take(ids))
    }

    /// Take out the leases of those of `ids` that `holder` may claim (see
    /// [`claim`](Self::claim)); the others are named and left as they are.
    /// In a cluster the others may be held by another relay.
    pub fn claim_held(&mut self, holder: &str, ids: &[EventId], now: Instant) -> (Vec<Claimed<T>>, Vec<EventId>) {
        let (held, others): (Vec<EventId>, Vec<EventId>) = ids.iter().partition(|id| self.claimable(holder, id, now));
        (self.take(&held), others)
    }

    fn take(&mut self, ids: &[EventId]) -> Vec<Claimed<T>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(l) = self.leased.remove(id) {
                self.deadlines.remove(&(l.until, *id));
                out.push((l, None));
            } else if let Some((l, end, due_ms)) = self.lapsed.remove(id) {
                self.lapse_ends.remove(&(end, *id));
                out.push((l, Some(Lapse { end, due_ms })));
            }
        }
        out
    }

    /// Put a claimed lease back as it was (its acknowledgement could not be
    /// recorded): leased to the same holder until the same deadline, or
    /// lapsed until the same end, so its holder's acknowledgement sent again
    /// applies. One whose deadline or lapse passed meanwhile is expired or
    /// let go at the next [`expire`](Self::expire) or
    /// [`lapses_over`](Self::lapses_over), as if it had never been claimed.
    pub fn restore(&mut self, (lease, lapse): Claimed<T>) {
        let id = lease.offer.id;
        match lapse {
            None => {
                self.deadlines.insert((lease.until, id));
                self.leased.insert(id, lease);
            }
            Some(Lapse { end, due_ms }) => {
                self.lapse_ends.insert((end, id));
                self.lapsed.insert(id, (lease, end, due_ms));
            }
        }
    }

    /// The leases handed out and not claimed: live or lapsed.
    pub fn held(&self) -> impl Iterator<Item = &Lease<T>> {
        self.leased.values().chain(self.lapsed.values().map(|(l, _, _)| l))
    }

    /// Everything still here (ready, leased or lapsed), for a clean stop.
    pub fn drain(&mut self) -> Vec<Offer<T>> {
        self.deadlines.clear();
        self.lapse_ends.clear();
        let mut all: Vec<Offer<T>> = self.ready.drain(..).collect();
        all.extend(self.leased.drain().map(|(_, l)| l.offer));
        all.extend(self.lapsed.drain().map(|(_, (l, _, _))| l.offer));
        all
    }
}

#[cfg(test)]
#[path = "leases_tests.rs"]
mod tests;
