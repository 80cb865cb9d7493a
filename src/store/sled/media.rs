//! Media archive work on the writer thread: the rows an event's media URLs
//! add in the event's own batch, an archive try's result, and waking the
//! `after_archive` deliveries of an event once all its media is done.
//!
//! One `U` row per URL (whatever the number of callbacks naming it: the URL
//! is fetched once), an `A` row while it waits for a try, `T` and `H` rows
//! once it is final. A delivery parked by [`Outcome::Defer`] sits in its
//! subscriber's due index as [`DeliveryState::AwaitingMedia`]; when the last
//! URL of its event becomes final, the same batch moves it to "due now" and
//! the lane is woken after the commit. A deferral recorded after that moment
//! is due at once ([`Writer::park`] looks in the batch), so no wake
//! is lost between a lane's check and its record.
//!
//! [`Outcome::Defer`]: crate::store::Outcome::Defer

use std::sync::atomic::Ordering;

use super::codec::ResultRow;
use super::group_commit::{Batch, SledTicket, Writer};
use super::keys;
use super::media_codec::{self, MediaRow, MAX_WAITERS};
use super::media_source::SledMediaTicket;
use super::Inner;
use crate::store::{DeliveryState, EventId, MediaOutcome, MediaState, StoreError};

/// An archive try's result to record.
pub(super) struct MediaRecord {
    pub ticket: SledMediaTicket,
    pub outcome: MediaOutcome,
    pub now_ms: u64,
}

/// The writer's media bookkeeping, kept across batches.
#[derive(Default)]
pub(super) struct MediaBook {
    /// `A` rows (media work waiting), and whether this batch changed the count.
    queue: u64,
    queue_dirty: bool,
    /// Subscribers to wake once this batch is written (media done for their events).
    woken: Vec<u32>,
    /// New media work was added in this batch: wake the archiver once written.
    news: bool,
}

impl MediaBook {
    /// The count as stored, published for the archiver and the metrics.
    pub(super) fn load(inner: &Inner, tree: &sled::Tree) -> Result<MediaBook, StoreError> {
        let queue = tree.get(keys::MEDIA_COUNT)?.map_or(0, |v| keys::u64_value(&v));
        inner.media_queue.store(queue, Ordering::Relaxed);
        Ok(MediaBook {
            queue,
            ..MediaBook::default()
        })
    }

    /// The count row, when this batch changed it.
    pub(super) fn write_count(&self, b: &mut Batch<'_>) {
        if self.queue_dirty {
            b.put(keys::MEDIA_COUNT.to_vec(), self.queue.to_be_bytes().to_vec());
        }
    }

    /// Make the written count visible.
    pub(super) fn publish(&mut self, inner: &Inner) {
        if std::mem::take(&mut self.queue_dirty) {
            inner.media_queue.store(self.queue, Ordering::Relaxed);
        }
    }

    /// The batch was not written: nobody is woken for it.
    pub(super) fn forget(&mut self) {
        self.woken.clear();
        self.news = false;
    }
}

/// The media work of a callback verified after it was stored.
pub(in crate::store) struct VerifiedMedia {
    pub id: EventId,
    pub route: String,
    pub urls: Vec<String>,
    pub now_ms: u64,
}

fn load(b: &Batch<'_>, hash: &[u8; 16]) -> Result<Option<MediaRow>, StoreError> {
    Ok(b.get(&keys::media(hash))?.and_then(|v| media_codec::decode_media(&v)))
}

impl Writer {
    pub(super) fn put_media_due(&mut self, b: &mut Batch<'_>, due_ms: u64, hash: &[u8; 16]) -> Result<(), StoreError> {
        let k = keys::media_due(due_ms, hash);
        if b.get(&k)?.is_none() {
            self.media.queue += 1;
            self.media.queue_dirty = true;
        }
        b.put(k, Vec::new());
        self.media.news = true;
        Ok(())
    }

    pub(super) fn del_media_due(&mut self, b: &mut Batch<'_>, due_ms: u64, hash: &[u8; 16]) -> Result<(), StoreError> {
        let k = keys::media_due(due_ms, hash);
        if b.get(&k)?.is_some() {
            self.media.queue = self.media.queue.saturating_sub(1);
            self.media.queue_dirty = true;
        }
        b.del(k);
        Ok(())
    }

    /// The media rows of a callback verified after it was stored, as
    /// [`Self::add_event_media`] writes them at ingest; nothing when the
    /// event already has them (verified again after a restart). The `E` row
    /// ingest left naming no URL (the deferral) is replaced.
    pub(super) fn add_verified_media(&mut self, b: &mut Batch<'_>, v: &VerifiedMedia) -> Result<(), StoreError> {
        let written = b
            .get(&keys::event_media(v.id))?
            .is_some_and(|row| media_codec::decode_event_media(&row).is_none_or(|(_, h)| !h.is_empty()));
        if v.urls.is_empty() || written {
            return Ok(());
        }
        let (route, _) = self.numbers(b, &v.route, &[]);
        self.add_event_media(b, route, v.id, &v.urls, v.now_ms)
    }

    /// The media rows of a new event (called before its log row is added, so
    /// a failed read leaves nothing of the event in the batch). A URL seen
    /// for the first time gets its row and is due now; a pending one gets the
    /// event as a waiter; a stored one starts its retention again; a failed
    /// one is tried again from the start (a new callback is new hope).
    pub(super) fn add_event_media(
        &mut self,
        b: &mut Batch<'_>,
        route: u32,
        id: EventId,
        urls: &[String],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut hashes: Vec<[u8; 16]> = Vec::with_capacity(urls.len());
        let mut rows = Vec::with_capacity(urls.len());
        for url in urls {
            let hash = keys::url_hash(url);
            if hashes.contains(&hash) {
                continue;
            }
            hashes.push(hash);
            rows.push((hash, url, load(b, &hash)?));
        }
        b.put(keys::event_media(id), media_codec::encode_event_media(route, &hashes));
        for (hash, url, row) in rows {
            let row = match row {
                None => {
                    self.put_media_due(b, now_ms, &hash)?;
                    MediaRow {
                        url: url.clone(),
                        route,
                        state: MediaState::Pending { due_ms: now_ms },
                        attempts: 0,
                        step: 0,
                        at_ms: now_ms,
                        last_error: None,
                        waiters: vec![id],
                    }
                }
                Some(mut row) => {
                    match row.state {
                        MediaState::Pending { .. } => {
                            if row.waiters.len() < MAX_WAITERS {
                                row.waiters.push(id);
                            }
                        }
                        MediaState::Stored(_) => {
                            b.del(keys::media_final(row.at_ms, &hash));
                            row.at_ms = now_ms;
                            b.put(keys::media_final(now_ms, &hash), Vec::new());
                        }
                        MediaState::Failed { .. } => self.requeue_failed(b, &hash, &mut row, id, route, now_ms)?,
                    }
                    row
                }
            };
            b.put(keys::media(&hash), media_codec::encode_media(&row));
        }
        Ok(())
    }

    /// A failed URL due again now, from the start of the retry schedule
    /// (its tries so far still counted), with `id` waiting for it, tried as
    /// a URL of `id`'s route: that route's provider key refreshes it if it
    /// expired (the route that named it first may have none, or be gone).
    fn requeue_failed(
        &mut self,
        b: &mut Batch<'_>,
        hash: &[u8; 16],
        row: &mut MediaRow,
        id: EventId,
        route: u32,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        row.route = route;
        b.del(keys::media_final(row.at_ms, hash));
        self.put_media_due(b, now_ms, hash)?;
        row.state = MediaState::Pending { due_ms: now_ms };
        row.step = 0;
        row.at_ms = now_ms;
        row.waiters = vec![id];
        Ok(())
    }

    /// An operator's retry of an event's failed media URLs: each is due
    /// again now as if a new callback had named it; how many. None when the
    /// store has no media rows for the event (it named none, or its media
    /// waits for its verification, or retention removed it).
    pub(super) fn retry_media(&mut self, id: EventId, now_ms: u64) -> Result<Option<usize>, StoreError> {
        let tree = self.inner.tree.clone();
        let mut b = Batch::new(&tree);
        // An `E` row naming no URL: the media waits for the callback's
        // verification (none of it is the archive's yet).
        let Some((route, hashes)) = b
            .get(&keys::event_media(id))?
            .and_then(|v| media_codec::decode_event_media(&v))
            .filter(|(_, h)| !h.is_empty())
        else {
            return Ok(None);
        };
        let mut retried = 0;
        for hash in &hashes {
            let Some(mut row) = load(&b, hash)? else {
                continue;
            };
            if matches!(row.state, MediaState::Failed { .. }) {
                self.requeue_failed(&mut b, hash, &mut row, id, route, now_ms)?;
                b.put(keys::media(hash), media_codec::encode_media(&row));
                retried += 1;
            }
        }
        if retried > 0 {
            self.commit(b)?;
        }
        Ok(Some(retried))
    }

    /// Record an archive try: the URL's new state, its due row, its final
    /// rows, and the deliveries it releases.
    pub(super) fn add_media_record(&mut self, b: &mut Batch<'_>, rec: &MediaRecord) -> Result<(), StoreError> {
        let t = &rec.ticket;
        self.del_media_due(b, t.due_ms, &t.hash)?;
        let Some(mut row) = load(b, &t.hash)? else {
            return Ok(());
        };
        if row.state.is_final() {
            // Already recorded (a try handed out twice): keep the first result.
            return Ok(());
        }
        if let MediaState::Pending { due_ms } = row.state {
            if due_ms != t.due_ms {
                self.del_media_due(b, due_ms, &t.hash)?;
            }
        }
        row.at_ms = rec.now_ms;
        // A wait (the media disk is low) was no try: neither counted nor a step.
        let tried = !matches!(rec.outcome, MediaOutcome::Wait { .. });
        if tried {
            row.attempts += 1;
        }
        match &rec.outcome {
            MediaOutcome::Retry { due_ms, error } | MediaOutcome::Wait { due_ms, error } => {
                if tried {
                    row.step += 1;
                }
                row.last_error = Some(error.clone());
                row.state = MediaState::Pending { due_ms: *due_ms };
                self.put_media_due(b, *due_ms, &t.hash)?;
                b.put(keys::media(&t.hash), media_codec::encode_media(&row));
                return Ok(());
            }
            MediaOutcome::Stored(f) => {
                if let Some(d) = media_codec::digest_bytes(&f.sha256) {
                    b.put(keys::media_file(&d, &t.hash), Vec::new());
                }
                row.last_error = None;
                row.state = MediaState::Stored(f.clone());
            }
            MediaOutcome::Failed { error } => {
                row.last_error = Some(error.clone());
                row.state = MediaState::Failed { error: error.clone() };
            }
        }
        b.put(keys::media_final(rec.now_ms, &t.hash), Vec::new());
        let waiters = std::mem::take(&mut row.waiters);
        b.put(keys::media(&t.hash), media_codec::encode_media(&row));
        for id in waiters {
            self.release(b, id, rec.now_ms)?;
        }
        Ok(())
    }

    /// Whether every media URL of an event is final (true without media).
    pub(super) fn event_media_final(&self, b: &Batch<'_>, id: EventId) -> Result<bool, StoreError> {
        let Some((_, hashes)) = b
            .get(&keys::event_media(id))?
            .and_then(|v| media_codec::decode_event_media(&v))
        else {
            return Ok(true);
        };
        for h in hashes {
            if load(b, &h)?.is_some_and(|r| !r.state.is_final()) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// [`Self::event_media_final`], and when not, the event made a waiter of
    /// each of its URLs still pending: woken by the last of them (a URL
    /// failed for good and queued again by a newer callback has only that
    /// callback as its waiter; an earlier event waiting for it still must be
    /// woken, not left to its re-check minutes later).
    fn event_media_final_or_wait(&self, b: &mut Batch<'_>, id: EventId) -> Result<bool, StoreError> {
        let Some((_, hashes)) = b
            .get(&keys::event_media(id))?
            .and_then(|v| media_codec::decode_event_media(&v))
        else {
            return Ok(true);
        };
        let mut fin = true;
        for h in hashes {
            let Some(mut row) = load(b, &h)?.filter(|r| !r.state.is_final()) else {
                continue;
            };
            fin = false;
            if !row.waiters.contains(&id) && row.waiters.len() < MAX_WAITERS {
                row.waiters.push(id);
                b.put(keys::media(&h), media_codec::encode_media(&row));
            }
        }
        Ok(fin)
    }

    /// Park a deferred delivery ([`Outcome::Defer`]) in its subscriber's due
    /// index: due now if the event's media became final meanwhile, else at
    /// the caller's re-check time.
    pub(super) fn park(
        &mut self,
        b: &mut Batch<'_>,
        t: &SledTicket,
        row: &mut ResultRow,
        due_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let due = if self.event_media_final_or_wait(b, t.event)? {
            now_ms
        } else {
            due_ms
        };
        row.state = DeliveryState::AwaitingMedia { due_ms: due };
        self.put_due(b, t.route, t.sub, due, t.event)
    }

    /// The event's media may all be final: make its deliveries that wait for
    /// it due now (their lanes are woken after the commit).
    fn release(&mut self, b: &mut Batch<'_>, id: EventId, now_ms: u64) -> Result<(), StoreError> {
        let Some((route, _)) = b
            .get(&keys::event_media(id))?
            .and_then(|v| media_codec::decode_event_media(&v))
        else {
            return Ok(()); // the event was removed by retention
        };
        if !self.event_media_final_or_wait(b, id)? {
            return Ok(());
        }
        let Some((header, _)) = b
            .get(&keys::log(route, id))?
            .and_then(|v| super::codec::decode_header(&v))
        else {
            return Ok(());
        };
        for sub in header.subscribers {
            let rkey = keys::result(id, sub);
            let Some(mut row) = b.get(&rkey)?.and_then(|v| super::codec::decode_result(&v)) else {
                continue;
            };
            let DeliveryState::AwaitingMedia { due_ms } = row.state else {
                continue;
            };
            self.del_due(b, sub, due_ms, id)?;
            self.put_due(b, route, sub, now_ms, id)?;
            row.state = DeliveryState::AwaitingMedia { due_ms: now_ms };
            b.put(rkey, super::codec::encode_result(&row));
            self.media.woken.push(sub);
        }
        Ok(())
    }

    /// Wake the lanes and the archiver that this commit gave work.
    pub(super) fn wake_after_commit(&mut self) {
        for sub in std::mem::take(&mut self.media.woken) {
            self.inner.wake(sub);
        }
        if std::mem::take(&mut self.media.news) {
            self.inner.media_signal.notify_one();
        }
    }
}
