//! Where archived media goes: one API over a local directory and
//! S3-compatible object storage.
//!
//! Owns the uniform surface (`put_stream`, `open`, `delete`), the record of a
//! stored file, and the error types. Files are content-addressed by their
//! SHA-256, so the same bytes named by several callbacks are stored once and
//! a finished file is never rewritten. Does not own downloading (`fetch`) or
//! which files to keep (retention is the archiver's; it calls `delete`).

use std::fmt;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::Stream;

use super::local::LocalStore;
use super::s3::S3Store;

/// A file that is safely stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Stored {
    /// Where it is: an absolute path for the local store, `s3://bucket/key` for S3.
    pub location: String,
    /// Lower-case hex SHA-256 of the bytes: the file's name in the store.
    pub sha256: String,
    /// Bytes stored.
    pub size: u64,
    /// The `Content-Type` the server sent, kept for whoever serves it again.
    pub content_type: Option<String>,
}

/// A stored file opened for reading.
pub struct StoredReader {
    /// Its size in bytes (for `Content-Length`).
    pub size: u64,
    /// Its bytes, in order.
    pub stream: BoxStream<'static, std::io::Result<Bytes>>,
}

impl fmt::Debug for StoredReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredReader")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The media disk is below its free-space floor: refuse before it fills,
    /// so the disk the callback store lives on (often the same) keeps room.
    #[error("media disk {} has {available} bytes free; storing would go below the minimum of {min_free} bytes free", .path.display())]
    LowSpace {
        path: PathBuf,
        available: u64,
        min_free: u64,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The object store failed its check before a download: it cannot take
    /// files now (down, wrong keys, no bucket); the URL waits, no try.
    #[error("media store {store} cannot take files: {error}")]
    Unavailable { store: String, error: String },
    /// The object store refused or failed a request.
    #[error("object storage: {0}")]
    Object(String),
    /// A name that is not a SHA-256 hex digest (never touches the store).
    #[error("not a SHA-256 hex digest: {0:?}")]
    BadDigest(String),
}

impl StoreError {
    /// Everything but a malformed digest may work later (space freed, disk
    /// or network back).
    pub fn retryable(&self) -> bool {
        !matches!(self, StoreError::BadDigest(_))
    }

    /// The store cannot take files before a download begins (the media disk
    /// below its floor, the object store failing its check): the file's own
    /// fault it is not, and it waits without a try.
    pub fn is_wait(&self) -> bool {
        matches!(self, StoreError::LowSpace { .. } | StoreError::Unavailable { .. })
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}

/// Why `put_stream` failed: the source stream (e.g. the download) or the store.
#[derive(Debug, thiserror::Error)]
pub enum PutError<E> {
    #[error(transparent)]
    Source(E),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The media store in use.
#[derive(Debug, Clone)]
pub enum MediaStore {
    Local(LocalStore),
    S3(S3Store),
}

/// Check a digest from outside (admin API, stored records) before it names a
/// file: 64 lower-case hex characters, so it can never be a path.
pub fn check_digest(sha256: &str) -> Result<(), StoreError> {
    if sha256.len() == 64 && sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(StoreError::BadDigest(sha256.chars().take(80).collect()))
    }
}

impl MediaStore {
    /// Store everything `stream` yields. Nothing is visible under the final
    /// name until the whole stream arrived and is durable; on any error the
    /// partial data is removed. `size_hint` (e.g. `Content-Length`) lets the
    /// local store refuse early when the disk cannot hold the file.
    pub async fn put_stream<S, E>(
        &self,
        stream: S,
        content_type: Option<&str>,
        size_hint: Option<u64>,
    ) -> Result<Stored, PutError<E>>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Send,
    {
        match self {
            MediaStore::Local(l) => l.put_stream(stream, content_type, size_hint).await,
            MediaStore::S3(s) => s.put_stream(stream, content_type).await,
        }
    }

    /// Whether a file may be stored now: a local store's disk is above its
    /// `min_free`; an object store took its probe (asked only while its last
    /// request failed).
    pub async fn check_ready(&self) -> Result<(), StoreError> {
        match self {
            MediaStore::Local(l) => l.check_room(),
            MediaStore::S3(s) => s.check_ready().await,
        }
    }

    /// Open the file with this digest; `None` when it is not stored.
    pub async fn open(&self, sha256: &str) -> Result<Option<StoredReader>, StoreError> {
        check_digest(sha256)?;
        match self {
            MediaStore::Local(l) => l.open(sha256).await,
            MediaStore::S3(s) => s.open(sha256).await,
        }
    }

    /// Remove the file with this digest; `false` when it was not there.
    pub async fn delete(&self, sha256: &str) -> Result<bool, StoreError> {
        check_digest(sha256)?;
        match self {
            MediaStore::Local(l) => l.delete(sha256).await,
            MediaStore::S3(s) => s.delete(sha256).await,
        }
    }

    /// Where the files are: two stores with the same location hold the same
    /// files (a changed `min_free` does not move them).
    pub fn location(&self) -> String {
        match self {
            MediaStore::Local(l) => l.location(),
            MediaStore::S3(s) => s.describe(),
        }
    }

    /// One line for logs and `check-config` (no secrets).
    pub fn describe(&self) -> String {
        match self {
            MediaStore::Local(l) => l.describe(),
            MediaStore::S3(s) => s.describe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_before_use() {
        let ok = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(check_digest(ok).is_ok());
        for bad in [
            "",
            "../../etc/passwd",
            &ok.to_uppercase(),
            &ok[..63],
            &format!("{ok}0"),
            &format!("{}/", &ok[..63]),
        ] {
            assert!(matches!(check_digest(bad), Err(StoreError::BadDigest(_))), "{bad}");
        }
    }
}
