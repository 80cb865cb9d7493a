//! The archiver's view of its work in the sled backend: the `A` index (media
//! URLs due for a try, oldest due first), minus what it has handed out and
//! not yet seen recorded. Reads go straight to the tree; results go through
//! the writer ([`super::media`]).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::Notify;

use super::group_commit::Msg;
use super::keys;
use super::media_codec;
use super::Inner;
use crate::store::{MediaOutcome, MediaState, MediaTicket, MediaWork, StoreError};

/// The sled backend's handle on one piece of media work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SledMediaTicket {
    pub(super) hash: [u8; 16],
    /// The due time of the `A` row it was taken from.
    pub(super) due_ms: u64,
}

pub struct MediaCursor {
    inner: Arc<Inner>,
    /// URLs handed out and not yet done.
    in_flight: HashSet<[u8; 16]>,
    /// Woken by the writer when media work is added.
    signal: Arc<Notify>,
}

impl MediaCursor {
    pub(super) fn open(inner: Arc<Inner>) -> MediaCursor {
        MediaCursor {
            signal: inner.media_signal.clone(),
            inner,
            in_flight: HashSet::new(),
        }
    }

    pub fn signal(&self) -> Arc<Notify> {
        self.signal.clone()
    }

    /// Up to `max` URLs due at `now_ms`, oldest due first, none handed out twice.
    /// A read finding the store's files damaged fails the store.
    pub fn take(&mut self, max: usize, now_ms: u64) -> Result<Vec<MediaWork>, StoreError> {
        let taken = self.take_due(max, now_ms);
        self.inner.check_read(taken)
    }

    fn take_due(&mut self, max: usize, now_ms: u64) -> Result<Vec<MediaWork>, StoreError> {
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        let reg = super::read_lock(&self.inner.registry);
        for item in self.inner.tree.scan_prefix([keys::A]).keys() {
            let k = item?;
            let Some((due_ms, hash)) = keys::parse_timed(&k) else {
                continue;
            };
            if due_ms > now_ms || out.len() >= max {
                break;
            }
            if self.in_flight.contains(&hash) {
                continue;
            }
            let Some(row) = self
                .inner
                .tree
                .get(keys::media(&hash))?
                .and_then(|v| media_codec::decode_media(&v))
            else {
                continue;
            };
            if !matches!(row.state, MediaState::Pending { .. }) {
                continue;
            }
            self.in_flight.insert(hash);
            out.push(MediaWork {
                url: row.url,
                route: reg.route_name(row.route).unwrap_or_default().to_string(),
                attempts: row.attempts,
                step: row.step,
                ticket: MediaTicket::Sled(SledMediaTicket { hash, due_ms }),
            });
        }
        Ok(out)
    }

    /// The work behind `ticket` was recorded (or abandoned): let it go.
    pub fn done(&mut self, ticket: &SledMediaTicket) {
        self.in_flight.remove(&ticket.hash);
    }

    /// When the earliest waiting work not handed out is due, if any.
    pub fn next_due(&self) -> Option<u64> {
        for item in self.inner.tree.scan_prefix([keys::A]).keys() {
            let Ok(k) = item else { return None };
            if let Some((due, hash)) = keys::parse_timed(&k) {
                if !self.in_flight.contains(&hash) {
                    return Some(due);
                }
            }
        }
        None
    }
}

impl super::SledStore {
    pub fn media_source(&self) -> MediaCursor {
        MediaCursor::open(self.inner.clone())
    }

    /// Record an archive try through the writer ([`super::media`]).
    pub async fn record_media(&self, ticket: &SledMediaTicket, outcome: MediaOutcome) -> Result<(), StoreError> {
        let rec = super::media::MediaRecord {
            ticket: ticket.clone(),
            outcome,
            now_ms: crate::clock::now_ms(),
        };
        self.call(|reply| Msg::MediaRecord(Box::new(rec), reply)).await
    }

    /// Write the media work of a callback verified after it was stored.
    pub async fn add_verified_media(
        &self,
        id: crate::store::EventId,
        route: &str,
        urls: Vec<String>,
    ) -> Result<(), StoreError> {
        let v = super::media::VerifiedMedia {
            id,
            route: route.to_string(),
            urls,
            now_ms: crate::clock::now_ms(),
        };
        self.call(|reply| Msg::VerifiedMedia(Box::new(v), reply)).await
    }

    /// An operator's retry of an event's failed media URLs: how many are
    /// due again (None: the store has no media rows for the event).
    pub async fn retry_media(&self, id: crate::store::EventId) -> Result<Option<usize>, StoreError> {
        self.call(|reply| Msg::RetryMedia { id, reply }).await
    }

    /// Media URLs waiting for a try.
    pub fn media_queue(&self) -> Option<u64> {
        Some(self.inner.media_queue.load(Ordering::Relaxed))
    }
}
