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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_in_cluster_mode_keeps_the_retention_of_expected_tasks() {
    let started = Instant::now();
    let nats = NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = |retention| {
        let (cfg, _) = tasks_config(dir.path(), vec![task_route("runway", "kie-runway", &fake, &sub.url())]);
        cfg.nats(nats.urls(), 1).retention(retention)
    };
    let h = start(&cfg(secs(3600))).await;
    let (s, v) = register(h.admin_addr, "runway", "task-kept").await;
    assert!(s.is_success(), "{v}");
    // The file's retention lowered to a minute: the cluster's stays an hour
    // (the reload says so), and so must the sweep's.
    cfg(secs(60)).write();
    h.reload().await.expect("reload");
    // Sweeps run 10 s after the start and every minute after that: the one
    // at 70 s would find the task older than a minute.
    let sweep = secs(78).saturating_sub(started.elapsed());
    tokio::time::sleep(sweep).await;
    let (s, v) = admin(h.admin_addr, "GET", "/api/tasks/task-kept").await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the task was swept with a retention the reload did not apply: {v}"
    );
    h.shutdown().await;
}
