//! What the writer does with a finished delivery and with the rows that
//! follow the log: the result row, the due-time index (`W` rows and their
//! per-subscriber counts), dead letters, and the cursor, sequence and count
//! rows a batch changed. Part of the writer ([`super::group_commit`]).
//!
//! Cursor and sequence rows are written lazily: a data batch writes a cursor
//! row only when a result would otherwise lie past the stored row's
//! `recover_seq` (about once per [`RECOVER_AHEAD`] events a subscriber), and
//! never the route's sequence row, which a restart finds again from the last
//! row of the log; control batches (registration, replay, retention) and the
//! shutdown write them all. That keeps the rows per event at one log row,
//! one dedupe row and one result row per subscriber.

use std::sync::atomic::Ordering;

use super::batch::Batch;
use super::codec::{self, ResultRow};
use super::group_commit::{Record, Source, Writer};
use super::keys;
use crate::store::{DeliveryState, EventId, Outcome, StoreError};

/// How many log sequences past a result a stored cursor row promises to
/// cover: a restart checks at most this many events more than needed.
pub(super) const RECOVER_AHEAD: u64 = 4096;

impl Writer {
    /// A `W` row for `sub`'s delivery of `route`'s event `id`, due at `due_ms`.
    pub fn put_due(
        &mut self,
        b: &mut Batch<'_>,
        route: u32,
        sub: u32,
        due_ms: u64,
        id: EventId,
    ) -> Result<(), StoreError> {
        let k = keys::due(sub, due_ms, id);
        match b.get(&k)? {
            None => {
                *self.waiting.entry(sub).or_default() += 1;
                self.dirty_waiting.insert(sub);
                self.count_at(route, sub, 1);
            }
            Some(v) => {
                if let Some(was) = keys::due_route(&v).filter(|was| *was != route) {
                    self.count_at(was, sub, -1);
                    self.count_at(route, sub, 1);
                }
            }
        }
        b.put(k, keys::due_value(route).to_vec());
        Ok(())
    }

    pub fn del_due(&mut self, b: &mut Batch<'_>, sub: u32, due_ms: u64, id: EventId) -> Result<(), StoreError> {
        let k = keys::due(sub, due_ms, id);
        if let Some(v) = b.get(&k)? {
            let n = self.waiting.entry(sub).or_default();
            *n = n.saturating_sub(1);
            self.dirty_waiting.insert(sub);
            if let Some(route) = keys::due_route(&v) {
                self.count_at(route, sub, -1);
            }
        }
        b.del(k);
        Ok(())
    }

    fn count_at(&mut self, route: u32, sub: u32, by: i64) {
        let n = self.waiting_at.entry((route, sub)).or_default();
        *n = n.saturating_add_signed(by);
        self.dirty_waiting_at.insert((route, sub));
    }

    /// Record an attempt: the result row, the due index, the dead letter.
    pub(super) fn add_record(&mut self, b: &mut Batch<'_>, rec: &Record) -> Result<(), StoreError> {
        let t = &rec.ticket;
        let rkey = keys::result(t.event, t.sub);
        // Read before the due row goes: a read that fails leaves nothing of
        // this record in the batch (a due row deleted by a record that then
        // failed stranded the delivery).
        let stored = match rec.outcome {
            Outcome::Gone => None,
            _ => b.get(&rkey)?,
        };
        match t.source {
            Source::Due { due_ms } => self.del_due(b, t.sub, due_ms, t.event)?,
            Source::Log { seq } => {
                // A restart re-checks results only up to the stored row's
                // bounds: move them on in this batch if this result is past them.
                if let Some(c) = self.cursors.get_mut(&(t.route, t.sub)) {
                    if t.event > c.high_water {
                        c.high_water = t.event;
                        self.dirty_cursors.insert((t.route, t.sub));
                        self.moved.insert((t.route, t.sub));
                    }
                    if seq > c.recover_seq {
                        c.recover_seq = seq + RECOVER_AHEAD;
                        self.due_cursors.insert((t.route, t.sub));
                        self.moved.insert((t.route, t.sub));
                    }
                }
            }
        }
        if rec.outcome == Outcome::Gone {
            return Ok(());
        }
        let mut row = match stored {
            Some(v) => codec::decode_result(&v).unwrap_or_else(|| self.unreadable_result(rec, &rkey, &v)),
            None => ResultRow::new(rec.now_ms),
        };
        // Work parked under another due time (a media wake or a replay moved
        // it while this try was in flight): one `W` row per delivery at most.
        if let DeliveryState::Retrying { due_ms: d } | DeliveryState::AwaitingMedia { due_ms: d } = row.state {
            if t.source != (Source::Due { due_ms: d }) {
                self.del_due(b, t.sub, d, t.event)?;
            }
        }
        row.apply(rec.attempt.as_ref(), &rec.outcome, rec.now_ms);
        // An operator's replay asked while this was due ([`super::replay`]),
        // this work read before it (with the step it reset): due at once.
        let replay = row.apply_replay_mark(t.read_step, rec.attempt.as_ref(), &rec.outcome, rec.now_ms);
        match &rec.outcome {
            Outcome::Retry { .. } | Outcome::Dead { .. } if replay => {
                self.replay_asked_meanwhile(t, &rec.outcome);
                self.put_due(b, t.route, t.sub, rec.now_ms, t.event)?
            }
            Outcome::Retry { due_ms } => self.put_due(b, t.route, t.sub, *due_ms, t.event)?,
            Outcome::Dead { .. } => b.put(keys::dead(t.sub, t.event), rec.now_ms.to_be_bytes().to_vec()),
            Outcome::Defer { due_ms } => self.park(b, t, &mut row, *due_ms, rec.now_ms)?,
            Outcome::Delivered | Outcome::Skipped | Outcome::Gone => {}
        }
        b.put(rkey, codec::encode_result(&row));
        Ok(())
    }

    /// Subscriber `sub`'s name, for a log line.
    fn sub_name(&self, sub: u32) -> String {
        super::read_lock(&self.inner.registry)
            .sub_name(sub)
            .unwrap_or_default()
            .to_string()
    }

    /// Say that a failed delivery is due again at once, for the replay an
    /// operator asked while its attempt (or check) was under way (the lane
    /// logged the outcome it saw: a retry later, or giving up).
    fn replay_asked_meanwhile(&self, t: &super::SledTicket, outcome: &Outcome) {
        let sub = self.sub_name(t.sub);
        let instead = match outcome {
            Outcome::Dead { .. } => "not a dead letter",
            _ => "not at its retry's time",
        };
        tracing::info!(event = %t.event, subscriber = %sub,
            "{} ({instead})", crate::store::result::DUE_AGAIN_FOR_REPLAY);
    }

    /// A result row that does not decode: the outcome is recorded on a fresh
    /// row (the attempt history is lost), so the delivery goes on and shows
    /// its state; failing the record left it handed out, sent again after
    /// every restart and never recorded.
    fn unreadable_result(&self, rec: &Record, rkey: &[u8], v: &[u8]) -> ResultRow {
        let t = &rec.ticket;
        let sub = self.sub_name(t.sub);
        tracing::error!(event = %t.event, subscriber = %sub, key = %hex::encode(rkey), row = %hex::encode(&v[..v.len().min(64)]),
            "unreadable result row; its history is lost, the outcome is recorded on a new row");
        ResultRow::new(rec.now_ms)
    }

    pub(super) fn move_cursor(&mut self, route: u32, sub: u32, at: EventId, seq: u64) {
        if let Some(c) = self.cursors.get_mut(&(route, sub)) {
            if at > c.at {
                c.at = at;
                c.seq = seq;
                self.dirty_cursors.insert((route, sub));
                self.moved.insert((route, sub));
            }
        }
    }

    /// The count rows changed by this batch, and the cursor rows it must
    /// write (`all`: every changed cursor and every route's sequence).
    pub fn write_counters(&mut self, b: &mut Batch<'_>, all: bool) {
        let cursors: Vec<(u32, u32)> = if all {
            let every: std::collections::HashSet<_> =
                self.dirty_cursors.drain().chain(self.due_cursors.drain()).collect();
            every.into_iter().collect()
        } else {
            let due: Vec<_> = self.due_cursors.drain().collect();
            for key in &due {
                self.dirty_cursors.remove(key);
            }
            due
        };
        for key in cursors {
            if let Some(c) = self.cursors.get(&key) {
                b.put(keys::cursor(key.0, key.1), c.encode().to_vec());
            }
        }
        if all {
            for (route, next) in &self.tails {
                if self.tails_written.get(route) != Some(next) {
                    b.put(keys::seq(*route), next.to_be_bytes().to_vec());
                    self.tails_written.insert(*route, *next);
                }
            }
            // Ids never go back across a restart (whatever the clock): the
            // log rows and cursors keep the floor between these writes.
            if !self.last_id.is_nil() {
                b.put(keys::LAST_ID_KEY.to_vec(), self.last_id.to_bytes().to_vec());
            }
        }
        for sub in &self.dirty_waiting {
            b.put(keys::count(*sub), self.waiting[sub].to_be_bytes().to_vec());
        }
        self.media.write_count(b);
    }

    /// Make the new counters visible to lanes, and the cursors to the admin
    /// views, once they are written.
    pub fn publish_counters(&mut self) {
        if !self.moved.is_empty() {
            let mut live = super::write_lock(&self.inner.cursors);
            for key in self.moved.drain() {
                if let Some(c) = self.cursors.get(&key) {
                    live.insert(key, *c);
                }
            }
        }
        for route in self.dirty_tails.drain() {
            // After the batch is flushed: lanes read the log only below it.
            self.inner.tail(route).store(self.tails[&route], Ordering::Release);
        }
        for sub in self.dirty_waiting.drain() {
            self.inner.waiting(sub).store(self.waiting[&sub], Ordering::Relaxed);
        }
        for key in self.dirty_waiting_at.drain() {
            self.inner
                .waiting_at(key.0, key.1)
                .store(self.waiting_at[&key], Ordering::Relaxed);
        }
        self.media.publish(&self.inner);
    }
}
