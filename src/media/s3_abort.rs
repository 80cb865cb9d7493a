//! Aborting the multipart upload of an S3 upload try that was dropped (the
//! archiver stopping, its tries cancelled): an unfinished multipart upload is
//! no object, so an expiration rule does not remove it, and S3 bills its
//! parts until a lifecycle rule's `AbortIncompleteMultipartUpload` does.
//!
//! Owns the guard around the upload's writer and the count of aborts still
//! running, which the archiver's stop waits for (bounded, [`wait_aborts`]).
//! A `kill -9` still leaves the upload to the lifecycle rule.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use object_store::buffered::BufWriter;
use tokio::sync::Notify;

/// Aborts started by dropped uploads and not finished yet (process-wide: a
/// store replaced by a reload may still have some).
static PENDING: AtomicUsize = AtomicUsize::new(0);
static IDLE: Notify = Notify::const_new();

/// The writer of one upload try: aborted in the background when dropped
/// before it was finished or aborted by the try itself.
pub(super) struct Upload(Option<BufWriter>);

impl Upload {
    pub(super) fn new(writer: BufWriter) -> Upload {
        Upload(Some(writer))
    }

    pub(super) fn writer(&mut self) -> &mut BufWriter {
        self.0
            .as_mut()
            .expect("an upload's writer is there until it is settled")
    }

    /// The try settled the upload itself (completed, or aborted).
    pub(super) fn settled(&mut self) {
        self.0 = None;
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let Some(mut writer) = self.0.take() else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        PENDING.fetch_add(1, Ordering::SeqCst);
        rt.spawn(async move {
            if let Err(e) = writer.abort().await {
                tracing::warn!(error = %e, "could not abort the multipart upload of a stopped media upload (a lifecycle rule on tmp/ clears it)");
            }
            if PENDING.fetch_sub(1, Ordering::SeqCst) == 1 {
                IDLE.notify_waiters();
            }
        });
    }
}

/// Wait up to `limit` for the aborts of dropped uploads; whether none is left.
pub async fn wait_aborts(limit: Duration) -> bool {
    let wait = async {
        loop {
            let idle = IDLE.notified();
            if PENDING.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    };
    tokio::time::timeout(limit, wait).await.is_ok()
}
