//! Media retention in cluster mode: URLs final for longer than
//! `media.retention` are forgotten (each purged only if unchanged since
//! read: a callback naming it meanwhile restarted its retention), and the
//! files no URL names any more are released for deletion (a `r.` row each,
//! until the caller settles it); the check under the digests' locks that a
//! file is still unnamed before it is deleted.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use super::media::SCAN_LIMIT;
use super::{layout, unavailable, NatsStore, Shared};
use crate::store::StoreError;

#[cfg(test)]
thread_local! {
    /// Tests: the next retention pass on this thread fails once it has
    /// purged its URL rows.
    pub(super) static FAIL_AFTER_PURGE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Shared {
    /// A stored file handed to media retention: the next pass deletes it
    /// unless a URL names it by then (a `r.` row until settled).
    pub(super) async fn release_file(&self, sha256: &str) -> Result<(), StoreError> {
        self.media()?
            .put(layout::released_key(sha256), Bytes::from_static(b"1"))
            .await
            .map_err(unavailable)?;
        self.wrote(1);
        Ok(())
    }
}

impl NatsStore {
    /// Which of `digests` a URL row names as its stored file: media
    /// retention's check under the digests' locks, before it deletes the
    /// others. It reads the URL rows (every one), not the file rows, which
    /// the sweep itself purges (a try that recorded the same bytes during the
    /// sweep wrote both); a file row so purged is put back. One pass over the
    /// rows per call: retention asks for a chunk of digests at once.
    pub async fn media_referenced(&self, digests: Vec<String>) -> Result<HashSet<String>, StoreError> {
        let asked: HashSet<String> = digests.into_iter().collect();
        let mut kept: HashMap<String, _> = HashMap::new();
        self.shared
            .each_media_row(|_, r| {
                if let Some(d) = r.sha256().filter(|d| asked.contains(*d)) {
                    kept.entry(d.to_string()).or_insert(r);
                }
            })
            .await?;
        for (d, row) in &kept {
            if self.media_file(d.clone()).await?.is_none() {
                self.shared.put_file_row(&row.state).await?;
            }
        }
        Ok(kept.into_keys().collect())
    }

    /// Forget the URLs that became final before `cutoff_ms` (up to
    /// [`SCAN_LIMIT`] a pass); returns how many, and the digests no URL
    /// refers to any more (the caller deletes those files): this pass's, and
    /// those an earlier one released and did not settle (a `r.` row each
    /// until [`media_released_settled`]). Every relay may run it: deleting
    /// twice is harmless. A file is freed only when no URL row names it,
    /// among all of them (a listing's limit would leave out the rows written
    /// last, a URL archived to the same bytes yesterday among them).
    ///
    /// [`media_released_settled`]: Self::media_released_settled
    pub async fn sweep_media(&self, cutoff_ms: u64) -> Result<(usize, Vec<String>), StoreError> {
        let mut old = Vec::new();
        self.shared
            .each_media_row(|hash, row| {
                if row.is_final() && row.at_ms < cutoff_ms && old.len() < SCAN_LIMIT {
                    old.push(hash.to_string());
                }
            })
            .await?;
        let bucket = self.shared.media()?;
        let (mut removed, mut freed) = (0, HashSet::new());
        for hash in old {
            // Read again with its revision and purged only if unchanged:
            // a callback naming the URL meanwhile restarted its retention.
            let Some((now, revision)) = self.shared.media_row(&hash).await? else {
                continue;
            };
            if !(now.is_final() && now.at_ms < cutoff_ms) {
                continue;
            }
            // Its file released before the row goes: a pass cut short
            // after it (NATS failing, the relay stopping) leaves the file
            // to the next pass, which deletes it if no URL names it then
            // (a released file still named is only settled).
            if let Some(sha) = now.sha256() {
                self.shared.release_file(sha).await?;
            }
            let purged = bucket
                .purge_expect_revision(layout::media_key(&hash), Some(revision))
                .await
                .is_ok();
            if purged {
                self.shared.wrote(1);
                removed += 1;
                if let Some(sha) = now.sha256() {
                    freed.insert(sha.to_string());
                }
            }
        }
        #[cfg(test)]
        if FAIL_AFTER_PURGE.with(|f| f.replace(false)) {
            return Err(unavailable("NATS failed after the purge (test)"));
        }
        if !freed.is_empty() {
            // Still named by a row this pass kept (or wrote meanwhile): kept.
            self.shared
                .each_media_row(|_, row| {
                    if let Some(sha) = row.sha256() {
                        freed.remove(sha);
                    }
                })
                .await?;
        }
        for sha in &freed {
            bucket.purge(layout::file_key(sha)).await.map_err(unavailable)?;
            self.shared.wrote(1);
        }
        let files = self
            .shared
            .latest_values(layout::MEDIA, "r.", SCAN_LIMIT)
            .await?
            .into_iter()
            .map(|(sha, _)| sha)
            .collect();
        Ok((removed, files))
    }

    /// Forget released files media retention settled (deleted, not there,
    /// or named by a URL again).
    pub async fn media_released_settled(&self, digests: Vec<String>) -> Result<(), StoreError> {
        let bucket = self.shared.media()?;
        for sha in digests {
            bucket.purge(layout::released_key(&sha)).await.map_err(unavailable)?;
            self.shared.wrote(1);
        }
        Ok(())
    }
}
