//! Appends whose caller is gone: ingest answered `503` when the disk did
//! not confirm the event within its limit (or the provider's connection
//! closed first), and the provider sends it again. Such an event is still
//! written when its turn comes: after a stall longer than the provider's
//! retries it is the only copy there is. But while a slow disk falls behind,
//! the writer's queue would keep every one of them with its body, growing
//! with the overload's length instead of with the requests open. Past
//! [`PRUNE_ABOVE`] queued events, one whose caller left is dropped when an
//! event with the same dedupe key is queued behind it (the provider's retry:
//! that one is written, nothing is lost), and then the oldest of them while
//! their bodies take more than [`MAX_BYTES`] (each lost unless its provider
//! sends it again: logged at `error`).

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::writer_msg::Reply;
use crate::store::{Accepted, NewEvent};

pub(super) type Append = (Box<NewEvent>, Reply<Accepted>);

/// Queued events past which those whose caller left are pruned.
pub(super) const PRUNE_ABOVE: usize = 2048;
/// Bytes of bodies the queued events whose caller left may hold at most.
pub(super) const MAX_BYTES: usize = 256 << 20;
/// How often dropped events are logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct Abandoned {
    /// Dropped for a newer copy, and dropped for room, since the last log line.
    replaced: u64,
    lost: u64,
    last_log: Option<Instant>,
    /// The queue's length past which the next pruning runs: twice what the
    /// last one left (each is a pass over the queue).
    next_at: usize,
}

impl Abandoned {
    /// Prune the queue of events whose caller left, if it is long.
    pub fn prune(&mut self, appends: &mut VecDeque<Append>) {
        if appends.len() <= self.next_at.max(PRUNE_ABOVE) {
            return;
        }
        let before = appends.len();
        // From the newest back: an abandoned event with a copy behind it goes.
        let keep: Vec<bool> = {
            let mut later: HashSet<(&str, [u8; 32])> = HashSet::new();
            let mut keep = vec![true; appends.len()];
            for (i, (ev, reply)) in appends.iter().enumerate().rev() {
                let newer = !later.insert((ev.meta.route.as_str(), ev.dedupe_hash));
                keep[i] = !(newer && reply.is_closed());
            }
            keep
        };
        let mut i = 0;
        appends.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        self.replaced += (before - appends.len()) as u64;
        // Then the oldest abandoned ones, while they hold too much.
        let mut held: usize = appends
            .iter()
            .filter(|(_, r)| r.is_closed())
            .map(|(ev, _)| ev.body.len())
            .sum();
        if held > MAX_BYTES {
            let before = appends.len();
            appends.retain(|(ev, r)| {
                if held > MAX_BYTES && r.is_closed() {
                    held -= ev.body.len();
                    false
                } else {
                    true
                }
            });
            self.lost += (before - appends.len()) as u64;
        }
        self.next_at = appends.len() * 2;
        self.log();
    }

    fn log(&mut self) {
        if self.replaced + self.lost == 0 || self.last_log.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return;
        }
        if self.lost > 0 {
            tracing::error!(
                events = self.lost,
                held_mib = MAX_BYTES >> 20,
                "the store is slower than the callbacks coming in: callbacks answered 503 and still queued for the \
                 disk were dropped to bound memory; each is stored only if its provider sends it again"
            );
        }
        if self.replaced > 0 {
            tracing::warn!(
                events = self.replaced,
                "the store is slower than the callbacks coming in: queued callbacks answered 503 were dropped \
                 for the provider's retry queued behind them"
            );
        }
        (self.replaced, self.lost) = (0, 0);
        self.last_log = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventMeta;
    use tokio::sync::oneshot;

    fn append(
        hash: u8,
        body: usize,
        gone: bool,
    ) -> (
        Append,
        Option<oneshot::Receiver<Result<Accepted, crate::store::StoreError>>>,
    ) {
        let (tx, rx) = oneshot::channel();
        let ev = NewEvent {
            meta: EventMeta {
                route: "t".into(),
                received_ms: 1,
                source: None,
                content_type: None,
                headers: Vec::new(),
                subscribers: vec!["s".into()],
                dedupe_fallback: false,
                origin: crate::store::Origin::Callback,
            },
            dedupe_hash: [hash; 32],
            body: vec![0u8; body].into(),
            media: Vec::new(),
            media_after_verify: false,
            task: None,
        };
        ((Box::new(ev), tx), (!gone).then_some(rx))
    }

    /// A long queue loses the abandoned events that have a copy behind
    /// them, then the oldest abandoned ones past the byte bound; an event
    /// whose caller waits is never dropped.
    #[test]
    fn a_long_queue_drops_abandoned_events_with_a_retry_behind_then_the_oldest_past_the_bound() {
        let mut q = VecDeque::new();
        let mut waiting = Vec::new();
        let mut push = |q: &mut VecDeque<Append>, hash: u8, body: usize, gone: bool| {
            let (a, rx) = append(hash, body, gone);
            q.push_back(a);
            waiting.extend(rx);
        };
        // Abandoned, each retried by a live copy behind it: all four go.
        for h in 0..4 {
            push(&mut q, h, 10, true);
        }
        // Abandoned and alone, 100 MiB each: the oldest two go for room.
        for h in 10..14 {
            push(&mut q, h, 100 << 20, true);
        }
        // Live, large: kept whatever they hold.
        for h in 20..22 {
            push(&mut q, h, 300 << 20, false);
        }
        for h in 0..4 {
            push(&mut q, h, 10, false);
        }
        while q.len() <= PRUNE_ABOVE {
            push(&mut q, 99, 0, false);
        }
        Abandoned::default().prune(&mut q);
        let left: Vec<u8> = q.iter().map(|(e, _)| e.dedupe_hash[0]).filter(|h| *h != 99).collect();
        assert_eq!(left, [12, 13, 20, 21, 0, 1, 2, 3]);
        drop(waiting);
    }
}
