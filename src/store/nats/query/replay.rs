//! Replays in cluster mode. Queuing one is two writes: the delivery's result
//! marked due again (over the revision read, so of two replays at once —
//! two relays, two calls — one queues it, the other finds it pending), then
//! a message on the subscriber's replay subject naming the event, whose
//! `Nats-Msg-Id` names the mark (publishing it again is a no-op). A replay
//! of one event re-queues any finished delivery, as on one host; a replay of
//! dead letters only one still dead (a letter another call replayed
//! meanwhile is left to it, or dropped once it was delivered). Each write is
//! tried again for a while when NATS does not answer (a try whose answer
//! was lost may have been stored). When the message cannot be published
//! the mark is undone; if that fails too (NATS
//! away, the relay killed between the writes), a later replay finds the
//! delivery marked with no message to carry it, and publishes one, with the
//! release that later replay gives (the mark's own came from a replay that
//! did not queue).

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::stream::DirectGetErrorKind;
use bytes::Bytes;

use super::replay_mark::Marked;
use crate::store::nats::result_write::Write;
use crate::store::nats::{layout, unavailable, NatsStore};
use crate::store::result::ResultRow;
use crate::store::{DeadReplay, DeliveryState, EventId, Replayed, StoreError};

/// How long a marked delivery is left to the replay that marked it (its
/// publish, the undo of a failed one) before another replay looks for its
/// message.
const GRACE_MS: u64 = 30_000;
/// Replay messages looked at, at most, for one that carries a delivery.
const SCAN_LIMIT: usize = 10_000;

#[cfg(test)]
thread_local! {
    /// Tests: a replay of this subscriber's delivery fails on this thread.
    pub(in crate::store::nats) static FAIL_REPLAY_OF: std::cell::RefCell<Option<String>> =
        const { std::cell::RefCell::new(None) };
}
/// How long a replay's writes for one delivery (its mark, its message, the
/// undo of a mark whose message was not stored) are tried again, together,
/// while NATS does not answer (a stream whose leader died elects another
/// within about 4 s): longer than that; with the last try's 2 s timeout,
/// a read after it and the undo's one try past it, well within the
/// [`GRACE_MS`] a mark is left to its replay, and shorter than a client's
/// patience with the API.
pub(super) const PATIENCE: Duration = Duration::from_secs(8);

/// Which replay asks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// One event's: any finished delivery is queued again.
    Event,
    /// One event's for one subscriber, only while that delivery is dead
    /// (`only=dead`: a stale row of dead letters replays nothing).
    EventIfDead,
    /// The dead letters': only a delivery still dead.
    DeadLetter,
}

impl Asked {
    /// Whether only a delivery still dead is queued.
    fn dead_only(self) -> bool {
        self != Asked::Event
    }

    /// Whether what it queues is released (a replay of the event is an
    /// operator's word about that event; a replay of all dead letters is not).
    fn releases(self) -> bool {
        self != Asked::DeadLetter
    }
}

/// Whether a replay of one event queues a delivery in `state` (at `step`
/// of its schedule, the state set at `at_ms`) at `now_ms`: a finished one,
/// or one a replay marked (due at its mark, its schedule from the start)
/// whose message was never stored, once the grace for its publish is over
/// and no message carries it (`requeue_unqueued`). A delivery waiting for
/// a retry is left to it (unlike on one host), marked (`mark_pending`).
pub(crate) fn replay_queues(state: &DeliveryState, step: u32, at_ms: u64, now_ms: u64) -> bool {
    match state {
        DeliveryState::Retrying { due_ms } => *due_ms == at_ms && step == 0 && now_ms.saturating_sub(at_ms) >= GRACE_MS,
        DeliveryState::AwaitingMedia { .. } | DeliveryState::Pending => false,
        DeliveryState::Dead | DeliveryState::Delivered | DeliveryState::Skipped => true,
    }
}

impl NatsStore {
    /// Queue the delivery of message `seq` of `route` to `sub` again, unless
    /// it is still pending with the consumer (or, for a dead-letter replay,
    /// no longer dead). Whether it was queued.
    async fn replay_one(&self, route: &str, seq: u64, sub: &str, asked: Asked) -> Result<bool, StoreError> {
        #[cfg(test)]
        if FAIL_REPLAY_OF.with(|f| f.borrow().as_deref() == Some(sub)) {
            return Err(unavailable("NATS did not answer (test)"));
        }
        // Read again when a mark on a pending delivery met a write (its
        // attempt's outcome, say: a dead letter now, queued by the next
        // read), after a pause.
        for tries in 0..5 {
            if tries > 0 {
                tokio::time::sleep(Duration::from_millis(25 << tries)).await;
            }
            if let Some(queued) = self.replay_try(route, seq, sub, asked).await? {
                return Ok(queued);
            }
        }
        Err(unavailable(format!(
            "the result of {route}.{seq} for {sub} kept changing while a replay marked it; ask again"
        )))
    }

    /// [`replay_one`](Self::replay_one) once: None when the result moved
    /// under a mark of a pending delivery.
    async fn replay_try(&self, route: &str, seq: u64, sub: &str, asked: Asked) -> Result<Option<bool>, StoreError> {
        let key = layout::result_key(route, seq, sub);
        // On the bucket's leader: a replica that has not applied the last
        // writes answers an older row, or none — a dead delivery read as
        // missing replayed nothing (`nats_replica_lag`), and one read as
        // delivered when it has died again had its letter dropped. Replays
        // are an operator's few reads. Asked again while the leader does not
        // answer, as the writes below are (an election).
        let read = self
            .shared
            .result_on_leader_until(&key, tokio::time::Instant::now() + PATIENCE);
        let Some((row, revision)) = read.await? else {
            return Ok(Some(false));
        };
        match (&row.state, asked) {
            (DeliveryState::Dead, _) | (DeliveryState::Delivered | DeliveryState::Skipped, Asked::Event) => {}
            // Replayed by another call since it was listed, and delivered:
            // its letter is stale (its purge failed, or is still to come).
            (DeliveryState::Delivered | DeliveryState::Skipped, Asked::DeadLetter | Asked::EventIfDead) => {
                let letter = self.shared.last_letter(route, sub, seq).await;
                self.shared.drop_letter(route, sub, seq, letter).await;
                return Ok(Some(false));
            }
            _ => {
                if self.requeue_unqueued(route, seq, sub, (&row, revision), asked).await? {
                    return Ok(Some(true));
                }
                let stood = asked.dead_only() || self.mark_pending(&key, &row, revision).await?;
                return Ok(stood.then_some(false));
            }
        }
        // Read before the replay is queued: a letter of its dying again comes later.
        let letter = match row.state {
            DeliveryState::Dead => self.shared.last_letter(route, sub, seq).await,
            _ => None,
        };
        let mut marked = row.clone();
        // A replay of the event itself releases it (sent without the
        // `verify = "fetch"` check, by whichever relay takes it). The flag is
        // written with the mark, before the publish, so that a lane taking
        // the replayed message (at once, at any relay) reads it. A replay
        // that then does not queue (publish and undo failed, or this relay
        // died between) leaves a mark no message carries: its flag is never
        // acted on, as only `requeue_unqueued` publishes such a mark, and it
        // sets the flag anew for the replay asking then.
        marked.replayed(crate::clock::now_ms(), asked.releases());
        // A new round: an outcome told late from before it only joins the history.
        marked.replays += 1;
        let give_up = tokio::time::Instant::now() + PATIENCE;
        let Marked::Stored(mark) = self.mark(&key, &marked, revision, give_up).await? else {
            return Ok(Some(false));
        };
        if let Err(e) = self.publish_replay(route, seq, sub, mark, give_up).await {
            return self.undo(&key, &row, mark, e, give_up).await.map(Some);
        }
        self.shared.drop_letter(route, sub, seq, letter).await;
        Ok(Some(true))
    }

    /// Publish the message that carries mark `mark` of the delivery, tried
    /// again until `give_up` while JetStream does not store it.
    async fn publish_replay(
        &self,
        route: &str,
        seq: u64,
        sub: &str,
        mark: u64,
        give_up: tokio::time::Instant,
    ) -> Result<(), StoreError> {
        let id = format!("rp.{route}.{seq}.{sub}.{mark}");
        let subject = layout::replay_subject(route, sub);
        let body = Bytes::from(seq.to_string());
        self.shared.publish_stored(&subject, &id, body, give_up).await
    }

    /// The replay's message was not published: put the result back as it
    /// was (`row`), so that the replay asked again queues it. Queued after
    /// all if a relay got the message meanwhile (it was stored, the answer
    /// lost) and started it. Tried once at least, again until `give_up`.
    async fn undo(
        &self,
        key: &str,
        row: &ResultRow,
        mark: u64,
        failed: StoreError,
        give_up: tokio::time::Instant,
    ) -> Result<bool, StoreError> {
        let patience = give_up.saturating_duration_since(tokio::time::Instant::now());
        match self.shared.write_result(key, row, mark, patience).await {
            // Undone (this call's try, if the row is the one it wrote back).
            Ok(Write::Done(_)) => Err(failed),
            Ok(Write::Moved(Some((stored, _)))) if stored == *row => Err(failed),
            // A relay got the message and started the delivery.
            Ok(Write::Moved(_)) => Ok(true),
            Err(e) => {
                tracing::warn!(key, error = %e, "a replay's message was not stored and its mark could not be undone; a replay asked again later queues it");
                Err(failed)
            }
        }
    }

    /// A delivery not finished is already pending — unless a replay marked
    /// it (due when marked, its schedule from the start) more than
    /// [`GRACE_MS`] ago and no message carries it (that replay's publish and
    /// undo failed, or its relay died between its writes): then its message
    /// is published now. Its release is first set to what the replay asking
    /// now gives: a replay of the event releases it, a replay of dead
    /// letters does not (the mark's flag came from a replay that did not
    /// queue, so it releases nothing; a release of an earlier replay that
    /// did queue is lost with it, which holds the callback again: safe).
    /// Whether it was.
    async fn requeue_unqueued(
        &self,
        route: &str,
        seq: u64,
        sub: &str,
        (row, revision): (&ResultRow, u64),
        asked: Asked,
    ) -> Result<bool, StoreError> {
        // Not finished here (the caller queues those): a replay's mark, left.
        let unqueued = replay_queues(&row.state, row.step, row.at_ms, crate::clock::now_ms());
        if !unqueued || self.carried(route, seq, sub).await? {
            return Ok(false);
        }
        let mut revision = revision;
        let release = asked.releases();
        let give_up = tokio::time::Instant::now() + PATIENCE;
        if row.released != release {
            let key = layout::result_key(route, seq, sub);
            let released = ResultRow {
                released: release,
                ..row.clone()
            };
            match self.mark(&key, &released, revision, give_up).await? {
                Marked::Stored(mark) => revision = mark,
                Marked::Moved | Marked::Unknown => return Ok(false),
            }
        }
        tracing::warn!(
            route,
            subscriber = sub,
            seq,
            "a replay marked this delivery but its message was never stored; publishing it now"
        );
        // If it was a dead letter, its letter is still listed.
        let letter = self.shared.last_letter(route, sub, seq).await;
        // Replays doing this at once publish one message (same id).
        self.publish_replay(route, seq, sub, revision, give_up).await?;
        self.shared.drop_letter(route, sub, seq, letter).await;
        Ok(true)
    }

    /// Whether a message that may still be handed out carries event `seq`
    /// to `sub`: the event itself or a replay of it after the consumer's
    /// ack floor (all at or below it are settled). One settled above the
    /// floor counts too, until the floor passes it.
    async fn carried(&self, route: &str, seq: u64, sub: &str) -> Result<bool, StoreError> {
        let stream = self.shared.stream(route)?;
        let info = stream.consumer_info(layout::consumer(sub)).await.map_err(unavailable)?;
        let floor = info.ack_floor.stream_sequence;
        if seq > floor {
            return Ok(true);
        }
        let (subject, payload) = (layout::replay_subject(route, sub), seq.to_string());
        let mut next = floor + 1;
        for _ in 0..SCAN_LIMIT {
            match stream.direct_get_next_for_subject(subject.as_str(), Some(next)).await {
                Ok(m) if m.payload.as_ref() == payload.as_bytes() => return Ok(true),
                Ok(m) => next = m.sequence + 1,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(true)
    }

    /// Whether `sub` is configured on `route`, read once per call: a
    /// subscriber removed from the config has no lane, so nothing it is handed
    /// would be sent.
    fn configured(&self) -> impl Fn(&str, &str) -> bool {
        let topology = crate::store::nats::read(&self.shared.topology);
        move |route, sub| {
            topology
                .routes
                .iter()
                .any(|(r, subs)| r == route && subs.iter().any(|s| s == sub))
        }
    }

    pub async fn replay_event(
        &self,
        id: EventId,
        only: Option<String>,
        dead_only: bool,
    ) -> Result<Option<Vec<Replayed>>, StoreError> {
        let Some((route, seq, ev)) = self.find(id).await? else {
            return Ok(None);
        };
        let configured = self.configured();
        let asked = if dead_only { Asked::EventIfDead } else { Asked::Event };
        let mut out = Vec::new();
        let mut failed = Vec::new();
        for sub in &ev.meta.subscribers {
            if only.as_ref().is_some_and(|o| o != sub) || !configured(&route, sub) {
                continue;
            }
            // One subscriber's failure does not keep the others from theirs.
            match self.replay_one(&route, seq, sub, asked).await {
                Ok(queued) => out.push(Replayed {
                    subscriber: sub.clone(),
                    queued,
                }),
                Err(e) => failed.push((sub.clone(), e)),
            }
        }
        match failed.into_iter().next() {
            None => Ok(Some(out)),
            Some((sub, e)) => Err(partly_replayed(id, &sub, e, &out)),
        }
    }

    /// Each letter dead when the call starts, once: one that another replay
    /// queued meanwhile is that replay's (checked in the conditional write
    /// that marks it).
    /// A verdict of `verify = "fetch"` on a route not in `checked` (one
    /// that no longer verifies) stays a dead letter (counted).
    pub async fn replay_dead_letters(
        &self,
        only: Option<String>,
        checked: std::collections::BTreeSet<String>,
    ) -> Result<DeadReplay, StoreError> {
        let configured = self.configured();
        let mut counts = BTreeMap::new();
        let mut verdicts_left = 0;
        let letters = self.dead_subjects(only.as_deref()).await?;
        let floors = self.floors(&letters).await;
        for (route, sub, seq) in letters {
            // A removed subscriber's dead letters stay listed.
            if !configured(&route, &sub) {
                continue;
            }
            // Its event expired: nothing to send; the letter goes.
            if floors.expired(&route, seq) {
                let letter = self.shared.last_letter(&route, &sub, seq).await;
                self.shared.drop_letter(&route, &sub, seq, letter).await;
                continue;
            }
            if !checked.contains(&route) && self.verdict_letter(&route, seq, &sub).await? {
                verdicts_left += 1;
                continue;
            }
            if self.replay_one(&route, seq, &sub, Asked::DeadLetter).await? {
                *counts.entry(sub).or_default() += 1;
            }
        }
        Ok(DeadReplay {
            requeued: counts,
            verdicts_left,
        })
    }

    /// Whether the delivery of `route`'s event `seq` to `sub` is dead with a
    /// verdict of `verify = "fetch"` (read on the bucket's leader, as the
    /// replay's own read).
    async fn verdict_letter(&self, route: &str, seq: u64, sub: &str) -> Result<bool, StoreError> {
        let key = layout::result_key(route, seq, sub);
        let read = self
            .shared
            .result_on_leader_until(&key, tokio::time::Instant::now() + PATIENCE);
        Ok(read.await?.is_some_and(|(row, _)| {
            row.state == DeliveryState::Dead && crate::store::result::verdict_letter(row.last_error.as_deref())
        }))
    }
}

/// A replay of `id` that failed for subscriber `sub` (and perhaps others
/// after it) with `e`, having done `done`: the same error, saying what was
/// done and how to ask again for the rest.
fn partly_replayed(id: EventId, sub: &str, e: StoreError, done: &[Replayed]) -> StoreError {
    let names = |queued: bool| {
        let n: Vec<&str> = done
            .iter()
            .filter(|r| r.queued == queued)
            .map(|r| r.subscriber.as_str())
            .collect();
        n.join(", ")
    };
    let mut said = format!("not replayed to {sub:?}");
    if done.iter().any(|r| r.queued) {
        said.push_str(&format!("; queued for {}", names(true)));
    }
    if done.iter().any(|r| !r.queued) {
        said.push_str(&format!("; already pending for {}", names(false)));
    }
    let said = format!("{said}: ask again (`hookrelay replay {id}`; those queued answer already_pending)");
    match e {
        StoreError::Unavailable(why) => StoreError::Unavailable(format!("{why}; {said}")),
        StoreError::Engine(why) => StoreError::Engine(format!("{why}; {said}")),
        e => e,
    }
}

#[cfg(test)]
#[path = "replay_partial_tests.rs"]
mod partial_tests;

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
