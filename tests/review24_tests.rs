//! Review 24: media archive and reconciliation (failing tests for the findings).

use crate::common;

/// A file server answering `204 No Content` (no file) gets the URL recorded
/// as `stored`: a 0-byte file, final, never tried again, and `after_archive`
/// subscribers told it is archived. Only 206 is refused among the 2xx.
#[tokio::test]
async fn review24_a_204_is_not_an_archived_file() {
    use common::fetcher::open_fetcher;
    use common::files::FileServer;
    use hookrelay::media::{LocalStore, MediaStore};
    let s = FileServer::start(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)).await;
    let url = s.status("/k/video.mp4", 204);
    let dir = tempfile::tempdir().unwrap();
    let store = MediaStore::Local(LocalStore::new(dir.path().join("media"), 0).unwrap());
    let got = hookrelay::media::archive(&open_fetcher(), &store, &url).await;
    assert!(
        got.is_err(),
        "a 204 without a body was archived as a file: {:?}",
        got.map(|st| (st.size, st.sha256))
    );
}
