//! Appends whose caller is gone: ingest answered `503` when the disk did
//! not confirm the event within its limit (or the provider's connection
//! closed first), and the provider sends it again. Such an event is still
//! written when its turn comes: after a stall longer than the provider's
//! retries it is the only copy there is. But while a slow disk falls behind,
//! the writer's queue would keep every one of them with its body, growing
//! with the overload's length instead of with the requests open. While more
//! than [`PRUNE_ABOVE`] events are queued (looked at every [`PRUNE_EVERY`]),
//! one whose caller left is dropped when the same callback (same route,
//! dedupe key and body: the provider's retry) is queued behind it — that one
//! is written, nothing is lost — and then the oldest of them while their
//! bodies take more than [`MAX_BYTES`] (each lost unless its provider sends
//! it again: logged at `error`).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::writer_msg::Append;

/// Queued events past which those whose caller left are pruned.
pub(super) const PRUNE_ABOVE: usize = 2048;
/// How often a long queue is looked at (a pass over it).
pub(super) const PRUNE_EVERY: Duration = Duration::from_millis(100);
/// Bytes of bodies the queued events whose caller left may hold at most.
pub(super) const MAX_BYTES: usize = 256 << 20;
/// How often dropped events are logged at most while the queue stays long.
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct Abandoned {
    /// Dropped for a copy behind them, and dropped for room, not logged yet.
    replaced: u64,
    lost: u64,
    last_log: Option<Instant>,
    last_prune: Option<Instant>,
}

impl Abandoned {
    /// Prune the queue of events whose caller left, if it is long (and was
    /// not looked at in the last [`PRUNE_EVERY`]).
    pub fn prune(&mut self, appends: &mut VecDeque<Append>) {
        if appends.len() <= PRUNE_ABOVE {
            self.log(true);
            return;
        }
        if self.last_prune.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
            return;
        }
        self.last_prune = Some(Instant::now());
        // One reading of who left, for both passes.
        let gone: Vec<bool> = appends.iter().map(|(_, reply)| reply.is_closed()).collect();
        let mut keep = vec![true; appends.len()];
        {
            // From the newest back: an abandoned event whose very copy is
            // queued behind it goes.
            let mut later: HashMap<(&str, [u8; 32]), Vec<&Bytes>> = HashMap::new();
            for (i, (ev, _)) in appends.iter().enumerate().rev() {
                let copies = later.entry((ev.meta.route.as_str(), ev.dedupe_hash)).or_default();
                if gone[i] && copies.iter().any(|b| **b == ev.body) {
                    keep[i] = false;
                    self.replaced += 1;
                } else {
                    copies.push(&ev.body);
                }
            }
        }
        // Then the oldest abandoned ones, while they hold too much.
        let abandoned = |i: usize, keep: &[bool]| keep[i] && gone[i];
        let mut held: usize = (0..appends.len())
            .filter(|&i| abandoned(i, &keep))
            .map(|i| appends[i].0.body.len())
            .sum();
        for i in 0..appends.len() {
            if held <= MAX_BYTES {
                break;
            }
            if abandoned(i, &keep) {
                keep[i] = false;
                held -= appends[i].0.body.len();
                self.lost += 1;
            }
        }
        let mut i = 0;
        appends.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        self.log(false);
    }

    /// Log what was dropped: at most every [`LOG_EVERY`] while the queue is
    /// long, and what is left once it is short again (`settled`).
    fn log(&mut self, settled: bool) {
        if self.replaced + self.lost == 0 || !(settled || self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY)) {
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
                 for the provider's retry of the same callback queued behind them"
            );
        }
        (self.replaced, self.lost) = (0, 0);
        self.last_log = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Accepted, EventMeta, NewEvent};
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
        // Abandoned, with the same key but another body behind it (a
        // forgery on a `verify = "fetch"` route, a result recovered by
        // polling): kept.
        push(&mut q, 5, 10, true);
        // Live, large: kept whatever they hold.
        for h in 20..22 {
            push(&mut q, h, 300 << 20, false);
        }
        for h in 0..4 {
            push(&mut q, h, 10, false);
        }
        push(&mut q, 5, 11, false);
        while q.len() <= PRUNE_ABOVE {
            push(&mut q, 99, 0, false);
        }
        Abandoned::default().prune(&mut q);
        let left: Vec<u8> = q.iter().map(|(e, _)| e.dedupe_hash[0]).filter(|h| *h != 99).collect();
        assert_eq!(left, [12, 13, 5, 20, 21, 0, 1, 2, 3, 5]);
        drop(waiting);
    }
}
