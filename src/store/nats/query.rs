//! Reads and operator actions in cluster mode, answered the same by every
//! relay: an event (direct get of its sequence, from any replica) with its
//! results, recent events (walking each route's stream down), dead letters
//! (their stream) and replays (a message on the subscriber's replay
//! subject, see [`replay`]). Each subscriber's backlog is in
//! [`super::backlog`].

mod expired;
mod replay;
mod replay_mark;

use std::sync::atomic::Ordering;

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};
use async_nats::jetstream::ErrorCode;
use async_nats::HeaderMap;
use futures_util::TryStreamExt;

use super::{event, event_read, layout, unavailable, NatsStore};
use crate::store::{
    DeadLetter, DeadLetterPage, Event, EventId, EventPage, EventQuery, EventView, ListedEvent, StoreError,
};

/// Messages one listing looks at, at most, per route (from `before` down).
const SCAN_LIMIT: u64 = 10_000;

/// How far apart relays' clocks may be for listings to stay complete: each
/// relay stamps the events it ingests with its own clock, so in a route's
/// stream a later message may carry an earlier time by up to this much.
pub(super) const CLOCK_SKEW_MS: u64 = 5 * 60_000;

impl NatsStore {
    /// (messages, bytes) of the cluster's hookrelay streams and buckets, as
    /// JetStream's stream info says (one copy: replicas not multiplied).
    pub async fn size(&self) -> Result<(u64, u64), StoreError> {
        let ours = |name: &str| {
            name.starts_with(layout::STREAM_PREFIX)
                || [layout::DEAD, layout::MEDIA_WORK, layout::TASK_WORK].contains(&name)
                || [layout::RESULTS, layout::MEDIA, layout::TASKS]
                    .iter()
                    .any(|b| name.strip_prefix("KV_") == Some(*b))
        };
        let list = async {
            let infos: Vec<async_nats::jetstream::stream::Info> =
                self.shared.js.streams().try_collect().await.map_err(unavailable)?;
            Ok(infos
                .iter()
                .filter(|i| ours(&i.config.name))
                .fold((0, 0), |(m, b), i| (m + i.state.messages, b + i.state.bytes)))
        };
        tokio::time::timeout(std::time::Duration::from_secs(2), list)
            .await
            .map_err(|_| unavailable("NATS did not answer in time"))?
    }

    /// The event behind an id, with its route and sequence.
    async fn find(&self, id: EventId) -> Result<Option<(String, u64, Event)>, StoreError> {
        Ok(self.find_message(id).await?.map(|(route, seq, m)| {
            let ev = event::decode(&route, seq, layout::millis(m.time), &m.headers, m.payload);
            (route, seq, ev)
        }))
    }

    /// The headers of the event behind an id, with its route and sequence.
    pub(super) async fn find_headers(&self, id: EventId) -> Result<Option<(String, u64, HeaderMap)>, StoreError> {
        Ok(self
            .find_message(id)
            .await?
            .map(|(route, seq, m)| (route, seq, m.headers)))
    }

    async fn find_message(&self, id: EventId) -> Result<Option<(String, u64, StreamMessage)>, StoreError> {
        let (tag, seq, time_ms) = layout::parse_id(id);
        let (route, stream) = match self.shared.route_of_tag(tag) {
            Some(route) => {
                let stream = self.shared.stream(&route)?;
                (route, stream)
            }
            None => match self.removed_route_of_tag(tag).await? {
                Some(found) => found,
                None => return Ok(None),
            },
        };
        let Some(m) = event_read::event_message(&stream, seq).await? else {
            return Ok(None);
        };
        // A re-created stream reuses sequences: the time must match too.
        let time = event::time_ms(&m.headers).unwrap_or_else(|| layout::millis(m.time));
        let ok = m.subject.starts_with("hr.ev.") && time == time_ms;
        Ok(ok.then_some((route, seq, m)))
    }

    /// The route no longer configured whose stream is still in NATS (its
    /// events, pending deliveries of removed subscribers among them, are
    /// kept until it comes back or they expire) and whose tag `tag` is.
    async fn removed_route_of_tag(&self, tag: u16) -> Result<Option<(String, Stream)>, StoreError> {
        let removed = self.removed_routes().await?;
        let Some(route) = removed.into_iter().find(|route| layout::route_tag(route) == tag) else {
            return Ok(None);
        };
        Ok(self.removed_route_stream(&route).await?.map(|stream| (route, stream)))
    }

    /// Routes not in the config whose streams NATS still has (one request).
    pub(super) async fn removed_routes(&self) -> Result<Vec<String>, StoreError> {
        let names: Vec<String> = self.shared.js.stream_names().try_collect().await.map_err(unavailable)?;
        let topology = super::read(&self.shared.topology);
        Ok(names
            .iter()
            .filter_map(|n| n.strip_prefix(layout::STREAM_PREFIX))
            .filter(|r| !topology.routes.iter().any(|(c, _)| c == r))
            .map(str::to_string)
            .collect())
    }

    /// The stream of a route not in the config, if it is still in NATS.
    pub(super) async fn removed_route_stream(&self, route: &str) -> Result<Option<Stream>, StoreError> {
        // No route ever had such a name (an operator's typo in `?route=`):
        // NATS would refuse the stream name rather than say it is not there.
        if !layout::name_fits(route) {
            return Ok(None);
        }
        match self.shared.js.get_stream(layout::stream(route)).await {
            Ok(s) => Ok(Some(s)),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => Ok(None),
                _ => Err(unavailable(e)),
            },
        }
    }

    pub async fn event(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        Ok(self.find(id).await?.map(|(_, _, e)| e))
    }

    async fn view(&self, route: &str, seq: u64, event: Event) -> Result<EventView, StoreError> {
        let mut deliveries = Vec::with_capacity(event.meta.subscribers.len());
        for sub in &event.meta.subscribers {
            let key = layout::result_key(route, seq, sub);
            let row = self.shared.result(&key).await?.map(|(r, _)| r);
            deliveries.push(crate::store::result::ResultRow::view(row, sub));
        }
        Ok(EventView { event, deliveries })
    }

    pub async fn event_view(&self, id: EventId) -> Result<Option<EventView>, StoreError> {
        match self.find(id).await? {
            Some((route, seq, ev)) => Ok(Some(self.view(&route, seq, ev).await?)),
            None => Ok(None),
        }
    }

    /// Newest first across routes (or of one), older than `before`, filtered
    /// by overall status and `matching` while scanning (so `limit` counts
    /// matches, as on one host). Each route is walked down from `before`
    /// (its own sequence when `before` is one of its events: every event
    /// below it, whatever its time; else from above the last event older
    /// than `before`, found by its time allowing for [`CLOCK_SKEW_MS`], see
    /// [`start_before`]), looking at [`SCAN_LIMIT`] messages at most (past
    /// those within the skew above). A route whose walk stopped there
    /// before its oldest message cuts the page: only events at or newer
    /// than the newest cut point are returned (every route was looked at
    /// down to there), and `cut_at` says where to go on from. Each event is
    /// kept without its body ([`ListedEvent`]): one message's payload at a
    /// time is held.
    pub async fn recent_events(&self, q: EventQuery) -> Result<EventPage, StoreError> {
        let configured: Vec<String> = super::read(&self.shared.topology)
            .routes
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        let routes: Vec<String> = match &q.route {
            Some(r) => vec![r.clone()],
            // Routes removed from the config whose streams are kept too, as on one host.
            None => configured.iter().cloned().chain(self.removed_routes().await?).collect(),
        };
        let mut out: Vec<ListedEvent> = Vec::new();
        let mut cut_at: Option<EventId> = None;
        for route in routes {
            let stream = match self.shared.stream(&route) {
                Ok(s) => s,
                Err(_) if configured.contains(&route) => continue,
                // A removed route's stream, if it is still there.
                Err(_) => match self.removed_route_stream(&route).await? {
                    Some(s) => s,
                    None => continue,
                },
            };
            let info = stream.get_info().await.map_err(unavailable)?;
            let (first, last) = (info.state.first_sequence.max(1), info.state.last_sequence);
            // `before` one of this route's (an event listed, or a cut point):
            // its older events are those below its sequence, whatever their
            // times (another relay's clock may be ahead); any other `before`:
            // those older by id, found from a sequence above every one of
            // them (see [`start_before`]).
            let same_route = q
                .before
                .map(layout::parse_id)
                .filter(|(tag, _, _)| *tag == layout::route_tag(&route));
            // From `top` down; the limit counts from `counted` down (the
            // messages between, within the skew above `before`, are looked
            // at besides, up to the limit again).
            let (top, counted) = match (q.before, same_route) {
                (None, _) => (last, last),
                (_, Some((_, seq, _))) => (last.min(seq.saturating_sub(1)), last.min(seq.saturating_sub(1))),
                (Some(b), None) => {
                    let exact = start_before(&stream, &route, first, last, b, 0).await?;
                    let above = start_before(&stream, &route, first, last, b, CLOCK_SKEW_MS + 1).await?;
                    (above.min(exact.saturating_add(SCAN_LIMIT)), exact)
                }
            };
            let mut seq = top;
            let mut found = 0;
            // The oldest sequence looked at and the earliest time seen, for the cut point.
            let mut oldest: Option<(u64, u64)> = None;
            let mut see = |seq: u64, ms: u64| oldest = Some((seq, oldest.map_or(ms, |(_, t)| t.min(ms))));
            while seq >= first && counted.saturating_sub(seq) < SCAN_LIMIT && found < q.limit {
                // A replica's "not found" is asked of the leader, a
                // timeout refuses the listing: skipped, the event was left
                // out of every page (cluster review, stop 65). Only a
                // message the leader does not have (deleted) is passed over.
                if let Some(m) = event_read::scanned_message(&stream, seq).await? {
                    let stored_ms = layout::millis(m.time);
                    if m.subject.starts_with("hr.ev.") {
                        let ev = event::decode(&route, seq, stored_ms, &m.headers, m.payload);
                        see(seq, ev.meta.received_ms);
                        let older = same_route.is_some() || q.before.is_none_or(|b| ev.id < b);
                        let wanted = older && q.matching.as_ref().is_none_or(|f| (f.0)(&ev));
                        if wanted {
                            let view = self.view(&route, seq, ev).await?;
                            if q.status.as_deref().is_none_or(|s| s == view.status()) {
                                found += 1;
                                out.push(ListedEvent::of(view, &q));
                            }
                        }
                    } else {
                        see(seq, stored_ms);
                    }
                }
                seq -= 1;
            }
            let cut = seq >= first && counted.saturating_sub(seq) >= SCAN_LIMIT && found < q.limit;
            // The cut point: the oldest sequence looked at with the earliest
            // time seen, so every event looked at is at or above it (kept on
            // this page) and every one not looked at is below its sequence
            // (the next page, `before` it, walks on from there).
            if let (true, Some((s, ms))) = (cut, oldest) {
                let id = layout::event_id(&route, s, ms);
                cut_at = cut_at.max(Some(id));
            }
        }
        out.sort_by_key(|l| std::cmp::Reverse(l.view.event.id));
        if let Some(cut) = cut_at {
            out.retain(|l| l.view.event.id >= cut);
        }
        out.truncate(q.limit);
        Ok(EventPage { events: out, cut_at })
    }

    /// The dead-letter subjects (route, subscriber, sequence), oldest first.
    pub(super) async fn dead_subjects(&self, sub: Option<&str>) -> Result<Vec<(String, String, u64)>, StoreError> {
        let stream = self.shared.js.get_stream(layout::DEAD).await.map_err(unavailable)?;
        let subjects: Vec<(String, usize)> = stream
            .info_with_subjects(layout::dead_filter(sub))
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let mut out: Vec<_> = subjects.iter().filter_map(|(s, _)| layout::parse_dead(s)).collect();
        out.sort_by_key(|(_, _, seq)| *seq);
        Ok(out)
    }

    pub async fn dead_letters(&self, sub: Option<String>, limit: usize) -> Result<DeadLetterPage, StoreError> {
        let mut subjects = self.live_letters(sub.as_deref()).await?;
        let total = subjects.len() as u64;
        // Newest first: a route's sequence follows arrival, so each route's
        // newest `limit` are read, then merged by event id (time first).
        subjects.sort_by(|(_, a_sub, a), (_, b_sub, b)| b.cmp(a).then_with(|| a_sub.cmp(b_sub)));
        let mut per_route = std::collections::HashMap::<String, usize>::new();
        subjects.retain(|(route, _, _)| {
            let n = per_route.entry(route.clone()).or_default();
            *n += 1;
            *n <= limit
        });
        let mut out = Vec::new();
        // A route this relay's config does not have (removed, or not here
        // yet in a rolling change): its stream looked up once, as the event
        // view does, or the letter's id lacked its time (a bogus id, 404).
        let mut removed = std::collections::HashMap::<String, Option<Stream>>::new();
        for (route, s, seq) in subjects {
            let key = layout::result_key(&route, seq, &s);
            let row = self.shared.result(&key).await?.map(|(r, _)| r);
            let stream = match self.shared.stream(&route) {
                Ok(st) => Some(st),
                Err(_) => match removed.get(&route) {
                    Some(st) => st.clone(),
                    None => {
                        let st = self.removed_route_stream(&route).await.ok().flatten();
                        removed.insert(route.clone(), st.clone());
                        st
                    }
                },
            };
            let time = match stream {
                // A letter whose event cannot be read now is listed
                // without its time, not the page refused.
                Some(st) => event_read::scanned_message(&st, seq)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|m| event::time_ms(&m.headers)),
                None => None,
            };
            out.push(DeadLetter {
                event: layout::event_id(&route, seq, time.unwrap_or(0)),
                subscriber: s,
                at_ms: row.as_ref().map_or(0, |r| r.at_ms),
                attempts: row.as_ref().map_or(0, |r| r.attempts),
                last_error: row.and_then(|r| r.last_error),
            });
        }
        out.sort_by(DeadLetter::newest_first);
        out.truncate(limit);
        Ok(DeadLetterPage { letters: out, total })
    }

    /// Streams and the bucket expire by themselves (`max_age`); dead
    /// letters whose event expired before them are dropped
    /// ([`expired`]). No event is removed here: 0.
    pub async fn sweep(&self, _cutoff_ms: u64) -> Result<usize, StoreError> {
        self.drop_expired_letters().await?;
        Ok(0)
    }

    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }
}

/// The sequence of `route`'s last event older than `before` (of another
/// route) by its id with `skew` taken off its time, or `first - 1` when there
/// is none: a binary search on sequence, ~log2(messages) direct gets.
/// Times are not ordered by sequence when relays' clocks differ, so with a
/// `skew` of 0 the answer may leave out older events above it. What the
/// search does give: the first event above the answer is stamped at least
/// `before + skew` (or there is none), so with `skew` past
/// [`CLOCK_SKEW_MS`] every later message (written after it by a relay at
/// most that far behind) is newer than `before`: no older event is above.
/// Events before `lo` were probed under the bound, the first from `hi` on
/// at or over it.
async fn start_before(
    stream: &Stream,
    route: &str,
    first: u64,
    last: u64,
    before: EventId,
    skew: u64,
) -> Result<u64, StoreError> {
    let filter = layout::event_filter(route);
    let (mut lo, mut hi) = (first, last.saturating_add(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match stream.direct_get_next_for_subject(filter.as_str(), Some(mid)).await {
            Ok(m) if m.sequence < hi => {
                let ms = event::time_ms(&m.headers).unwrap_or_else(|| layout::millis(m.time));
                match layout::event_id(route, m.sequence, ms.saturating_sub(skew)) < before {
                    true => lo = m.sequence + 1,
                    false => hi = mid,
                }
            }
            // No event in [mid, hi).
            Ok(_) => hi = mid,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => hi = mid,
            Err(e) => return Err(unavailable(e)),
        }
    }
    Ok(lo - 1)
}
