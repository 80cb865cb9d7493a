//! The archiver's work in cluster mode: the `archiver` consumer of the media
//! work queue, shared by every relay's archiver (a URL is worked on by one
//! relay at a time; a relay that dies hands its URLs over after `takeover`).
//! A retry is the same message, NAKed with the media schedule's delay.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::message::Acker;
use async_nats::jetstream::AckKind;
use tokio::sync::Notify;

use super::follow::{Follow, Follower, Held, Received};
use super::media::{MediaRow, RowState, WorkMessage};
use super::{NatsStore, Shared};
use crate::store::{MediaOutcome, MediaTicket, MediaWork, StoreError};

/// A URL's work taken by this relay.
#[derive(Clone)]
pub struct NatsMediaTicket {
    hash: String,
    seq: u64,
    /// The row as it was when the work was taken, and its revision: the
    /// outcome is written over that row only.
    row: MediaRow,
    revision: u64,
    acker: Arc<Acker>,
    held: Held,
}

impl std::fmt::Debug for NatsMediaTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NatsMediaTicket({}.{})", self.hash, self.seq)
    }
}
impl PartialEq for NatsMediaTicket {
    fn eq(&self, o: &Self) -> bool {
        self.seq == o.seq
    }
}
impl Eq for NatsMediaTicket {}
impl Hash for NatsMediaTicket {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.seq.hash(h)
    }
}

pub struct NatsMediaCursor {
    shared: Arc<Shared>,
    follower: Follower,
}

impl NatsMediaCursor {
    pub(super) fn open(shared: Arc<Shared>) -> NatsMediaCursor {
        let follower = Follower::start(shared.clone(), Follow::Archiver, shared.media_depth.clone());
        NatsMediaCursor { shared, follower }
    }

    pub fn signal(&self) -> Arc<Notify> {
        self.follower.signal.clone()
    }

    /// Waiting work lives in NATS and the prefetch wakes the archiver; a
    /// look every second keeps its depth current.
    pub fn next_due(&self) -> Option<u64> {
        Some(crate::clock::now_ms() + 1000)
    }

    pub async fn take(&mut self, max: usize, now_ms: u64) -> Result<Vec<MediaWork>, StoreError> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(r) = self.follower.next() else { break };
            let seq = r.seq;
            match self.work(r, now_ms).await {
                Ok(Some(w)) => out.push(w),
                Ok(None) => {}
                Err(e) => {
                    // Comes again after `takeover`, here or elsewhere.
                    self.follower.release(seq);
                    if out.is_empty() {
                        return Err(e);
                    }
                    // What was taken before is worked on, not left held.
                    tracing::warn!(error = %e, "cannot take more media work now; working on what was taken");
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The message as work, or None when it is settled here: a second
    /// message for a URL another one is in charge of, a URL already final,
    /// or a retry another relay scheduled for later. A message retrying the
    /// failure a URL's row still records asks for it again
    /// ([`super::media_retry`]).
    async fn work(&self, r: Received, now_ms: u64) -> Result<Option<MediaWork>, StoreError> {
        let Some(hash) = r.message.subject.as_str().strip_prefix("hr.md.").map(str::to_string) else {
            return self.settle(r, AckKind::Term).await;
        };
        let retry = serde_json::from_slice::<WorkMessage>(&r.message.payload).ok();
        let retry_of = retry.as_ref().and_then(|m| m.retry_of);
        // `written`: the row was written here just now (adopted or
        // created), which is this take's own revision already.
        let (mut row, mut revision, written) = match self.shared.media_row(&hash).await? {
            // A retry taken before its row names it: the row is made pending here.
            Some((row, revision)) if row.work != r.seq && super::media_retry::is_retry(&row, retry_of) => {
                let route = retry.as_ref().map(|m| m.route.as_str());
                match self.shared.adopt_retry(&hash, row, revision, r.seq, route).await? {
                    Some((row, revision)) => (row, revision, true),
                    // Changed meanwhile: looked at again.
                    None => return self.settle(r, AckKind::Nak(None)).await,
                }
            }
            Some((row, revision)) => (row, revision, false),
            None => {
                // Its ingest stopped between the work and the row: write the row.
                let Ok(msg) = serde_json::from_slice::<WorkMessage>(&r.message.payload) else {
                    return self.settle(r, AckKind::Term).await;
                };
                let row = MediaRow::new(msg.url, msg.route, r.seq, now_ms);
                match self.shared.create_media_row(&hash, &row).await? {
                    Some(revision) => (row, revision, true),
                    None => return self.settle(r, AckKind::Nak(None)).await,
                }
            }
        };
        if row.work != r.seq || row.is_final() {
            // This work's try recorded its URL row but not its file row
            // (NATS failed in between, the message was left unsettled): the
            // file row now, or the stored file is never served.
            if row.work == r.seq {
                self.shared.put_file_row(&row.state).await?;
            }
            return self.settle(r, AckKind::Ack).await;
        }
        if let RowState::Pending { due_ms } = row.state {
            if due_ms > now_ms + super::EARLY_MS {
                let delay = Duration::from_millis(due_ms - now_ms);
                return self.settle(r, AckKind::Nak(Some(delay))).await;
            }
        }
        // The take written: an earlier take of this work (a relay that lost
        // its hold) no longer matches the row's revision.
        if !written {
            row.taken += 1;
            let Some(taken) = self.shared.update_media_row(&hash, &row, revision).await? else {
                // Changed meanwhile: looked at again.
                return self.settle(r, AckKind::Nak(None)).await;
            };
            revision = taken;
        }
        Ok(Some(MediaWork {
            url: row.url.clone(),
            route: row.route.clone(),
            attempts: row.attempts,
            step: row.step,
            ticket: MediaTicket::Nats(Box::new(NatsMediaTicket {
                hash,
                seq: r.seq,
                row,
                revision,
                acker: r.acker,
                held: self.follower.held.clone(),
            })),
        }))
    }

    async fn settle(&self, r: Received, kind: AckKind) -> Result<Option<MediaWork>, StoreError> {
        self.follower.release(r.seq);
        let _ = r.acker.ack_with(kind).await;
        Ok(None)
    }

    /// The work was recorded or abandoned: stop holding it (abandoned work
    /// comes again after `takeover`).
    pub fn done(&mut self, ticket: &NatsMediaTicket) {
        self.follower.release(ticket.seq);
    }
}

impl NatsStore {
    /// A file stored by a try that was dropped, released to media
    /// retention once the URL's row is final and names another file. Not
    /// while the row is pending: the relay that took the work over most
    /// likely fetches the same bytes, and retention elsewhere could delete
    /// them before that relay records them (a file left so, with other
    /// bytes, stays until removed by hand).
    async fn release_unnamed(&self, hash: &str, sha256: &str) {
        let released = match self.shared.media_row(hash).await {
            Ok(Some((now, _))) if now.is_final() && now.sha256() != Some(sha256) => {
                self.shared.release_file(sha256).await
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = released {
            tracing::warn!(url_hash = %hash, error = %e, "a file stored by a dropped media try could not be released to media retention; it stays until removed by hand");
        }
    }

    pub fn media_source(&self) -> NatsMediaCursor {
        NatsMediaCursor::open(self.shared.clone())
    }

    /// Record an archive try: the row first, then settle the work (done:
    /// acknowledged; a retry: NAKed with its delay). A lost acknowledgement
    /// makes the work come again, and whoever gets it finds the row final.
    /// The row is written only over the one its take wrote: one changed
    /// since means this relay lost its hold (stalled past `takeover`) and
    /// another relay took the work, so this try is dropped and the work
    /// left to that relay; a file it stored is released to media retention
    /// once the row names another ([`Self::release_unnamed`]).
    pub async fn record_media(&self, t: &NatsMediaTicket, outcome: MediaOutcome) -> Result<(), StoreError> {
        let now = crate::clock::now_ms();
        let mut row = t.row.clone();
        row.at_ms = now;
        // A wait (the media disk is low) was no try: neither counted nor a step.
        let tried = !matches!(outcome, MediaOutcome::Wait { .. });
        if tried {
            row.attempts += 1;
        }
        let settle = match outcome {
            MediaOutcome::Retry { due_ms, error } | MediaOutcome::Wait { due_ms, error } => {
                if tried {
                    row.step += 1;
                }
                row.last_error = Some(error);
                row.state = RowState::Pending { due_ms };
                AckKind::Nak(Some(Duration::from_millis(due_ms.saturating_sub(now))))
            }
            MediaOutcome::Stored(f) => {
                row.last_error = None;
                row.state = RowState::Stored {
                    location: f.location,
                    sha256: f.sha256,
                    size: f.size,
                    content_type: f.content_type,
                };
                AckKind::Ack
            }
            MediaOutcome::Failed { error } => {
                row.last_error = Some(error.clone());
                row.state = RowState::Failed { error };
                AckKind::Ack
            }
        };
        let written = match self.shared.update_media_row(&t.hash, &row, t.revision).await {
            Ok(Some(_)) => self.shared.put_file_row(&row.state).await,
            Ok(None) => {
                super::follow::release(&t.held, t.seq);
                tracing::info!(url_hash = %t.hash, "media try dropped: another relay took this URL's work after takeover and its row changed since");
                if let RowState::Stored { sha256, .. } = &row.state {
                    self.release_unnamed(&t.hash, sha256).await;
                }
                return Ok(());
            }
            Err(e) => Err(e),
        };
        if written.is_err() {
            super::follow::release(&t.held, t.seq);
            return written;
        }
        if let Err(e) = t.acker.double_ack_with(settle).await {
            // The row is written: whoever gets the work again settles it.
            tracing::warn!(url_hash = %t.hash, error = %e, "media work recorded but not settled in NATS; it comes again after the takeover time and is settled then");
        }
        Ok(())
    }
}
