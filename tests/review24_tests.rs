//! Review 24: media archive and reconciliation (failing tests for the findings).

use crate::common;

use common::provider::{FakeOptions, FakeProvider};
use common::tasks::{register, task, task_route, tasks_config};
use common::*;
use http::StatusCode;
use serde_json::Value;

/// A task registered after its final callback was already stored (the submit
/// proxy registers only once the create answer is back, so a fast failure
/// callback can come first; or an operator registers an existing task with
/// POST /api/tasks) is `waiting`, though its callback came. Without
/// reconcile it stays so until retention; with it, the provider is asked for
/// a result already delivered.
#[tokio::test]
async fn review24_a_task_registered_after_its_callback_is_not_waiting() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("runway", "kie-runway", &fake, &sub.url()).without_reconcile();
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    assert_eq!(h.ingest_addrs[0], addr);
    let body = serde_json::json!({"code": 400, "msg": "bad prompt",
        "data": {"task_id": "early-1", "video_id": "", "video_url": "", "image_url": ""}});
    let (s, _, b) = post(
        addr,
        "/hooks/runway",
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    sub.wait_for(secs(10), "the callback", |all| !all.is_empty()).await;
    let (s, v) = register(h.admin_addr, "runway", "early-1").await;
    assert!(s.is_success(), "{s} {v}");
    let t: Value = task(h.admin_addr, "early-1").await;
    assert_eq!(
        t["state"], "called_back",
        "the task's final callback was stored before it was registered: {t}"
    );
}

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
