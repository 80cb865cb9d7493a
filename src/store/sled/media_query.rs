//! Reads of the media rows for the admin API, the CLI and `after_archive`
//! deliveries: an event's media, a stored file by digest, the recent and the
//! waiting URLs. Point reads and bounded scans straight from the tree.

use super::keys;
use super::media_codec::{self, MediaRow};
use super::SledStore;
use crate::store::{EventId, MediaFile, MediaItem, MediaState, StoreError};

impl SledStore {
    fn media_row(&self, hash: &[u8; 16]) -> Result<Option<MediaRow>, StoreError> {
        Ok(self
            .inner
            .tree
            .get(keys::media(hash))?
            .and_then(|v| media_codec::decode_media(&v)))
    }

    /// Whether the event's media work was left to its verification and is
    /// not written yet: its `E` row names no URL (`NewEvent::media_after_verify`).
    pub fn media_deferred(&self, id: EventId) -> Result<bool, StoreError> {
        Ok(self
            .inner
            .tree
            .get(keys::event_media(id))?
            .and_then(|v| media_codec::decode_event_media(&v))
            .is_some_and(|(_, hashes)| hashes.is_empty()))
    }

    /// The media of an event in the order its pointers found them; None when
    /// the event named no media (or is unknown).
    pub fn event_media(&self, id: EventId) -> Result<Option<Vec<MediaItem>>, StoreError> {
        let Some(v) = self.inner.tree.get(keys::event_media(id))? else {
            return Ok(None);
        };
        let (_, hashes) =
            media_codec::decode_event_media(&v).ok_or_else(|| StoreError::Corrupt(format!("media of {id}")))?;
        let mut out = Vec::with_capacity(hashes.len());
        for h in hashes {
            // A URL row outlives its events (media retention is the longer
            // one), but an old event can outlive a URL's row: skip those.
            if let Some(row) = self.media_row(&h)? {
                out.push(row.item());
            }
        }
        Ok(Some(out))
    }

    /// A stored file by its digest (lower-case hex), if a URL still refers to it.
    pub fn media_file(&self, sha256: &str) -> Result<Option<MediaFile>, StoreError> {
        let Some(digest) = media_codec::digest_bytes(sha256) else {
            return Ok(None);
        };
        for item in self.inner.tree.scan_prefix(keys::media_file_prefix(&digest)).keys() {
            let k = item?;
            let Some(hash) = k.get(33..49).and_then(|b| <[u8; 16]>::try_from(b).ok()) else {
                continue;
            };
            if let Some(MediaRow {
                state: MediaState::Stored(f),
                ..
            }) = self.media_row(&hash)?
            {
                return Ok(Some(MediaFile {
                    sha256: f.sha256,
                    size: f.size,
                    content_type: f.content_type,
                }));
            }
        }
        Ok(None)
    }

    /// The URLs that became final most recently (newest first), and the
    /// URLs waiting for a try (soonest due first), up to `limit` each.
    pub fn recent_media(&self, limit: usize) -> Result<(Vec<MediaItem>, Vec<MediaItem>), StoreError> {
        let mut done = Vec::new();
        for item in self.inner.tree.scan_prefix([keys::T]).keys().rev().take(limit) {
            if let Some((_, hash)) = keys::parse_timed(&item?) {
                if let Some(row) = self.media_row(&hash)? {
                    done.push(row.item());
                }
            }
        }
        let mut waiting = Vec::new();
        for item in self.inner.tree.scan_prefix([keys::A]).keys().take(limit) {
            if let Some((_, hash)) = keys::parse_timed(&item?) {
                if let Some(row) = self.media_row(&hash)? {
                    waiting.push(row.item());
                }
            }
        }
        Ok((done, waiting))
    }
}
