//! Messages the local service answered `2xx` whose acknowledgement the relay
//! has not confirmed yet (on its way, waiting for a relay that is away, or
//! given up: the lease and its lapse ran out first, or the relay no longer
//! leased them). The relay offers such a message again; this forwarder then
//! acknowledges it without posting it to the local service a second time.
//! Once the relay confirms its acknowledgement, or refuses it again naming
//! it `delivered` (the first one's answer was lost), an id is kept as
//! confirmed for the attempt acknowledged: a later offer of a later attempt
//! is an operator's replay, delivered as asked; one of that attempt (or an
//! earlier one) is the lease the acknowledgement settled, acknowledged
//! again unsent (which does not make it unconfirmed again). The oldest go
//! first past [`CAPACITY`], the confirmed ones apart from the others (so
//! they never push out one not confirmed yet: review of stop 75's mend).
//! Kept in memory only: after a restart of the forwarder such a message is
//! delivered again.
//!
//! An offer of an id whose acknowledgement is on its way (sent, its answer
//! not read) waits for that answer ([`Unacked::unconfirmed_after_ack`]): a
//! relay that confirms it had recorded the delivery before it offered the
//! id again (it refuses an acknowledgement of a lease it holds for a later
//! attempt), so that offer is an operator's replay. It was taken for a lost
//! acknowledgement and acknowledged unsent (admin review, stop 67). But a
//! relay restarted meanwhile offers the id again for the same attempt, and
//! applies the acknowledgement to that lease: the offer was posted a second
//! time (pull soak, stop 75).

use std::collections::BTreeMap as Attempts;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

/// Ids remembered at most (about 100 bytes each).
pub const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct Unacked {
    inner: Mutex<Inner>,
    /// An acknowledgement's answer was read.
    answered: Notify,
}

#[derive(Default)]
struct Inner {
    /// Id → when it was (last) remembered, and the latest attempt delivered
    /// or acknowledged again here: not confirmed.
    ids: HashMap<String, (u64, u32)>,
    /// When → id, oldest first, to forget the oldest past the capacity.
    order: BTreeMap<u64, String>,
    next: u64,
    /// Id → the attempt whose acknowledgement the relay confirmed, for the
    /// newest [`CAPACITY`] ids confirmed (bounded on their own: they never
    /// push out an id not confirmed yet).
    settled: HashMap<String, u32>,
    /// Confirmed ids, oldest first.
    settled_order: VecDeque<String>,
    /// Ids in acknowledgements sent whose answer is not read yet (a count:
    /// an id in two at once).
    acking: HashMap<String, u32>,
}

/// Ids of an acknowledgement on its way ([`Unacked::acking`]): its answer
/// is read when this is dropped (after what it confirmed was taken out).
pub struct Acking<'a> {
    unacked: &'a Unacked,
    ids: Vec<String>,
}

impl Drop for Acking<'_> {
    fn drop(&mut self) {
        {
            let mut i = self.unacked.lock();
            for id in &self.ids {
                if let Some(n) = i.acking.get_mut(id) {
                    *n -= 1;
                    if *n == 0 {
                        i.acking.remove(id);
                    }
                }
            }
        }
        self.unacked.answered.notify_waiters();
    }
}

impl Unacked {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The local service answered `id`, offered for `attempt`, with a 2xx.
    pub fn delivered(&self, id: &str, attempt: u32) {
        self.lock().remember(id, attempt);
    }

    /// An offer of `id` was acknowledged again unsent ([`Self::holds`]):
    /// still remembered as not confirmed if it was (its place renewed), not
    /// made so if the relay had confirmed it (a replay later would be
    /// acknowledged unsent, lost, were that confirmation not heard again).
    pub fn acknowledged_again(&self, id: &str, attempt: u32) {
        // One look: a confirmation between two would be undone.
        let mut i = self.lock();
        if i.ids.contains_key(id) {
            i.remember(id, attempt);
        }
    }

    /// The attempt `id` was delivered here for, when it is not confirmed
    /// and this offer is of a later attempt: the relay either recorded that
    /// delivery (its acknowledgement reached it, the answer did not: this
    /// offer is an operator's replay, to post) or not (the lease lapsed:
    /// this offer is the same message, acknowledged unsent). Only the relay
    /// knows: ask it (`pump::Delivery`) before taking the offer as held.
    pub fn unsure(&self, id: &str, attempt: u32) -> Option<u32> {
        let i = self.lock();
        let &(_, delivered) = i.ids.get(id)?;
        (attempt > delivered).then_some(delivered)
    }

    /// Whether an acknowledgement of `id` is on its way (its answer decides
    /// whether an offer of it is the lease it settled or a replay).
    pub fn is_acking(&self, id: &str) -> bool {
        self.lock().acking.contains_key(id)
    }

    /// Whether `id` was delivered here and its acknowledgement not confirmed.
    pub fn contains(&self, id: &str) -> bool {
        self.lock().ids.contains_key(id)
    }

    /// Whether an offer of `id` for `attempt` is settled here: delivered,
    /// and its acknowledgement not confirmed, or confirmed for this attempt
    /// or a later one (the lease it settled). Acknowledged again unsent.
    pub fn holds(&self, id: &str, attempt: u32) -> bool {
        self.lock().holds(id, attempt)
    }

    /// An acknowledgement of `ids` is sent: until the returned guard is
    /// dropped, an offer of one of them waits for its answer.
    pub fn acking(&self, ids: &[String]) -> Acking<'_> {
        let mut i = self.lock();
        for id in ids {
            *i.acking.entry(id.clone()).or_default() += 1;
        }
        Acking {
            unacked: self,
            ids: ids.to_vec(),
        }
    }

    /// Whether `id`, offered again, is still delivered here and unconfirmed
    /// once the answer to an acknowledgement of it on its way is read (or
    /// at `until`, when it is taken as unconfirmed): true, it is
    /// acknowledged again unsent; false, the relay confirmed it before this
    /// offer, an operator's replay, posted as asked.
    pub async fn unconfirmed_after_ack(&self, id: &str, attempt: u32, until: tokio::time::Instant) -> bool {
        loop {
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            {
                let i = self.lock();
                if !i.acking.contains_key(id) || tokio::time::Instant::now() >= until {
                    return i.holds(id, attempt);
                }
            }
            tokio::select! {
                _ = answered => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// The relay confirmed the acknowledgement of `ids`, of the attempts
    /// `attempts` (each id's, as this forwarder acknowledged it).
    pub fn confirmed<'a>(&self, ids: impl IntoIterator<Item = &'a String>, attempts: &Attempts<String, u32>) {
        let mut i = self.lock();
        for id in ids {
            if let Some((seq, _)) = i.ids.remove(id) {
                i.order.remove(&seq);
            }
            if let Some(&a) = attempts.get(id) {
                i.settle(id, a);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.lock().ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// `id` as delivered here (for `attempt`, or acknowledged again for it)
    /// and not confirmed, the newest.
    fn remember(&mut self, id: &str, attempt: u32) {
        let seq = self.next;
        self.next += 1;
        let attempt = self.ids.get(id).map_or(attempt, |&(_, a)| a.max(attempt));
        if let Some((old, _)) = self.ids.insert(id.to_string(), (seq, attempt)) {
            self.order.remove(&old);
        }
        self.order.insert(seq, id.to_string());
        while self.ids.len() > CAPACITY {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.ids.remove(&oldest);
        }
    }

    fn holds(&self, id: &str, attempt: u32) -> bool {
        self.ids.contains_key(id) || self.settled.get(id).is_some_and(|&a| a >= attempt)
    }

    fn settle(&mut self, id: &str, attempt: u32) {
        match self.settled.get_mut(id) {
            Some(a) => *a = (*a).max(attempt),
            None => {
                self.settled.insert(id.to_string(), attempt);
                self.settled_order.push_back(id.to_string());
            }
        }
        while self.settled_order.len() > CAPACITY {
            if let Some(oldest) = self.settled_order.pop_front() {
                self.settled.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_until_confirmed_and_bounded() {
        let u = Unacked::default();
        u.delivered("a", 1);
        u.delivered("b", 1);
        assert!(u.contains("a") && u.contains("b"));
        u.confirmed(&["a".to_string()], &Attempts::new());
        assert!(!u.contains("a") && u.contains("b"));
        assert!(!u.holds("a", 1), "forgotten: no attempt was acknowledged");
        // Confirmed ids are bounded on their own: they push out no id that
        // is not confirmed yet.
        let u = Unacked::default();
        u.delivered("waiting", 1);
        for n in 0..CAPACITY + 5 {
            let id = format!("c{n}");
            u.delivered(&id, 1);
            u.confirmed([&id], &Attempts::from([(id.clone(), 1)]));
        }
        assert!(u.contains("waiting") && u.len() == 1, "pushed out by confirmed ids");
        assert!(!u.holds("c0", 1) && u.holds(&format!("c{}", CAPACITY + 4), 1));
        for n in 0..CAPACITY + 5 {
            u.delivered(&format!("x{n}"), 1);
        }
        assert_eq!(u.len(), CAPACITY);
        assert!(!u.contains("b") && !u.contains("x0") && u.contains(&format!("x{}", CAPACITY + 4)));
    }

    /// A relay restarted while this forwarder's acknowledgement of attempt
    /// 1 was on its way offers the id again for attempt 1 and applies the
    /// acknowledgement to that lease: the offer is settled (not posted); an
    /// operator's replay offers attempt 2, posted.
    #[test]
    fn a_confirmed_acknowledgement_settles_offers_of_its_attempt_only() {
        let u = Unacked::default();
        u.delivered("a", 1);
        u.confirmed(&["a".to_string()], &Attempts::from([("a".to_string(), 1)]));
        assert!(!u.contains("a"), "confirmed");
        assert!(u.holds("a", 1), "the lease the acknowledgement settled");
        assert!(!u.holds("a", 2), "a replay");
        u.acknowledged_again("a", 1);
        assert!(!u.contains("a"), "an offer held by the confirmation does not undo it");
        assert!(!u.holds("a", 2), "so a replay later is posted");
        u.delivered("a", 1);
        assert!(u.holds("a", 2), "delivered again: unconfirmed");
    }
}
