//! The archive's building blocks as library-level tests drive them, with no
//! daemon: fetch options and fetchers for loopback file servers (`files`),
//! and reading a download or a stored file back whole. The S3 store's
//! settings for moto are `s3::Moto::settings`.

use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use hookrelay::media::{AddressPolicy, FetchError, FetchOptions, Fetcher, MediaStore};

/// How long one download may take in the fetcher's own tests.
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// Options allowing private addresses or not (the loopback servers are
/// private), nothing else allowed, a 20 s timeout.
pub fn fetch_options(allow_private: bool) -> FetchOptions {
    FetchOptions {
        policy: AddressPolicy {
            allow_private,
            allowed_nets: vec![],
        },
        timeout: FETCH_TIMEOUT,
        ..FetchOptions::default()
    }
}

/// A fetcher that reaches the loopback file servers.
pub fn open_fetcher() -> Fetcher {
    Fetcher::new(fetch_options(true)).unwrap()
}

/// A fetcher for archiving from loopback: files up to `max_size`, each within `timeout`.
pub fn archive_fetcher(max_size: u64, timeout: Duration) -> Fetcher {
    Fetcher::new(FetchOptions {
        timeout,
        max_size,
        ..fetch_options(true)
    })
    .unwrap()
}

/// A download's whole body, or why there is none.
pub async fn read_body(f: &Fetcher, url: &str) -> Result<Vec<u8>, FetchError> {
    let d = f.get(url).await?;
    let chunks: Vec<Bytes> = d.into_stream().try_collect().await?;
    Ok(chunks.concat())
}

/// A stored file's bytes, checked against the size the store reports.
pub async fn read_back(store: &MediaStore, sha256: &str) -> Vec<u8> {
    let r = store.open(sha256).await.unwrap().expect("stored file opens");
    let chunks: Vec<Bytes> = r.stream.try_collect().await.unwrap();
    let data = chunks.concat();
    assert_eq!(data.len() as u64, r.size);
    data
}
