//! Media retention on the writer thread: walks the `T` index (URLs by the
//! time they became final) up to the cutoff in bounded steps, removes each
//! URL's rows, and reports the digests no URL refers to any more, so the
//! caller deletes those files. Files are content-addressed: one shared by
//! several URLs stays until the last of them expires.

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
}

impl super::SledStore {
    /// Media retention in bounded steps (other writes go in between); (URL
    /// rows removed, digests no URL refers to any more).
    pub async fn sweep_media(&self, cutoff_ms: u64) -> Result<(usize, Vec<String>), StoreError> {
        let (mut removed, mut files) = (0, Vec::new());
        let mut from = None;
        loop {
            let step = self.call(|reply| Msg::MediaSweep { from, cutoff_ms, reply }).await?;
            removed += step.removed;
            files.extend(step.unreferenced);
            match step.next {
                Some(n) => from = Some(n),
                None => return Ok((removed, files)),
            }
            tokio::task::yield_now().await;
        }
    }
}
