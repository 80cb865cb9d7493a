//! Settings a reload names as needing a restart stay as they run until then,
//! also where another part of the relay reads them from the swapped-in file:
//! the media archive's disk floor (which follows `store.min_free`) and, in
//! cluster mode, the retention sweep of expected tasks (`store.retention`,
//! the cluster's: a reload lowering it deleted every relay's tasks
//! registered before the new cutoff, open ones too). Reload review, stop 61.

use crate::common;

use std::time::Instant;

use common::media::{media_config, Media};
use common::nats::NatsCluster;
use common::provider::{FakeOptions, FakeProvider};
use common::tasks::{register, task_route, tasks_config};
use common::*;
use http::StatusCode;

/// `/api/media`'s description of the media store.
async fn media_store(admin_addr: std::net::SocketAddr) -> String {
    let (s, v) = admin(admin_addr, "GET", "/api/media").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["store"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_reload_keeps_the_media_floor_of_the_store_floor_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |store_floor: u64| {
        media_config(dir.path(), Media::new().min_free(1 << 20).concurrency(2)).min_free(store_floor)
    };
    let h = start(&cfg(64 << 20)).await;
    // On the store's disk: the store's floor plus room for the downloads.
    let floor = format!("min_free {} bytes", (64u64 << 20) + 2 * (10 << 20));
    let before = media_store(h.admin_addr).await;
    assert!(before.contains(&floor), "{before}");
    // `store.min_free` lowered: ingest keeps refusing below the old floor
    // until a restart, so downloads must too.
    cfg(1 << 20).write();
    h.reload().await.expect("reload");
    let after = media_store(h.admin_addr).await;
    assert!(
        after.contains(&floor),
        "the media floor followed a store.min_free that needs a restart: {after}"
    );
    h.shutdown().await;
}

/// Two relays on one cluster: one reloads a file with a lower retention,
/// the other a file switched back to the embedded store with one (the
/// change review: the keeping was judged by both backends being NATS). The
/// cluster's task must outlive both relays' sweeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_in_cluster_mode_keeps_the_retention_of_expected_tasks() {
    let nats = NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |dir: &std::path::Path, retention| {
        let (cfg, _) = tasks_config(dir, vec![task_route("runway", "kie-runway", &fake, &sub.url())]);
        cfg.retention(retention)
    };
    let h1 = start(&cfg(one.path(), secs(3600)).nats(nats.urls(), 1)).await;
    let h2 = start(&cfg(two.path(), secs(3600)).nats(nats.urls(), 1)).await;
    // Each relay's sweeps run 10 s after its start and every minute after
    // that: by 70 s from here both have swept with what their reloads left.
    let started = Instant::now();
    let (s, v) = register(h1.admin_addr, "runway", "task-kept").await;
    assert!(s.is_success(), "{v}");
    // The files' retention lowered to a minute: the cluster's stays an hour
    // (the reloads say so), and so must the sweeps'.
    cfg(one.path(), secs(60)).nats(nats.urls(), 1).write();
    h1.reload().await.expect("reload");
    cfg(two.path(), secs(60)).write();
    h2.reload().await.expect("reload");
    tokio::time::sleep(secs(75).saturating_sub(started.elapsed())).await;
    for h in [&h1, &h2] {
        let (s, v) = admin(h.admin_addr, "GET", "/api/tasks/task-kept").await;
        assert_eq!(
            s,
            StatusCode::OK,
            "the task was swept with a retention a reload did not apply: {v}"
        );
    }
    h1.shutdown().await;
    h2.shutdown().await;
}
