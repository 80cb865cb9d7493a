//! Reads for the admin API and the CLI: one event with its deliveries, recent
//! events, dead letters and per-subscriber backlog. Reads go straight to the
//! tree (sled reads do not block the writer); callers run them off the async
//! workers ([`super::SledStore::blocking`]).

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::body_rows;
use super::codec::{self, Header, ResultRow};
use super::keys::{self, CursorRow};
use super::registry::Registry;
use super::SledStore;
use crate::store::{
    DeadLetter, DeadLetterPage, Event, EventId, EventMeta, EventPage, EventQuery, EventView, ListedEvent, StoreError,
    SubscriberStats,
};

/// The most events a listing looks at and leaves out (by status, task id,
/// or removed by retention meanwhile) before it stops with what it found:
/// a filter that matches few events does not read the whole log at every
/// request (the console's refreshes, a poller), which slowed ingest.
#[cfg(not(test))]
pub(super) const SCAN_BUDGET: usize = 10_000;
#[cfg(test)]
pub(super) const SCAN_BUDGET: usize = 20;

/// An event from its log row, names restored.
pub(super) fn event_from(reg: &Registry, route: &str, id: EventId, h: Header, body: Bytes) -> Event {
    let subscribers = h
        .subscribers
        .iter()
        .map(|s| reg.sub_name(*s).map_or_else(|| format!("#{s}"), str::to_string))
        .collect();
    let m = h.meta;
    Event {
        id,
        meta: EventMeta {
            route: route.to_string(),
            received_ms: id.timestamp_ms(),
            source: m.source,
            content_type: m.content_type,
            headers: m.headers,
            subscribers,
            dedupe_fallback: m.dedupe_fallback,
            origin: m.origin,
        },
        body,
    }
}

impl SledStore {
    /// The route number and decoded row of an event, trying every route.
    fn find(&self, id: EventId) -> Result<Option<(u32, Header, Bytes)>, StoreError> {
        let routes = super::read_lock(&self.inner.registry).route_numbers();
        for route in routes {
            if let Some(v) = self.inner.tree.get(keys::log(route, id))? {
                let (h, at) = codec::decode_header(&v).ok_or_else(|| StoreError::Corrupt(format!("event {id}")))?;
                // No body: removed by retention since its row was read.
                return Ok(body_rows::read(&self.inner.tree, route, id, &v, at)?.map(|body| (route, h, body)));
            }
        }
        Ok(None)
    }

    pub fn event(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        let Some((route, h, body)) = self.find(id)? else {
            return Ok(None);
        };
        let reg = super::read_lock(&self.inner.registry);
        let name = reg.route_name(route).unwrap_or_default().to_string();
        Ok(Some(event_from(&reg, &name, id, h, body)))
    }

    /// The id of the event stored under `hash` on `route`, if any (its
    /// dedupe row).
    pub fn event_by_dedupe(&self, route: &str, hash: &[u8; 32]) -> Result<Option<EventId>, StoreError> {
        let Some(route) = super::read_lock(&self.inner.registry).route(route) else {
            return Ok(None);
        };
        let mut h = [0u8; 16];
        h.copy_from_slice(&hash[..16]);
        Ok(self
            .inner
            .tree
            .get(keys::dedupe(route, &h))?
            .and_then(|v| EventId::from_slice(&v)))
    }

    pub fn event_view(&self, id: EventId) -> Result<Option<EventView>, StoreError> {
        let Some((route, h, body)) = self.find(id)? else {
            return Ok(None);
        };
        self.view(route, id, h, body).map(Some)
    }

    fn view(&self, route: u32, id: EventId, h: Header, body: Bytes) -> Result<EventView, StoreError> {
        let subs = h.subscribers.clone();
        let reg = super::read_lock(&self.inner.registry);
        let name = reg.route_name(route).unwrap_or_default().to_string();
        let event = event_from(&reg, &name, id, h, body);
        let mut deliveries = Vec::with_capacity(subs.len());
        for (no, sub) in subs.iter().zip(&event.meta.subscribers) {
            let delivery = match self.inner.tree.get(keys::result(id, *no))? {
                None => ResultRow::view(None, sub),
                Some(v) => match codec::decode_result(&v) {
                    Some(row) => ResultRow::view(Some(row), sub),
                    None => {
                        tracing::error!(event = %id, subscriber = %sub,
                            key = %hex::encode(keys::result(id, *no)), "unreadable result row");
                        ResultRow::unreadable_view(sub)
                    }
                },
            };
            deliveries.push(delivery);
        }
        Ok(EventView { event, deliveries })
    }

    /// Newest first across routes (or of one), filtered by overall status
    /// and `matching`; each listed without its body ([`ListedEvent`]): one
    /// body at a time is held, while its event is looked at. The walk
    /// stops after leaving out [`SCAN_BUDGET`] events: the page then holds
    /// what it found down to there, and `cut_at` names the last event looked
    /// at (the next page goes on `before` it).
    pub fn recent_events(&self, q: &EventQuery) -> Result<EventPage, StoreError> {
        let routes: Vec<u32> = {
            let reg = super::read_lock(&self.inner.registry);
            match &q.route {
                Some(name) => reg.route(name).into_iter().collect(),
                None => reg.route_numbers(),
            }
        };
        // One reverse iterator per route, merged by id.
        let mut iters: Vec<_> = routes
            .iter()
            .map(|&r| {
                let end = match q.before {
                    Some(b) => keys::log(r, b),
                    None => keys::log_end(r),
                };
                (r, self.inner.tree.range(keys::log_prefix(r)..end).rev().peekable())
            })
            .collect();
        let mut out = Vec::new();
        let (mut left_out, mut last_seen, mut cut_at) = (0, None, None);
        while out.len() < q.limit {
            let mut best: Option<(usize, EventId)> = None;
            for (i, (_, it)) in iters.iter_mut().enumerate() {
                if let Some(Ok((k, _))) = it.peek() {
                    if let Some(id) = keys::id_at_5(k) {
                        if best.is_none_or(|(_, b)| id > b) {
                            best = Some((i, id));
                        }
                    }
                } else if let Some(Err(_)) = it.peek() {
                    let e = it.next().expect("peeked").unwrap_err();
                    return Err(e.into());
                }
            }
            let Some((i, id)) = best else { break };
            if left_out >= SCAN_BUDGET {
                // Older events are left, not looked at.
                cut_at = last_seen;
                break;
            }
            last_seen = Some(id);
            left_out += 1; // taken back below if it is listed
            let (route, it) = &mut iters[i];
            let (_, v) = it.next().expect("peeked")?;
            let (h, at) = codec::decode_header(&v).ok_or_else(|| StoreError::Corrupt(format!("event {id}")))?;
            // The status is the deliveries': an event it leaves out has its
            // body not read (a status matching few events looked at every
            // stored body, again at each of the console's refreshes).
            let mut view = self.view(*route, id, h, Bytes::new())?;
            if q.status.as_deref().is_some_and(|s| s != view.status()) {
                continue;
            }
            let Some(body) = body_rows::read(&self.inner.tree, *route, id, &v, at)? else {
                continue; // removed by retention since its row was read
            };
            view.event.body = body;
            if q.matching.as_ref().is_none_or(|m| (m.0)(&view.event)) {
                out.push(ListedEvent::of(view, q));
                left_out -= 1;
            }
        }
        Ok(EventPage { events: out, cut_at })
    }

    /// Every dead letter is counted; the newest `limit` (by event) are read.
    pub fn dead_letters(&self, sub: Option<&str>, limit: usize) -> Result<DeadLetterPage, StoreError> {
        let reg = super::read_lock(&self.inner.registry).clone();
        let subs = match sub {
            Some(name) => match reg.sub(name) {
                Some(no) => vec![no],
                None => return Ok(DeadLetterPage::default()),
            },
            None => reg.sub_numbers(),
        };
        // Keys go by subscriber, then event: each subscriber's newest are
        // read backwards (at most `limit` each, values only for those), and
        // the rest only counted (keys alone).
        let mut found: Vec<(EventId, u32, u64)> = Vec::new();
        let mut total = 0;
        for no in subs {
            let prefix = keys::dead_prefix(no);
            for item in self.inner.tree.scan_prefix(&prefix).rev().take(limit) {
                let (k, v) = item?;
                if let Some(id) = keys::id_at_5(&k) {
                    found.push((id, no, keys::u64_value(&v)));
                }
            }
            total += self.inner.dead_letters(no)?;
        }
        let name = |no: u32| reg.sub_name(no).map_or_else(|| format!("#{no}"), str::to_string);
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| name(a.1).cmp(&name(b.1))));
        found.truncate(limit);
        let mut out = Vec::with_capacity(found.len());
        for (id, no, at_ms) in found {
            let row = self
                .inner
                .tree
                .get(keys::result(id, no))?
                .and_then(|r| codec::decode_result(&r));
            out.push(DeadLetter {
                event: id,
                subscriber: name(no),
                at_ms,
                attempts: row.as_ref().map_or(0, |r| r.attempts),
                last_error: row.and_then(|r| r.last_error),
            });
        }
        out.sort_by(DeadLetter::newest_first);
        Ok(DeadLetterPage { letters: out, total })
    }

    /// Every subscriber the store knows, with its backlog on its route; with
    /// `with_moved`, also an entry for each route it was moved from whose
    /// work is still pending (kept for when it is on that route again:
    /// [`super::due_route`]).
    pub fn subscriber_stats(&self, with_moved: bool) -> Result<Vec<SubscriberStats>, StoreError> {
        let reg = super::read_lock(&self.inner.registry).clone();
        // The writer's copy (the stored rows may be behind it).
        let live = super::read_lock(&self.inner.cursors).clone();
        // Each subscriber's routes with a cursor, found in one pass (not
        // one pass per subscriber: a long history of subscribers made that
        // quadratic).
        let mut routes_of: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
        if with_moved {
            for (r, s) in live.keys() {
                routes_of.entry(*s).or_default().push(*r);
            }
        }
        let mut out = Vec::new();
        for sub in reg.sub_numbers() {
            let Some(route) = reg.sub_route(sub) else { continue };
            let name = reg.sub_name(sub).unwrap_or_default().to_string();
            let (backlog, oldest) = self.pending(route, sub, live.get(&(route, sub)).copied())?;
            out.push(SubscriberStats {
                name: name.clone(),
                route: reg.route_name(route).map(str::to_string),
                backlog,
                oldest_pending_ms: oldest,
                dead_letters: self.inner.dead_letters(sub)?,
            });
            if !with_moved {
                continue;
            }
            let mut before: Vec<u32> = routes_of
                .remove(&sub)
                .unwrap_or_default()
                .into_iter()
                .filter(|r| *r != route)
                .collect();
            before.sort_unstable();
            for r in before {
                let (backlog, oldest) = self.pending(r, sub, live.get(&(r, sub)).copied())?;
                if backlog > 0 {
                    out.push(SubscriberStats {
                        name: name.clone(),
                        route: reg.route_name(r).map(str::to_string),
                        backlog,
                        oldest_pending_ms: oldest,
                        dead_letters: 0,
                    });
                }
            }
        }
        Ok(out)
    }

    /// `sub`'s pending deliveries of `route` (events not yet finished, and
    /// waiting work) and the receipt time of the oldest.
    fn pending(&self, route: u32, sub: u32, live: Option<CursorRow>) -> Result<(u64, Option<u64>), StoreError> {
        let cursor = match live {
            Some(c) => Some(c),
            None => self
                .inner
                .tree
                .get(keys::cursor(route, sub))?
                .and_then(|v| CursorRow::decode(&v)),
        };
        let tail = self.inner.tail(route).load(Ordering::Relaxed);
        let waiting = self.inner.waiting_at(route, sub).load(Ordering::Relaxed);
        // Results ahead of the cursor are looked for within the same bounds
        // as a restart.
        let unread = match cursor {
            Some(c) => self.unread(route, sub, c, tail)?,
            None => 0,
        };
        let mut oldest = cursor
            .filter(|_| unread > 0)
            .map(|c| self.first_event_ms(route, c.at))
            .transpose()?
            .flatten();
        if waiting > 0 {
            let prefix = keys::due_prefix(sub);
            let mut seen = 0;
            for item in self.inner.tree.scan_prefix(&prefix) {
                let (k, v) = item?;
                if keys::due_route(&v) != Some(route) {
                    continue;
                }
                if let Some((_, id)) = keys::parse_due(&k) {
                    oldest = Some(oldest.map_or(id.timestamp_ms(), |o: u64| o.min(id.timestamp_ms())));
                }
                seen += 1;
                if seen == 64 {
                    break;
                }
            }
        }
        Ok((unread + waiting, oldest))
    }

    /// Events of the log not yet finished for `sub`: those from the stored
    /// cursor up to where results may have been written without a result,
    /// and every one after it.
    fn unread(&self, route: u32, sub: u32, c: CursorRow, tail: u64) -> Result<u64, StoreError> {
        let tail = c.tail(tail);
        if !c.recovering() {
            return Ok(tail.saturating_sub(c.seq));
        }
        let mut unread = 0;
        let mut next_seq = c.seq;
        for item in self.inner.tree.range(keys::log(route, c.at)..keys::log_end(route)) {
            let (k, v) = item?;
            let (Some(id), Some((h, _))) = (keys::id_at_5(&k), codec::decode_header(&v)) else {
                continue;
            };
            // Past the subscriber's end, or past where results may be.
            if h.seq >= tail || !c.may_have_result(id, h.seq) {
                break;
            }
            next_seq = h.seq + 1;
            if h.subscribers.contains(&sub) && !self.inner.tree.contains_key(keys::result(id, sub))? {
                unread += 1;
            }
        }
        Ok(unread + tail.saturating_sub(next_seq))
    }

    /// Receipt time of the first event at or after `from` in a route's log.
    fn first_event_ms(&self, route: u32, from: EventId) -> Result<Option<u64>, StoreError> {
        Ok(self
            .inner
            .tree
            .range(keys::log(route, from)..keys::log_end(route))
            .keys()
            .next()
            .transpose()?
            .and_then(|k| keys::id_at_5(&k))
            .map(|id| id.timestamp_ms()))
    }
}
