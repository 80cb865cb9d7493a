//! A try that finished after a reload changed the media store (`media.store`
//! another directory or bucket): its download, begun under the old
//! settings, went to the old store, where hookrelay no longer serves nor
//! deletes files. The file is copied into the store now in force, so the
//! record names a file that is served and swept like any other; the copy
//! in the old store stays there with the files archived before the reload
//! (relays of a cluster may still use that store). A copy that fails is a
//! wait, no try: the URL is downloaded again into the new store (its URL
//! may have expired by then: the provider is asked for a fresh one, as for
//! any try).

use std::sync::Arc;

use super::settings::ArchiveSettings;
use super::storage::{DigestHold, DigestLocks, Stored};

/// `stored` (and its digest's hold) by `tried` as it should be recorded
/// under `now`, the settings in force: unchanged when the store is the
/// same, else copied into `now`'s store (the old hold let go first: the
/// copy takes the digest's lock itself). `Err`: why it could not be copied.
pub(super) async fn into_store_in_force(
    tried: &ArchiveSettings,
    now: Option<Arc<ArchiveSettings>>,
    stored: Stored,
    hold: DigestHold,
    files: &DigestLocks,
) -> Result<(Stored, DigestHold), String> {
    let Some(now) = now.filter(|now| !now.shares_store(tried)) else {
        return Ok((stored, hold));
    };
    drop(hold);
    let why = |e: &dyn std::fmt::Display| {
        format!(
            "the media store changed (a reload) while the file was downloaded into {}; copying it into {} failed: {e}",
            tried.store.describe(),
            now.store.describe()
        )
    };
    let reader = match tried.store.open(&stored.sha256).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(why(&"it is no longer there")),
        Err(e) => return Err(why(&e)),
    };
    let (copied, hold) = now
        .store
        .put_stream_held(reader.stream, stored.content_type.as_deref(), Some(reader.size), files)
        .await
        .map_err(|e| why(&e))?;
    if copied.sha256 != stored.sha256 || copied.size != stored.size {
        return Err(why(&format!(
            "the copy has digest {} and {} bytes, the download {} and {} bytes",
            copied.sha256, copied.size, stored.sha256, stored.size
        )));
    }
    tracing::info!(sha256 = %copied.sha256, from = %tried.store.describe(), to = %copied.location,
        "media stored in the store of before a reload: copied into the store in force");
    Ok((copied, hold))
}
