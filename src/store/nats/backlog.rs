//! Each subscriber's backlog in cluster mode, the same on every relay: what
//! its consumer has not settled (a delivery waiting in NATS for its retry
//! included), the receipt time of the oldest of it (a replay counted from
//! its event's time, as on one host), and its dead letters; subscribers
//! removed from the config are listed while their consumer or dead letters
//! remain. What a look at a removed subscriber's messages found is kept: a
//! request within [`RESCAN_AFTER`] reads only the messages stored since (the
//! console asks every 2.5 s).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::consumer::Info;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};
use futures_util::TryStreamExt;
use tokio::time::Instant;

use super::{event, layout, unavailable, NatsStore};
use crate::store::{StoreError, SubscriberStats};

/// Messages never handed to a removed subscriber looked at, at most, for
/// those that were for it.
const REMOVED_SCAN: u64 = 1_000;

/// How long what a look at a removed subscriber's messages found stands
/// (only messages stored since are read meanwhile); then they are all read
/// again, so messages that expired or were purged meanwhile drop out.
const RESCAN_AFTER: Duration = Duration::from_secs(30);

/// What the last look at a removed subscriber's messages found.
#[derive(Clone)]
pub(super) struct RemovedScan {
    /// The first sequence looked at: right after what its consumer was handed.
    from: u64,
    /// The last sequence looked at.
    to: u64,
    /// Of those messages, how many were for the subscriber, and the oldest
    /// one's time.
    unread: u64,
    oldest: Option<u64>,
    /// When all of them were read.
    at: Instant,
}

impl NatsStore {
    /// Every subscriber's backlog, oldest pending event and dead letters: the
    /// configured ones, and (`with_removed`) those removed from the config
    /// whose deliveries are still pending (their consumer is still on the
    /// route's stream, also a route removed since) or dead. An error when
    /// NATS cannot be read (not zeros: the admin API answers `503`, as for
    /// the dead letters).
    pub async fn subscriber_stats(&self, with_removed: bool) -> Result<Vec<SubscriberStats>, StoreError> {
        let topology = super::read(&self.shared.topology);
        let dead = self.live_letters(None).await?;
        // Counted once by name (not a pass over every letter per row).
        let mut dead_counts: HashMap<&str, u64> = HashMap::new();
        for (_, s, _) in &dead {
            *dead_counts.entry(s.as_str()).or_default() += 1;
        }
        let dead_of = |sub: &str| dead_counts.get(sub).copied().unwrap_or(0);
        let mut streams = Vec::new();
        for (route, subs) in &topology.routes {
            streams.push((route.clone(), self.shared.stream(route)?, subs.clone()));
        }
        if with_removed {
            for route in self.removed_routes().await? {
                let stream = self
                    .shared
                    .js
                    .get_stream(layout::stream(&route))
                    .await
                    .map_err(unavailable)?;
                streams.push((route, stream, Vec::new()));
            }
        }
        let mut out: Vec<SubscriberStats> = Vec::new();
        let mut removed = HashSet::new();
        for (route, stream, subs) in &streams {
            let consumers: Vec<Info> = stream.consumers().try_collect().await.map_err(unavailable)?;
            for info in consumers {
                let Some(sub) = info.name.strip_prefix(layout::CONSUMER_PREFIX) else {
                    continue;
                };
                let configured = subs.iter().any(|s| s == sub);
                let (backlog, oldest) = match configured {
                    true => self.configured_backlog(stream, route, sub, &info).await?,
                    false if with_removed => {
                        removed.insert((route.clone(), sub.to_string()));
                        self.removed_backlog(stream, route, sub, &info).await?
                    }
                    false => continue,
                };
                // The same name on two routes' streams (moved to another
                // route): a row for each, the old route's listed as removed.
                out.push(SubscriberStats {
                    name: sub.to_string(),
                    route: Some(route.clone()),
                    backlog,
                    oldest_pending_ms: oldest,
                    dead_letters: 0,
                });
            }
        }
        // Dead letters are the subscriber's, whatever the route: on the row
        // of the route it is configured on, else on its first. (Each name's
        // route and first row looked up once: not a pass per row.)
        let mut configured_on: HashMap<&str, &String> = HashMap::new();
        for (route, subs) in &topology.routes {
            for sub in subs {
                configured_on.entry(sub.as_str()).or_insert(route);
            }
        }
        let mut first: HashMap<String, usize> = HashMap::new();
        for (i, row) in out.iter().enumerate() {
            first.entry(row.name.clone()).or_insert(i);
        }
        for (i, row) in out.iter_mut().enumerate() {
            let here = match configured_on.get(row.name.as_str()) {
                Some(r) => row.route.as_ref() == Some(*r),
                None => first.get(&row.name) == Some(&i),
            };
            if here {
                row.dead_letters = dead_of(&row.name);
            }
        }
        if with_removed {
            // Forget the looks at subscribers no longer removed (or gone).
            self.removed_scans().retain(|k, _| removed.contains(k));
            // Dead letters of subscribers whose consumer is gone.
            let mut listed: HashSet<String> = out.iter().map(|s| s.name.clone()).collect();
            for (_, sub, _) in &dead {
                if listed.insert(sub.clone()) {
                    out.push(SubscriberStats {
                        name: sub.clone(),
                        route: None,
                        backlog: 0,
                        oldest_pending_ms: None,
                        dead_letters: dead_of(sub),
                    });
                }
            }
        }
        Ok(out)
    }

    /// A configured subscriber's backlog (what its consumer has not settled)
    /// and the receipt time of the oldest of it.
    async fn configured_backlog(
        &self,
        stream: &Stream,
        route: &str,
        sub: &str,
        info: &Info,
    ) -> Result<(u64, Option<u64>), StoreError> {
        let backlog = info.num_pending + info.num_ack_pending as u64;
        let oldest = self.oldest_if_any(backlog, stream, route, sub, info).await?;
        Ok((backlog, oldest))
    }

    /// The receipt time of the oldest message the consumer has not settled,
    /// when `count` (what it has not settled) says there is one.
    async fn oldest_if_any(
        &self,
        count: u64,
        stream: &Stream,
        route: &str,
        sub: &str,
        info: &Info,
    ) -> Result<Option<u64>, StoreError> {
        if count == 0 {
            return Ok(None);
        }
        self.oldest_unsettled_ms(stream, route, sub, info.ack_floor.stream_sequence)
            .await
    }

    /// A removed subscriber's backlog: what relays had taken for it and not
    /// settled (retries waiting in NATS, deliveries held when it left; see
    /// [`Self::removed_taken`]), and of the messages it was never handed
    /// those for it (events that name it, its replays), looking at
    /// [`REMOVED_SCAN`] of them at most: its consumer also counts every later
    /// event, none of them for it. Within [`RESCAN_AFTER`] of the last full
    /// look only messages stored since are read.
    async fn removed_backlog(
        &self,
        stream: &Stream,
        route: &str,
        sub: &str,
        info: &Info,
    ) -> Result<(u64, Option<u64>), StoreError> {
        let (taken, mut oldest) = self.removed_taken(stream, route, sub, info).await?;
        let mut unread = 0;
        if info.num_pending > 0 {
            let last = stream.get_info().await.map_err(unavailable)?.state.last_sequence;
            let from = info.delivered.stream_sequence + 1;
            let end = last.min(from + REMOVED_SCAN - 1);
            let key = (route.to_string(), sub.to_string());
            let known = self.removed_scans().get(&key).cloned();
            let mut scan = known
                .filter(|k| k.from == from && k.to <= end && k.at.elapsed() < RESCAN_AFTER)
                .unwrap_or(RemovedScan {
                    from,
                    to: from - 1,
                    unread: 0,
                    oldest: None,
                    at: Instant::now(),
                });
            let replays = layout::replay_subject(route, sub);
            for seq in scan.to + 1..=end {
                let m = match stream.direct_get(seq).await {
                    Ok(m) => m,
                    Err(e) if e.kind() == DirectGetErrorKind::NotFound => continue,
                    Err(e) => return Err(unavailable(e)),
                };
                let time = if m.subject.as_str() == replays {
                    self.replay_time_ms(stream, &m).await?
                } else if m.subject.starts_with("hr.ev.") && event::subscribers(&m.headers).iter().any(|s| s == sub) {
                    event::time_ms(&m.headers).unwrap_or_else(|| layout::millis(m.time))
                } else {
                    continue;
                };
                scan.unread += 1;
                scan.oldest = Some(scan.oldest.map_or(time, |o: u64| o.min(time)));
            }
            scan.to = scan.to.max(end);
            unread = scan.unread;
            oldest = oldest.into_iter().chain(scan.oldest).min();
            self.removed_scans().insert(key, scan);
        }
        Ok((taken + unread, oldest))
    }

    /// Of what a removed subscriber's consumer handed out and nobody
    /// settled (NATS's `num_ack_pending`), its own deliveries still pending,
    /// and the oldest one's time. Not every such message is: an event
    /// fanned out after the subscriber left can be handed out by its consumer
    /// all the same (its stopping lane's pull request was still out at NATS
    /// as the reload stopped it, or the message reached that lane as it
    /// stopped and went back), and no relay reads that consumer any more to
    /// settle it; nor is a delivery whose result is final (its message's
    /// acknowledgement was lost: a relay settles it if the subscriber comes
    /// back, unsent). The messages from the consumer's ack floor to the last
    /// one handed out are looked at when that is at most [`REMOVED_SCAN`]
    /// of them; otherwise NATS's count stands.
    async fn removed_taken(
        &self,
        stream: &Stream,
        route: &str,
        sub: &str,
        info: &Info,
    ) -> Result<(u64, Option<u64>), StoreError> {
        let unsettled = info.num_ack_pending as u64;
        if unsettled == 0 {
            return Ok((0, None));
        }
        let (from, to) = (info.ack_floor.stream_sequence + 1, info.delivered.stream_sequence);
        if to.saturating_sub(from) >= REMOVED_SCAN {
            let oldest = self.oldest_if_any(unsettled, stream, route, sub, info).await?;
            return Ok((unsettled, oldest));
        }
        let replays = layout::replay_subject(route, sub);
        let (mut taken, mut oldest) = (0, None::<u64>);
        for seq in from..=to {
            let m = match stream.direct_get(seq).await {
                Ok(m) => m,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => continue,
                Err(e) => return Err(unavailable(e)),
            };
            let (event_seq, time) = if m.subject.as_str() == replays {
                let event_seq = std::str::from_utf8(&m.payload)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                (event_seq, self.replay_time_ms(stream, &m).await?)
            } else if m.subject.starts_with("hr.ev.") && event::subscribers(&m.headers).iter().any(|s| s == sub) {
                let time = event::time_ms(&m.headers).unwrap_or_else(|| layout::millis(m.time));
                (seq, time)
            } else {
                continue;
            };
            let key = layout::result_key(route, event_seq, sub);
            if let Some((row, _)) = self.shared.result(&key).await? {
                if row.state.is_final() {
                    continue;
                }
            }
            taken += 1;
            oldest = Some(oldest.map_or(time, |o| o.min(time)));
        }
        // Settled since NATS counted: not more than it says.
        Ok((taken.min(unsettled), oldest))
    }

    fn removed_scans(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, String), RemovedScan>> {
        self.shared.removed_scans.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Receipt time of the oldest message `sub`'s consumer has not settled:
    /// the first of the consumer's subjects (the route's events, `sub`'s
    /// replays) after its ack floor — a message waiting for a retry (NAKed
    /// with a delay) included. The message right after the floor may be
    /// another subscriber's replay. A replay counts from its event's time,
    /// as on one host.
    async fn oldest_unsettled_ms(
        &self,
        stream: &Stream,
        route: &str,
        sub: &str,
        floor: u64,
    ) -> Result<Option<u64>, StoreError> {
        let mut first: Option<StreamMessage> = None;
        for subject in [layout::event_filter(route), layout::replay_subject(route, sub)] {
            match stream.direct_get_next_for_subject(subject, Some(floor + 1)).await {
                Ok(m) if first.as_ref().is_none_or(|f| m.sequence < f.sequence) => first = Some(m),
                Ok(_) => {}
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        let Some(m) = first else {
            return Ok(None);
        };
        if !m.subject.starts_with("hr.rp.") {
            return Ok(Some(
                event::time_ms(&m.headers).unwrap_or_else(|| layout::millis(m.time)),
            ));
        }
        Ok(Some(self.replay_time_ms(stream, &m).await?))
    }

    /// A replay message's time: its event's (the payload names it), as on
    /// one host; its own when the event expired.
    async fn replay_time_ms(&self, stream: &Stream, m: &StreamMessage) -> Result<u64, StoreError> {
        let seq: u64 = std::str::from_utf8(&m.payload)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        match stream.direct_get(seq).await {
            Ok(e) => Ok(event::time_ms(&e.headers).unwrap_or_else(|| layout::millis(e.time))),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(layout::millis(m.time)),
            Err(e) => Err(unavailable(e)),
        }
    }
}
