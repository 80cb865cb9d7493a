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

/// A lease taken out by [`Leases::claim`], with when its retry is due (ms)
/// if it had lapsed (its expiry was a failed attempt already).
pub(super) type Claimed<T> = (Lease<T>, Option<u64>);

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
    /// expired, or lapsed.
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
            } else if let Some((l, end, due)) = self.lapsed.remove(id) {
                self.lapse_ends.remove(&(end, *id));
                out.push((l, Some(due)));
            }
        }
        out
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
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(n: u64) -> EventId {
        EventId::from_parts(1_700_000_000_000 + n, 0)
    }

    fn with(n: u64) -> Leases<()> {
        let mut l = Leases::default();
        for i in 0..n {
            l.push_ready(id(i), (), 1);
        }
        l
    }

    #[test]
    fn a_message_is_leased_to_one_puller_at_a_time() {
        let now = Instant::now();
        let mut l = with(3);
        let a = l.lease(2, "a", now, Duration::from_secs(60), 0);
        let b = l.lease(5, "b", now, Duration::from_secs(60), 0);
        assert_eq!(a, vec![id(0), id(1)]);
        assert_eq!(b, vec![id(2)], "only what a does not hold");
        assert_eq!(l.lease(5, "c", now, Duration::ZERO, 0), Vec::<EventId>::new());
        assert_eq!((l.leased(), l.ready()), (3, 0));
        assert!(l.holds(&id(2)) && !l.holds(&id(3)));
    }

    #[test]
    fn what_fits_in_a_budget_is_counted_in_order_and_is_never_nothing() {
        let mut l = Leases::default();
        for (i, size) in [40usize, 40, 30, 5].into_iter().enumerate() {
            l.push_ready(id(i as u64), size, 1);
        }
        assert_eq!(l.fitting(10, 100, |s| *s), 2, "the third would pass 100");
        assert_eq!(l.fitting(1, 100, |s| *s), 1, "max counts too");
        assert_eq!(
            l.fitting(10, 10, |s| *s),
            1,
            "a message larger than the budget goes alone"
        );
        assert_eq!(l.fitting(10, 1000, |s| *s), 4);
        assert_eq!(Leases::<usize>::default().fitting(10, 100, |s| *s), 0);
        // What did not fit stays ready, first in line.
        l.lease(2, "a", Instant::now(), Duration::from_secs(1), 0);
        assert_eq!(l.ready_offers().map(|o| o.id).collect::<Vec<_>>(), vec![id(2), id(3)]);
    }

    #[test]
    fn claims_are_all_or_nothing_and_only_for_the_holder() {
        let now = Instant::now();
        let mut l = with(3);
        l.lease(2, "a", now, Duration::from_secs(60), 0);
        l.lease(1, "b", now, Duration::from_secs(60), 0);
        // One id of b's and one never handed out: nothing changes.
        assert_eq!(
            l.claim("a", &[id(0), id(2), id(9)], now).unwrap_err(),
            vec![id(2), id(9)]
        );
        assert_eq!(l.leased(), 3);
        let got = l.claim("a", &[id(0), id(1)], now).unwrap();
        assert_eq!(
            got.iter().map(|(_, lapsed)| *lapsed).collect::<Vec<_>>(),
            vec![None, None]
        );
        assert_eq!(l.claim("a", &[id(0)], now).unwrap_err(), vec![id(0)], "claimed once");
        assert_eq!(l.leased(), 1);
    }

    #[test]
    fn a_partial_claim_takes_what_the_holder_holds_and_names_the_rest() {
        let now = Instant::now();
        let mut l = with(3);
        l.lease(2, "a", now, Duration::from_secs(60), 0);
        l.lease(1, "b", now, Duration::from_secs(60), 0);
        let (got, others) = l.claim_held("a", &[id(0), id(2), id(9)], now);
        assert_eq!(got.iter().map(|x| x.0.offer.id).collect::<Vec<_>>(), vec![id(0)]);
        assert_eq!(
            others,
            vec![id(2), id(9)],
            "b's and one never handed out, in the order given"
        );
        assert_eq!((l.leased(), l.get(&id(2)).map(|x| x.holder.as_str())), (2, Some("b")));
        let (got, others) = l.claim_held("a", &[id(0), id(1)], now);
        assert_eq!((got.len(), others), (1, vec![id(0)]), "claimed once");
    }

    #[test]
    fn expired_leases_are_taken_out_in_deadline_order() {
        let now = Instant::now();
        let mut l = with(3);
        l.lease(1, "a", now, Duration::from_secs(10), 7);
        l.lease(1, "a", now, Duration::from_secs(20), 8);
        assert_eq!(l.next_deadline(), Some(now + Duration::from_secs(10)));
        assert!(l.expire(now + Duration::from_secs(9)).is_empty());
        let gone = l.expire(now + Duration::from_secs(20));
        let got: Vec<_> = gone.iter().map(|x| (x.offer.id, x.offer.attempt, x.at_ms)).collect();
        assert_eq!(got, vec![(id(0), 1, 7), (id(1), 1, 8)], "with what their record needs");
        // An acknowledgement after expiry is refused; they are not offered again from here.
        assert_eq!(l.claim("a", &[id(0)], now).unwrap_err(), vec![id(0)]);
        assert_eq!((l.leased(), l.ready(), l.next_deadline()), (0, 1, None));
        assert!(!l.holds(&id(0)));
        assert_eq!(l.lease(3, "b", now, Duration::from_secs(60), 0), vec![id(2)]);
    }

    #[test]
    fn a_lease_at_its_deadline_cannot_be_claimed() {
        let now = Instant::now();
        let mut l = with(1);
        l.lease(1, "a", now, Duration::ZERO, 0);
        assert_eq!(l.claim("a", &[id(0)], now).unwrap_err(), vec![id(0)]);
    }

    #[test]
    fn hand_outs_that_reached_nobody_keep_their_attempt() {
        let now = Instant::now();
        let mut l = with(2);
        let ids = l.lease(2, "a", now, Duration::from_secs(5), 0);
        l.give_back(&ids);
        assert_eq!((l.leased(), l.ready(), l.next_deadline()), (0, 2, None));
        assert_eq!(l.lease(1, "b", now, Duration::ZERO, 0), vec![id(0)]);
        assert_eq!(l.get(&id(0)).unwrap().offer.attempt, 1);
        assert_eq!(l.drain().len(), 2);
    }

    #[test]
    fn a_lapsed_lease_is_offered_to_nobody_and_claimable_by_its_holder_until_its_lapse_ends() {
        let now = Instant::now();
        let mut l = with(2);
        l.lease(2, "a", now, Duration::from_secs(10), 0);
        let mut gone = l.expire(now + Duration::from_secs(10));
        assert_eq!(gone.len(), 2);
        let end = now + Duration::from_secs(15);
        l.lapse(gone.pop().unwrap(), end, 7);
        l.lapse(gone.pop().unwrap(), end, 7);
        assert_eq!(l.next_deadline(), Some(end));
        assert!(l.holds(&id(0)) && l.holds(&id(1)), "not taken from the store again");
        assert!(
            l.lease(5, "b", now, Duration::from_secs(10), 0).is_empty(),
            "offered to nobody"
        );
        assert_eq!(l.claim("b", &[id(0)], now).unwrap_err(), vec![id(0)], "only its holder");
        let late = l.claim("a", &[id(0)], now + Duration::from_secs(12)).unwrap();
        assert_eq!(
            (late[0].0.offer.id, late[0].0.length, late[0].1),
            (id(0), Duration::from_secs(10), Some(7)),
            "with when the retry of its expiry is due"
        );
        assert!(l.lapses_over(now + Duration::from_secs(14)).is_empty());
        let over = l.lapses_over(end);
        assert_eq!(
            over.iter().map(|(x, due)| (x.offer.id, *due)).collect::<Vec<_>>(),
            vec![(id(1), 7)]
        );
        assert_eq!((l.next_deadline(), l.holds(&id(1))), (None, false));
        assert_eq!(
            l.claim("a", &[id(1)], end).unwrap_err(),
            vec![id(1)],
            "over: no longer claimable"
        );
    }
}
