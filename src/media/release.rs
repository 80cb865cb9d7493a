//! Media retention's deletion of released files (files no URL referred to
//! when the sweep looked): each is checked again, under its digest's lock
//! ([`DigestLocks`]), and deleted only if no URL names it now.
//!
//! The digests go in chunks of [`RELEASE_CHUNK`]: a chunk's locks are held
//! together and the check is asked once per chunk (the cluster store lists
//! its URL rows for that answer). The locks are per process: with a shared
//! object store another relay's try of the same bytes is not serialized
//! with this deletion, so the chunk is kept small (the k-th file goes after
//! k-1 deletions past its check). A failed check is tried again a couple of
//! times before the chunk's files are kept for now. The store remembers each
//! released digest until the caller reports it settled (deleted, not there,
//! or named again), so a file whose check or deletion failed (the store
//! down) is tried again by the next pass, not kept for good.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use super::storage::{DigestLocks, MediaStore};

/// Released files checked (and their locks held) together by media
/// retention: one check per chunk, a try of one of them waits at most one
/// check and the chunk's deletions.
pub const RELEASE_CHUNK: usize = 64;

/// Deletions failed in a row after which a pass stops: the store is down
/// (each failed request against a hung one takes up to two minutes), and
/// the files left stay released for the next pass, instead of holding
/// retention (events' too) one failed request per file.
pub const DELETE_FAILURES: usize = 8;

/// How many times a chunk's check is asked before its files are kept.
const CHECK_TRIES: u32 = 3;
/// The pause after the first failed check; doubled after each.
const CHECK_PAUSE: Duration = Duration::from_millis(100);

impl MediaStore {
    /// Media retention: delete each of `digests` unless `referenced` now
    /// says a URL refers to it (it returns the digests of the chunk it is
    /// asked about that a URL names). A check that fails [`CHECK_TRIES`]
    /// times keeps the chunk's files for now. Returns how many were deleted,
    /// and the digests settled: deleted, not there, or named by a URL again
    /// (the others, whose check or deletion failed, are asked again by the
    /// next pass).
    pub async fn delete_released<F, Fut, Er>(
        &self,
        digests: &[String],
        locks: &DigestLocks,
        referenced: F,
    ) -> (usize, Vec<String>)
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<HashSet<String>, Er>>,
        Er: fmt::Display,
    {
        let mut sorted: Vec<&String> = digests.iter().collect();
        sorted.sort();
        sorted.dedup();
        let (mut deleted, mut settled, mut failed) = (0, Vec::new(), 0);
        for chunk in sorted.chunks(RELEASE_CHUNK) {
            if failed >= DELETE_FAILURES {
                tracing::warn!(files = sorted.len() - settled.len(), failed,
                    "media retention stops this pass: the media store fails every deletion; the files left are deleted by a later pass");
                break;
            }
            // In order, one digest at a time: a try holds at most one lock.
            let mut holds = Vec::with_capacity(chunk.len());
            for d in chunk {
                holds.push(locks.hold(d).await);
            }
            let names: Vec<String> = chunk.iter().map(|d| d.to_string()).collect();
            let Some(kept) = check(&referenced, names).await else {
                continue;
            };
            for d in chunk {
                if failed >= DELETE_FAILURES {
                    break;
                }
                if kept.contains(d.as_str()) {
                    tracing::debug!(sha256 = %d, "media retention keeps a file a URL was archived to meanwhile");
                    settled.push(d.to_string());
                    continue;
                }
                match self.delete(d).await {
                    Ok(gone) => {
                        deleted += usize::from(gone);
                        settled.push(d.to_string());
                        failed = 0;
                    }
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(sha256 = %d, error = %e,
                            "media retention could not delete a file; the next pass tries again");
                    }
                }
            }
            drop(holds);
        }
        (deleted, settled)
    }
}

/// The chunk's digests a URL names, asked up to [`CHECK_TRIES`] times;
/// None when every try failed (the files are kept).
async fn check<F, Fut, Er>(referenced: &F, chunk: Vec<String>) -> Option<HashSet<String>>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<HashSet<String>, Er>>,
    Er: fmt::Display,
{
    let mut pause = CHECK_PAUSE;
    for tried in 1..=CHECK_TRIES {
        match referenced(chunk.clone()).await {
            Ok(kept) => return Some(kept),
            Err(e) if tried == CHECK_TRIES => {
                tracing::warn!(files = chunk.len(), error = %e, tries = tried,
                    "media retention could not check files before deleting them; kept for now (the next pass asks again)");
            }
            Err(e) => {
                tracing::debug!(files = chunk.len(), error = %e, "media retention's check failed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::LocalStore;
    use bytes::Bytes;
    use futures_util::Stream;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    fn bytes_of(b: &'static [u8]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin {
        futures_util::stream::iter([Ok(Bytes::from_static(b))])
    }

    /// A try finds the file stored (same bytes) after media retention
    /// decided to delete it: retention waits for the try's record, sees the
    /// URL now referring to the file, and keeps it.
    #[tokio::test]
    async fn retention_keeps_a_file_a_try_found_and_is_recording() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::Local(LocalStore::new(dir.path().to_path_buf(), 0).unwrap());
        let locks = DigestLocks::default();
        let first = store.put_stream(bytes_of(b"same bytes"), None, None).await.unwrap();
        // The sweep released the digest (no URL referred to it); now a try of
        // another URL with the same bytes finds the file and keeps it.
        let (again, hold) = store
            .put_stream_held(bytes_of(b"same bytes"), None, None, &locks)
            .await
            .unwrap();
        assert_eq!(again.sha256, first.sha256);
        let recorded = Arc::new(AtomicBool::new(false));
        let deleting = {
            let (store, locks, recorded) = (store.clone(), locks.clone(), recorded.clone());
            let digest = first.sha256.clone();
            tokio::spawn(async move {
                store
                    .delete_released(&[digest], &locks, |asked| {
                        let r = recorded.load(Ordering::SeqCst);
                        async move { Ok::<_, String>(asked.into_iter().filter(|_| r).collect::<HashSet<_>>()) }
                    })
                    .await
                    .0
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!deleting.is_finished(), "retention waits for the try's record");
        recorded.store(true, Ordering::SeqCst); // the try's record names the file
        drop(hold);
        assert_eq!(deleting.await.unwrap(), 0, "nothing deleted");
        assert!(store.open(&first.sha256).await.unwrap().is_some(), "the file stays");
        assert_eq!(locks.busy(), 0);
    }

    /// Released files are checked a chunk at a time (the cluster store
    /// lists every URL row per check): one check per chunk of
    /// [`RELEASE_CHUNK`] (64), each digest asked once, and only the files the
    /// check does not name deleted.
    #[tokio::test]
    async fn released_files_are_checked_a_chunk_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::Local(LocalStore::new(dir.path().to_path_buf(), 0).unwrap());
        let locks = DigestLocks::default();
        let kept = store.put_stream(bytes_of(b"still named"), None, None).await.unwrap();
        let gone = store.put_stream(bytes_of(b"released"), None, None).await.unwrap();
        let mut digests: Vec<String> = (0..RELEASE_CHUNK + 10).map(|i| format!("{i:064x}")).collect();
        digests.push(kept.sha256.clone());
        digests.push(gone.sha256.clone());
        digests.push(gone.sha256.clone()); // listed twice: checked once
        let asked = Arc::new(Mutex::new(Vec::new()));
        let deleted = {
            let (asked, keep) = (asked.clone(), kept.sha256.clone());
            store
                .delete_released(&digests, &locks, move |chunk: Vec<String>| {
                    asked.lock().unwrap().push(chunk.clone());
                    let keep = keep.clone();
                    async move { Ok::<_, String>(chunk.into_iter().filter(|d| *d == keep).collect::<HashSet<_>>()) }
                })
                .await
                .0
        };
        let asked = std::mem::take(&mut *asked.lock().unwrap());
        assert_eq!(asked.len(), 2, "one check per chunk of {RELEASE_CHUNK}");
        assert_eq!(
            asked[0].len(),
            64,
            "a chunk is small: its k-th file goes k-1 deletions after the check"
        );
        assert_eq!(
            asked.iter().map(Vec::len).sum::<usize>(),
            RELEASE_CHUNK + 12,
            "each digest once"
        );
        assert_eq!(deleted, 1);
        assert!(store.open(&kept.sha256).await.unwrap().is_some(), "a named file stays");
        assert!(
            store.open(&gone.sha256).await.unwrap().is_none(),
            "a released file goes"
        );
        assert_eq!(locks.busy(), 0, "every lock given back");
    }

    /// A store that fails every deletion (down; against a hung one each
    /// failed request takes minutes) stops the pass after
    /// [`DELETE_FAILURES`] in a row: the files left stay released (not
    /// settled) and a later pass deletes them, instead of retention (events'
    /// too) waiting out one failed request per released file.
    #[tokio::test]
    async fn a_pass_stops_when_the_store_fails_every_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStore::new(dir.path().to_path_buf(), 0).unwrap();
        let store = MediaStore::Local(local.clone());
        let locks = DigestLocks::default();
        let mut digests: Vec<String> = (0..DELETE_FAILURES).map(|i| format!("{i:064x}")).collect();
        // A directory where the file would be: its deletion fails (even as root).
        for d in &digests {
            std::fs::create_dir_all(local.path_of(d).join("x")).unwrap();
        }
        let real = store.put_stream(bytes_of(b"released"), None, None).await.unwrap();
        digests.push(real.sha256.clone());
        let none = |_: Vec<String>| async { Ok::<_, String>(HashSet::new()) };
        assert_eq!(
            store.delete_released(&digests, &locks, none).await,
            (0, vec![]),
            "the pass stops after {DELETE_FAILURES} failed deletions in a row"
        );
        assert!(
            store.open(&real.sha256).await.unwrap().is_some(),
            "left for a later pass"
        );
        // The store is back: the next pass deletes what is left.
        for d in &digests[..DELETE_FAILURES] {
            std::fs::remove_dir_all(local.path_of(d)).unwrap();
        }
        let (deleted, settled) = store.delete_released(&digests, &locks, none).await;
        assert_eq!((deleted, settled.len()), (1, DELETE_FAILURES + 1));
        assert!(store.open(&real.sha256).await.unwrap().is_none());
        assert_eq!(locks.busy(), 0);
    }

    /// A check that fails is asked again: a transient error does not keep
    /// the chunk's files for good. One that fails every time keeps them.
    #[tokio::test]
    async fn a_failed_check_is_tried_again_before_the_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::Local(LocalStore::new(dir.path().to_path_buf(), 0).unwrap());
        let locks = DigestLocks::default();
        let gone = store.put_stream(bytes_of(b"released"), None, None).await.unwrap();
        let asked = Arc::new(AtomicU32::new(0));
        let flaky = |fails: u32| {
            let asked = asked.clone();
            move |chunk: Vec<String>| {
                let n = asked.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < fails {
                        Err("NATS did not answer".to_string())
                    } else {
                        drop(chunk);
                        Ok(HashSet::new())
                    }
                }
            }
        };
        let digests = [gone.sha256.clone()];
        let kept = store.put_stream(bytes_of(b"kept"), None, None).await.unwrap();
        let never = [kept.sha256.clone()];
        assert_eq!(
            store.delete_released(&never, &locks, flaky(u32::MAX)).await,
            (0, vec![]),
            "kept, and not settled: the next pass asks again"
        );
        assert_eq!(asked.swap(0, Ordering::SeqCst), 3, "asked 3 times");
        assert!(store.open(&kept.sha256).await.unwrap().is_some(), "kept: never checked");
        // Two failures, then an answer: deleted.
        assert_eq!(
            store.delete_released(&digests, &locks, flaky(2)).await,
            (1, digests.to_vec())
        );
        assert!(
            store.open(&gone.sha256).await.unwrap().is_none(),
            "deleted once checked"
        );
        assert_eq!(locks.busy(), 0);
    }
}
