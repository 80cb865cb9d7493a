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
//!
//! In cluster mode each offer names its round of delivery (`round`: the
//! same on every offer of the event's delivery, whichever relay makes it;
//! another for each operator's replay), remembered with each id delivered
//! here: an offer in a round delivered here is the same message, settled
//! here whatever its attempt and whatever the relay says of the earlier
//! acknowledgement (a relay that lost its hold on the message, paused past
//! `takeover`, applied that acknowledgement late while another relay
//! offered the message for a later attempt: posted twice, pause soak of
//! stop 77); one in another round is a replay, posted; neither waits for an
//! answer nor asks. Attempt numbers decide offers without a round (the
//! embedded store, a relay before rounds) and offers of an id last
//! delivered here in none. An offer while the id is still being posted
//! here is settled by that post's answer, whatever its round
//! ([`super::active`]), as before.

use std::collections::BTreeMap as Attempts;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

/// Ids remembered at most (about 100 bytes each).
pub const CAPACITY: usize = 10_000;
/// Rounds remembered per id at most (the newest): an id is delivered in
/// one round, and once more per operator's replay.
pub(super) const ROUNDS: usize = 4;

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
    /// Id → the rounds it was delivered in here (see the module), newest
    /// last, for the ids in `ids` or `settled`.
    rounds: HashMap<String, Vec<String>>,
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

    /// The local service answered `id`, offered for `attempt` in `round`,
    /// with a 2xx.
    pub fn delivered(&self, id: &str, attempt: u32, round: Option<&str>) {
        let mut i = self.lock();
        i.remember(id, attempt);
        i.add_round(id, round);
    }

    /// What the rounds say of an offer of `id` in `round` (see the module):
    /// `Some(true)` a round it was delivered in here, the same message;
    /// `Some(false)` another round, an operator's replay; `None` when the
    /// offer or the delivery here has no round (attempts decide).
    pub fn by_round(&self, id: &str, round: Option<&str>) -> Option<bool> {
        self.lock().by_round(id, round)
    }

    /// An offer of `id` was acknowledged again unsent ([`Self::holds`]):
    /// still remembered as not confirmed if it was (its place renewed), not
    /// made so if the relay had confirmed it (a replay later would be
    /// acknowledged unsent, lost, were that confirmation not heard again).
    pub fn acknowledged_again(&self, id: &str, attempt: u32, round: Option<&str>) {
        // One look: a confirmation between two would be undone.
        let mut i = self.lock();
        if i.ids.contains_key(id) {
            i.remember(id, attempt);
        }
        if i.ids.contains_key(id) || i.settled.contains_key(id) {
            // Settled here as the same message: its round is one delivered here.
            i.add_round(id, round);
        }
    }

    /// The attempt `id` was delivered here for, when it is not confirmed
    /// and this offer is of a later attempt: the relay either recorded that
    /// delivery (its acknowledgement reached it, the answer did not: this
    /// offer is an operator's replay, to post) or not (the lease lapsed:
    /// this offer is the same message, acknowledged unsent). Only the relay
    /// knows: ask it (`pump::Delivery`) before taking the offer as held.
    /// Never when the offer's round decides ([`Self::by_round`]).
    pub fn unsure(&self, id: &str, attempt: u32, round: Option<&str>) -> Option<u32> {
        let i = self.lock();
        if i.by_round(id, round).is_some() {
            return None;
        }
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

    /// Whether an offer of `id` for `attempt` in `round` is settled here:
    /// in a round delivered here (another round: a replay, not held); with
    /// no round to decide, delivered and its acknowledgement not confirmed,
    /// or confirmed for this attempt or a later one (the lease it settled).
    /// Acknowledged again unsent.
    pub fn holds(&self, id: &str, attempt: u32, round: Option<&str>) -> bool {
        self.lock().holds(id, attempt, round)
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
    /// offer, an operator's replay, posted as asked. Decided at once, with
    /// no wait, by the offer's round when it has one ([`Self::by_round`]).
    pub async fn unconfirmed_after_ack(
        &self,
        id: &str,
        attempt: u32,
        round: Option<&str>,
        until: tokio::time::Instant,
    ) -> bool {
        loop {
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            {
                let i = self.lock();
                if let Some(same) = i.by_round(id, round) {
                    return same;
                }
                if !i.acking.contains_key(id) || tokio::time::Instant::now() >= until {
                    return i.holds(id, attempt, round);
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
            i.forget_rounds(id);
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
            self.forget_rounds(&oldest);
        }
    }

    /// `id` was delivered (or settled as the same message) here in `round`.
    /// In none (a relay before rounds, during an upgrade): its rounds are
    /// forgotten, attempts and the question decide its next offers (else a
    /// round remembered before would make that delivery's next offer, in
    /// its own round, look like a replay: posted twice; review of stop 78).
    fn add_round(&mut self, id: &str, round: Option<&str>) {
        let Some(round) = round else {
            self.rounds.remove(id);
            return;
        };
        let rounds = self.rounds.entry(id.to_string()).or_default();
        if !rounds.iter().any(|r| r == round) {
            rounds.push(round.to_string());
            if rounds.len() > ROUNDS {
                rounds.remove(0);
            }
        }
    }

    /// Rounds are kept while the id is remembered either way.
    fn forget_rounds(&mut self, id: &str) {
        if !self.ids.contains_key(id) && !self.settled.contains_key(id) {
            self.rounds.remove(id);
        }
    }

    fn by_round(&self, id: &str, round: Option<&str>) -> Option<bool> {
        let round = round?;
        let rounds = self.rounds.get(id)?;
        Some(rounds.iter().any(|r| r == round))
    }

    fn holds(&self, id: &str, attempt: u32, round: Option<&str>) -> bool {
        self.by_round(id, round)
            .unwrap_or_else(|| self.ids.contains_key(id) || self.settled.get(id).is_some_and(|&a| a >= attempt))
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
                self.forget_rounds(&oldest);
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
        u.delivered("a", 1, None);
        u.delivered("b", 1, None);
        assert!(u.contains("a") && u.contains("b"));
        u.confirmed(&["a".to_string()], &Attempts::new());
        assert!(!u.contains("a") && u.contains("b"));
        assert!(!u.holds("a", 1, None), "forgotten: no attempt was acknowledged");
        // Confirmed ids are bounded on their own: they push out no id that
        // is not confirmed yet.
        let u = Unacked::default();
        u.delivered("waiting", 1, None);
        for n in 0..CAPACITY + 5 {
            let id = format!("c{n}");
            u.delivered(&id, 1, None);
            u.confirmed([&id], &Attempts::from([(id.clone(), 1)]));
        }
        assert!(u.contains("waiting") && u.len() == 1, "pushed out by confirmed ids");
        assert!(!u.holds("c0", 1, None) && u.holds(&format!("c{}", CAPACITY + 4), 1, None));
        for n in 0..CAPACITY + 5 {
            u.delivered(&format!("x{n}"), 1, None);
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
        u.delivered("a", 1, None);
        u.confirmed(&["a".to_string()], &Attempts::from([("a".to_string(), 1)]));
        assert!(!u.contains("a"), "confirmed");
        assert!(u.holds("a", 1, None), "the lease the acknowledgement settled");
        assert!(!u.holds("a", 2, None), "a replay");
        u.acknowledged_again("a", 1, None);
        assert!(!u.contains("a"), "an offer held by the confirmation does not undo it");
        assert!(!u.holds("a", 2, None), "so a replay later is posted");
        u.delivered("a", 1, None);
        assert!(u.holds("a", 2, None), "delivered again: unconfirmed");
    }
}
