//! Media retention on the writer thread: walks the `T` index (URLs by the
//! time they became final) up to the cutoff in bounded steps, removes each
//! URL's rows, and marks the digests no URL refers to any more as released
//! (`Y` rows, in the same batch), so the caller deletes those files. A
//! released file stays marked until the caller reports it settled: one the
//! media store could not delete (down), or a pass cut short (shutdown,
//! crash) did not get to, is deleted by a later pass. Files are
//! content-addressed: one shared by several URLs stays until the last of
//! them expires.

use std::collections::HashSet;

use super::group_commit::{Batch, Msg, Writer};
use super::keys;
use super::media_codec;
use crate::store::{MediaState, StoreError};

/// `T` rows looked at per step.
const STEP: usize = 500;

/// What one step did.
#[derive(Debug, Default)]
pub(crate) struct MediaSweepStep {
    /// Where the next step starts (None: done).
    pub next: Option<Vec<u8>>,
    /// URL rows removed.
    pub removed: usize,
    /// Digests of files that no remaining URL refers to: delete them.
    pub unreferenced: Vec<String>,
}

impl Writer {
    pub(super) fn media_sweep_step(
        &mut self,
        from: Option<Vec<u8>>,
        cutoff_ms: u64,
    ) -> Result<MediaSweepStep, StoreError> {
        let tree = self.inner.tree.clone();
        let start = from.unwrap_or_else(|| vec![keys::T]);
        let end = keys::media_final(cutoff_ms, &[0; 16]);
        let mut b = Batch::new(&tree);
        let mut out = MediaSweepStep::default();
        let mut dropped_files: HashSet<Vec<u8>> = HashSet::new();
        let mut done = true;
        for (n, item) in tree.range(start..end).keys().enumerate() {
            let k = item?;
            if n >= STEP {
                out.next = Some(k.to_vec());
                done = false;
                break;
            }
            b.del(k.to_vec());
            let Some((at_ms, hash)) = keys::parse_timed(&k) else {
                continue;
            };
            let ukey = keys::media(&hash);
            let Some(row) = b.get(&ukey)?.and_then(|v| media_codec::decode_media(&v)) else {
                continue;
            };
            // A newer reference moved the row's time on (its `T` row too).
            if row.at_ms != at_ms || !row.state.is_final() {
                continue;
            }
            b.del(ukey);
            out.removed += 1;
            if let MediaState::Stored(f) = &row.state {
                let Some(digest) = media_codec::digest_bytes(&f.sha256) else {
                    continue;
                };
                let hkey = keys::media_file(&digest, &hash);
                b.del(hkey.clone());
                dropped_files.insert(hkey);
                let prefix = keys::media_file_prefix(&digest);
                let mut others = false;
                for other in tree.scan_prefix(&prefix).keys() {
                    if !dropped_files.contains(other?.as_ref()) {
                        others = true;
                        break;
                    }
                }
                if !others && !out.unreferenced.contains(&f.sha256) {
                    b.put(keys::media_released(&digest), Vec::new());
                    out.unreferenced.push(f.sha256.clone());
                }
            }
        }
        if done {
            out.next = None;
        }
        self.commit(b)?;
        Ok(out)
    }

    /// Forget released files that media retention settled.
    pub(super) fn media_released(&mut self, digests: &[[u8; 32]]) -> Result<(), StoreError> {
        let tree = self.inner.tree.clone();
        let mut b = Batch::new(&tree);
        for d in digests {
            b.del(keys::media_released(d));
        }
        self.commit(b)
    }
}

impl super::SledStore {
    /// Media retention in bounded steps (other writes go in between); (URL
    /// rows removed, digests no URL refers to any more: this pass's and
    /// those earlier passes released and did not settle).
    pub async fn sweep_media(&self, cutoff_ms: u64) -> Result<(usize, Vec<String>), StoreError> {
        let mut removed = 0;
        let mut from = None;
        loop {
            let step = self.call(|reply| Msg::MediaSweep { from, cutoff_ms, reply }).await?;
            removed += step.removed;
            match step.next {
                Some(n) => from = Some(n),
                None => break,
            }
            tokio::task::yield_now().await;
        }
        let files = self
            .blocking(|s| {
                let mut files = Vec::new();
                for k in s.inner.tree.scan_prefix([keys::Y]).keys() {
                    if let Some(d) = k?.get(1..33) {
                        files.push(hex::encode(d));
                    }
                }
                Ok(files)
            })
            .await?;
        Ok((removed, files))
    }

    /// Forget released digests media retention settled.
    pub async fn media_released_settled(&self, digests: Vec<String>) -> Result<(), StoreError> {
        let digests: Vec<[u8; 32]> = digests.iter().filter_map(|d| media_codec::digest_bytes(d)).collect();
        self.call(|reply| Msg::MediaReleased { digests, reply }).await
    }
}
