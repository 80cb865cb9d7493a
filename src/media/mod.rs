//! The media archive's building blocks: finding result URLs in a callback,
//! downloading them safely, and storing the bytes.
//!
//! - [`pointer`]: media pointers (`*` over arrays, JSON inside strings).
//! - [`addr`]: which addresses downloads may reach.
//! - [`resolve`]: name resolution behind a trait (checked by the fetcher).
//! - [`fetch`], [`download`] and [`fetch_error`]: the streaming downloader, one
//!   download's body stream, and their errors.
//! - [`storage`], [`local`], [`s3`], [`s3_http`]: where the bytes go;
//!   `s3_abort`: aborting the multipart upload of a stopped try; [`room`]:
//!   the room a local directory's downloads in flight reserve above its floor;
//!   `failing`: whether a store failed a write since its last passing probe.
//! - [`archiver`]: the task that works through the store's due media URLs;
//!   [`job`]: one try of one URL (with the provider refresh of an expired
//!   URL), `store_changed`: a file stored in a store a reload replaced
//!   during its try, copied into the new one; [`settings`]: what they run
//!   with, from `[media]` and the routes;
//!   [`last_store`]: the store of the last start, to notice a moved one.
//! - [`shown`]: URLs in logs and answers, without their signed query.
//!
//! Owns [`archive`], one URL from download to stored file, and the archiver.
//! Does not own the durable queue of archive work (the store: the work is
//! written with the event) or the `after_archive` gating of deliveries
//! (`delivery::media_gate`).

pub mod addr;
pub mod archiver;
pub mod download;
mod failing;
pub mod fetch;
pub mod fetch_error;
mod job;
pub mod last_store;
pub mod local;
pub mod pointer;
mod release;
pub mod resolve;
pub mod room;
pub mod s3;
mod s3_abort;
pub mod s3_http;
pub mod settings;
pub mod shown;
pub mod storage;
mod store_changed;

pub use addr::AddressPolicy;
pub use archiver::Archiver;
pub use download::Download;
pub use fetch::{FetchOptions, Fetcher};
pub use fetch_error::FetchError;
pub use job::longest_wait;
pub use local::LocalStore;
pub use pointer::{media_urls, MediaPointer};
pub use resolve::{Resolver, StaticResolver, SystemResolver};
pub use s3::{S3Settings, S3Store};
pub use settings::{ArchiveSettings, SetupError};
pub use shown::shown;
pub use storage::{DigestHold, DigestLocks, MediaStore, PutError, StoreError, Stored, StoredReader};

/// Why archiving one URL failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ArchiveError {
    /// Whether to try again later on the retry schedule.
    pub fn retryable(&self) -> bool {
        match self {
            ArchiveError::Fetch(e) => e.retryable(),
            ArchiveError::Store(e) => e.retryable(),
        }
    }

    /// 403/404/410 from the file server: worth one try through the
    /// provider's refresh endpoint.
    pub fn is_gone(&self) -> bool {
        matches!(self, ArchiveError::Fetch(e) if e.is_gone())
    }
}

impl From<PutError<FetchError>> for ArchiveError {
    fn from(e: PutError<FetchError>) -> Self {
        match e {
            PutError::Source(e) => ArchiveError::Fetch(e),
            PutError::Store(e) => ArchiveError::Store(e),
        }
    }
}

/// Download `url` and store its bytes, streaming: the file is never held in
/// memory. Returns where it is stored, its SHA-256, size and content type.
pub async fn archive(fetcher: &Fetcher, store: &MediaStore, url: &str) -> Result<Stored, ArchiveError> {
    let download = fetcher.get(url).await?;
    let content_type = download.content_type.clone();
    let size_hint = download.content_length;
    let stored = store
        .put_stream(download.into_stream(), content_type.as_deref(), size_hint)
        .await?;
    Ok(stored)
}

/// [`archive`], holding the stored digest's lock in `locks` until the
/// returned hold is dropped: the archiver drops it once its record names
/// the file, so media retention cannot delete the file in between (see
/// [`DigestLocks`]).
pub async fn archive_held(
    fetcher: &Fetcher,
    store: &MediaStore,
    url: &str,
    locks: &DigestLocks,
) -> Result<(Stored, DigestHold), ArchiveError> {
    let download = fetcher.get(url).await?;
    let content_type = download.content_type.clone();
    let size_hint = download.content_length;
    let stored = store
        .put_stream_held(download.into_stream(), content_type.as_deref(), size_hint, locks)
        .await?;
    Ok(stored)
}
