//! Appends whose caller is gone are not written. Ingest answers `503` when
//! the disk does not confirm an event within its limit (or the provider's
//! connection closes first) and the provider sends it again; written late
//! anyway, such events only made that retry a duplicate — and while a slow
//! disk fell behind, the writer's queue kept every one of them with its
//! body, growing with the length of the overload instead of with the
//! requests open. The queue is pruned of them once it is longer than a few
//! batches, and a batch leaves them out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::writer_msg::Reply;
use crate::store::{Accepted, NewEvent};

pub(super) type Append = (Box<NewEvent>, Reply<Accepted>);

/// Queued events past which those whose caller left are dropped at once.
const PRUNE_ABOVE: usize = 2048;
/// How often the count of events not written is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct Abandoned {
    /// Not written since the last log line.
    unlogged: u64,
    last_log: Option<Instant>,
}

impl Abandoned {
    /// Drop the queued events whose caller left, if the queue is long.
    pub fn prune(&mut self, appends: &mut VecDeque<Append>) {
        if appends.len() > PRUNE_ABOVE {
            let before = appends.len();
            appends.retain(|(_, reply)| !reply.is_closed());
            self.count(before - appends.len());
        }
    }

    /// The next batch: up to `max` queued events, those whose caller left
    /// left out.
    pub fn batch(&mut self, appends: &mut VecDeque<Append>, max: usize) -> Vec<Append> {
        let taken = appends.len().min(max);
        let batch: Vec<Append> = appends.drain(..taken).filter(|(_, r)| !r.is_closed()).collect();
        self.count(taken - batch.len());
        batch
    }

    fn count(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.unlogged += n as u64;
        let now = Instant::now();
        if self.last_log.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
            tracing::warn!(
                events = self.unlogged,
                "callbacks answered 503 before the disk confirmed them (or whose connection closed) are not written: \
                 their providers send them again; the store is slower than the callbacks coming in"
            );
            self.unlogged = 0;
            self.last_log = Some(now);
        }
    }
}
