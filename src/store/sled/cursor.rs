//! A subscriber's cursor over its route's log, merged with its due index.
//!
//! The lane reads fresh events straight from the log (the scan yields the
//! event itself) and waiting work (retries, replays) from the due index, and
//! takes both in due-time order. The persisted cursor is the first event not
//! yet finished or parked in the due index; it only moves once the results of
//! everything before it are written. After a crash, events from the stored
//! cursor up to where results may have been written (its high-water mark or
//! `recover_seq`, [`CursorRow`]) are checked against their results, so only
//! unfinished ones are sent again (with the same `webhook-id`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use super::body_rows;
use super::codec;
use super::group_commit::{Msg, Record, SledTicket, Source};
use super::keys::{self, CursorRow};
use super::Inner;
use crate::store::{EventId, Outcome, StoreError, Ticket, Work};

/// Log rows read ahead of what the lane asked for (bounded memory).
const READ_AHEAD: usize = 32;
/// Log rows one `take` looks at at most (recovery may skip many).
const SCAN_LIMIT: usize = 4096;

pub struct Cursor {
    inner: Arc<Inner>,
    tx: mpsc::Sender<Msg>,
    route: u32,
    sub: u32,
    /// Woken by the writer when work is added for this subscriber.
    signal: Arc<Notify>,
    /// The route's next log sequence (published by the writer).
    tail: Arc<AtomicU64>,
    /// This subscriber's number of due-index rows of this route (published
    /// by the writer; rows of another route wait for the subscriber to be
    /// on it again: [`super::due_route`]).
    waiting: Arc<AtomicU64>,
    /// The next log position to read, and its sequence.
    read_from: EventId,
    read_seq: u64,
    /// The stored row while results may exist from before a restart: until
    /// its bounds, check before sending.
    recover: Option<CursorRow>,
    /// Read from the log, not yet handed out (oldest first).
    buffered: VecDeque<Work>,
    /// Log events handed out and not yet done: id → sequence.
    in_flight_log: BTreeMap<EventId, u64>,
    /// Due-index rows handed out and not yet done: event → due time. One
    /// per event: while an event is held, another due row of it (a media
    /// wake, a replay or a retry moved it) is not handed out ([`Self::holds`]).
    in_flight_due: HashMap<EventId, u64>,
    /// The cursor position last sent to the writer.
    sent: EventId,
}

impl Cursor {
    pub(super) fn open(inner: Arc<Inner>, tx: mpsc::Sender<Msg>, name: &str) -> Result<Cursor, StoreError> {
        let (sub, route) = {
            let reg = super::read_lock(&inner.registry);
            let sub = reg
                .sub(name)
                .ok_or_else(|| StoreError::UnknownSubscriber(name.to_string()))?;
            let route = reg
                .sub_route(sub)
                .ok_or_else(|| StoreError::UnknownSubscriber(name.to_string()))?;
            (sub, route)
        };
        let row = inner
            .tree
            .get(keys::cursor(route, sub))?
            .and_then(|v| CursorRow::decode(&v))
            .ok_or_else(|| StoreError::UnknownSubscriber(name.to_string()))?;
        Ok(Cursor {
            signal: inner.signal(sub),
            tail: inner.tail(route),
            waiting: inner.waiting_at(route, sub),
            inner,
            tx,
            route,
            sub,
            read_from: row.at,
            read_seq: row.seq,
            recover: row.recovering().then_some(row),
            buffered: VecDeque::new(),
            in_flight_log: BTreeMap::new(),
            in_flight_due: HashMap::new(),
            sent: row.at,
        })
    }

    pub fn signal(&self) -> Arc<Notify> {
        self.signal.clone()
    }

    /// Pending deliveries: log events not yet read, those read and not done,
    /// and waiting work.
    pub fn depth(&self) -> u64 {
        let unread = self.tail.load(Ordering::Relaxed).saturating_sub(self.read_seq);
        unread + (self.in_flight_log.len() + self.buffered.len()) as u64 + self.waiting.load(Ordering::Relaxed)
    }

    /// When the next work is due: now while the log has unread events.
    pub fn next_due(&mut self) -> Option<u64> {
        if !self.buffered.is_empty() || self.tail.load(Ordering::Relaxed) > self.read_seq {
            return Some(0);
        }
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let prefix = keys::due_prefix(self.sub);
        for item in self.inner.tree.range(prefix.clone()..keys::prefix_end(&prefix)) {
            let Ok((k, v)) = item else { return None };
            if keys::due_route(&v) != Some(self.route) {
                continue;
            }
            if let Some((due, id)) = keys::parse_due(&k) {
                if !self.holds(id) {
                    return Some(due);
                }
            }
        }
        None
    }

    /// Up to `max` deliveries due at `now_ms`; a read finding the store's
    /// files damaged fails the store.
    pub async fn take(&mut self, max: usize, now_ms: u64) -> Result<Vec<Work>, StoreError> {
        let taken = self.take_due(max, now_ms).await.map_err(|e| {
            let reg = super::read_lock(&self.inner.registry);
            super::probe::backlog_damaged(reg.sub_name(self.sub).unwrap_or_default(), e)
        });
        self.inner.check_read(taken)
    }

    async fn take_due(&mut self, max: usize, now_ms: u64) -> Result<Vec<Work>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        if self.buffered.len() < max {
            self.read_log(max.max(READ_AHEAD))?;
        }
        let due = self.due_work(max, now_ms).await?;
        let mut due = due.into_iter().peekable();
        let mut out = Vec::with_capacity(max);
        while out.len() < max {
            let from_log = match (self.buffered.front(), due.peek()) {
                (Some(w), Some((d, _))) => w.event.id.timestamp_ms() <= *d,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if from_log {
                let w = self.buffered.pop_front().expect("peeked");
                if let Some(seq) = log_seq(&w) {
                    self.in_flight_log.insert(w.event.id, seq);
                }
                out.push(w);
            } else {
                let (d, w) = due.next().expect("peeked");
                self.in_flight_due.insert(w.event.id, d);
                out.push(w);
            }
        }
        self.advance().await;
        Ok(out)
    }

    /// The work behind `ticket` is recorded: the cursor may move past it.
    pub async fn done(&mut self, ticket: &SledTicket) {
        match ticket.source {
            Source::Log { .. } => {
                self.in_flight_log.remove(&ticket.event);
            }
            Source::Due { due_ms } => self.let_go(due_ms, ticket.event),
        }
        self.advance().await;
    }

    /// Hold work that a stopped pull lane still leases as handed out (its
    /// route's only): not read again, the cursor not moved past it, until
    /// [`done`](Self::done).
    pub fn adopt(&mut self, ticket: &SledTicket) {
        if ticket.route != self.route || ticket.sub != self.sub {
            return;
        }
        match ticket.source {
            Source::Log { seq } => {
                self.in_flight_log.insert(ticket.event, seq);
            }
            Source::Due { due_ms } => {
                self.in_flight_due.insert(ticket.event, due_ms);
            }
        }
    }

    /// Work [`adopt`](Self::adopt)ed was recorded: let it go (nothing for
    /// another route's, which was not adopted).
    pub async fn let_go_adopted(&mut self, ticket: &SledTicket) {
        if ticket.route == self.route && ticket.sub == self.sub {
            self.done(ticket).await;
        }
    }

    /// A copy of work the lane already holds: forget it, so that it does not
    /// count as handed out. The cursor hands out no such copy (a due row of an
    /// event it holds waits until that is done, [`Self::holds`]); a lane that
    /// got one anyway lets it go with this, and the work comes again.
    pub fn ignore(&mut self, ticket: &SledTicket) {
        if let Source::Due { due_ms } = ticket.source {
            self.let_go(due_ms, ticket.event);
        }
    }

    /// The due row `(due_ms, id)` is no longer handed out (only that one:
    /// a copy let go leaves the hand-out it copies held).
    fn let_go(&mut self, due_ms: u64, id: EventId) {
        if self.in_flight_due.get(&id) == Some(&due_ms) {
            self.in_flight_due.remove(&id);
        }
    }

    /// Whether `id` is handed out and not done. A due row of it is then not
    /// handed out, whatever moved it there (a media wake, a replay, a retry
    /// recorded before the lane is done with the attempt): a second copy in
    /// flight would be sent twice. It comes once the held one is done, if
    /// its record left it due.
    fn holds(&self, id: EventId) -> bool {
        self.in_flight_due.contains_key(&id) || self.in_flight_log.contains_key(&id)
    }

    /// Read up to `want` events for this subscriber from the log into the buffer.
    fn read_log(&mut self, want: usize) -> Result<(), StoreError> {
        // Only events whose batch is flushed: the writer applies a batch to the
        // tree before it flushes, and publishes the tail after. An event read
        // in between could be sent, then lost in a crash before its `200`,
        // and come again from the provider as a new event.
        let committed = self.tail.load(Ordering::Acquire);
        let tree = self.inner.tree.clone();
        let reg = super::read_lock(&self.inner.registry);
        let route_name = reg.route_name(self.route).unwrap_or_default().to_string();
        let mut scanned = 0;
        for item in tree.range(keys::log(self.route, self.read_from)..keys::log_end(self.route)) {
            let (k, v) = item?;
            scanned += 1;
            let Some(id) = keys::id_at_5(&k) else { continue };
            let Some((h, at)) = codec::decode_header(&v) else {
                self.read_from = id.next();
                tracing::error!(event = %id, "unreadable event row; skipped");
                continue;
            };
            if h.seq >= committed {
                break;
            }
            #[cfg(test)]
            if let Some(hook) = &*self.inner.after_log_read.lock().unwrap_or_else(|e| e.into_inner()) {
                hook(&tree, id);
            }
            let finished = match self.recover {
                // No result: unfinished, unless retention removed the event
                // (its rows with its results, in one batch) since its row was
                // read — a finished event sent again. Only a cursor opened on
                // a stored row behind the writer's (a lane reopened at a
                // reload's handover) reads where retention may remove: at a
                // start both are the same row.
                Some(stored) if stored.may_have_result(id, h.seq) => {
                    tree.contains_key(keys::result(id, self.sub))? || !tree.contains_key(&k)?
                }
                Some(_) => {
                    self.recover = None;
                    false
                }
                None => false,
            };
            // Finished (or parked in the due index) before a restart; or held
            // for a stopped pull lane's lease ([`Self::adopt`]).
            let wanted = !finished && !self.in_flight_log.contains_key(&id) && h.subscribers.contains(&self.sub);
            // Its body too before it is past: a body in rows of its own is
            // read now, and a read error must leave it to the next take.
            let body = match wanted
                .then(|| body_rows::read(&tree, self.route, id, &v, at))
                .transpose()
            {
                Ok(body) => body.flatten(), // None: removed by retention since its row was read
                Err(StoreError::Corrupt(why)) => {
                    tracing::error!(event = %id, error = %why, "unreadable event body; skipped");
                    None
                }
                Err(e) => return Err(e),
            };
            // Past it only once it is looked at: a read error leaves it to the
            // next take (read past, the stored cursor would skip it for good).
            self.read_from = id.next();
            self.read_seq = h.seq + 1;
            if let Some(body) = body {
                let event = super::query::event_from(&reg, &route_name, id, h.clone(), body);
                self.buffered.push_back(Work {
                    event,
                    step: 0,
                    attempts: 0,
                    released: false,
                    ticket: Ticket::Sled(SledTicket {
                        route: self.route,
                        sub: self.sub,
                        event: id,
                        source: Source::Log { seq: h.seq },
                        read_step: 0,
                    }),
                });
            }
            if self.buffered.len() >= want || scanned >= SCAN_LIMIT {
                break;
            }
        }
        Ok(())
    }

    /// Due-index work due at `now_ms`, in due order, not already handed out.
    async fn due_work(&mut self, max: usize, now_ms: u64) -> Result<Vec<(u64, Work)>, StoreError> {
        // The writer publishes the count with the rows: none means none.
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return Ok(Vec::new());
        }
        let tree = self.inner.tree.clone();
        let prefix = keys::due_prefix(self.sub);
        let mut out = Vec::new();
        // Work to record without an attempt: gone, or dead if unreadable.
        let mut unsendable = Vec::new();
        {
            let reg = super::read_lock(&self.inner.registry);
            let route_name = reg.route_name(self.route).unwrap_or_default().to_string();
            for item in tree.range(prefix.clone()..keys::prefix_end(&prefix)) {
                let (k, v) = item?;
                let Some((due, id)) = keys::parse_due(&k) else { continue };
                if due > now_ms || out.len() >= max {
                    break;
                }
                // Another route's work: kept for when the subscriber is on
                // that route again.
                if keys::due_route(&v) != Some(self.route) {
                    continue;
                }
                if self.holds(id) || out.iter().any(|(_, w): &(u64, Work)| w.event.id == id) {
                    continue;
                }
                let mut ticket = SledTicket {
                    route: self.route,
                    sub: self.sub,
                    event: id,
                    source: Source::Due { due_ms: due },
                    read_step: 0,
                };
                let Some(v) = tree.get(keys::log(self.route, id))? else {
                    unsendable.push((ticket, Outcome::Gone));
                    continue;
                };
                let Some((h, at)) = codec::decode_header(&v) else {
                    // Dead-lettered: listed, counted and replayable, not
                    // forgotten with its result left `Retrying` for ever.
                    tracing::error!(event = %id, key = %hex::encode(keys::log(self.route, id)), "unreadable event row; its delivery is dead-lettered");
                    let error = "the event's stored row is unreadable".to_string();
                    unsendable.push((ticket, Outcome::Dead { error }));
                    continue;
                };
                let result = tree
                    .get(keys::result(id, self.sub))?
                    .and_then(|r| codec::decode_result(&r));
                let (step, attempts, released) = result.map_or((0, 0, false), |r| (r.step, r.attempts, r.released));
                ticket.read_step = step;
                let body = match body_rows::read(&tree, self.route, id, &v, at) {
                    Ok(Some(body)) => body,
                    Ok(None) => {
                        unsendable.push((ticket, Outcome::Gone));
                        continue;
                    }
                    // Dead-lettered as an unreadable row is: read again, it
                    // would fail every take of the lane.
                    Err(StoreError::Corrupt(why)) => {
                        tracing::error!(event = %id, error = %why, "unreadable event body; its delivery is dead-lettered");
                        let error = format!("the event's stored body is unreadable ({why})");
                        unsendable.push((ticket, Outcome::Dead { error }));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let event = super::query::event_from(&reg, &route_name, id, h, body);
                out.push((
                    due,
                    Work {
                        event,
                        step,
                        attempts,
                        released,
                        ticket: Ticket::Sled(ticket),
                    },
                ));
            }
        }
        for (ticket, outcome) in unsendable {
            // Gone: this route's event is not in its log, removed by retention
            // (which removes the result row with it): forget the waiting work.
            // Dead: its row is unreadable.
            let (reply, rx) = tokio::sync::oneshot::channel();
            let rec = Record {
                ticket,
                attempt: None,
                outcome,
                now_ms,
            };
            if self.tx.send(Msg::Record(Box::new(rec), reply)).await.is_ok() {
                let _ = rx.await;
            }
        }
        Ok(out)
    }

    /// Tell the writer where the cursor is, when it moved.
    async fn advance(&mut self) {
        let first_flight = self.in_flight_log.first_key_value().map(|(id, seq)| (*id, *seq));
        let first_buffered = self.buffered.front().and_then(|w| Some((w.event.id, log_seq(w)?)));
        let at = match (first_flight, first_buffered) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => (self.read_from, self.read_seq),
        };
        if at.0 > self.sent {
            self.sent = at.0;
            let _ = self
                .tx
                .send(Msg::Cursor {
                    route: self.route,
                    sub: self.sub,
                    at: at.0,
                    seq: at.1,
                })
                .await;
        }
    }
}

/// The log sequence of work read from the log.
fn log_seq(w: &Work) -> Option<u64> {
    match &w.ticket {
        Ticket::Sled(SledTicket {
            source: Source::Log { seq },
            ..
        }) => Some(*seq),
        _ => None,
    }
}
