//! Cluster mode with a replica that has not applied what its stream's
//! quorum acknowledged: reads it answers "not found" are asked again of the
//! stream's leader. Such a replica answers about half the relay's direct
//! gets ([`common::nats_lag`]).
//! Before, an `after_archive` delivery read its event (or its URL's row) as
//! missing and went out at once, its `hookrelay-media` header empty.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::files::FileServer;
use common::nats::NatsCluster;
use common::*;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SLOW: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_after_archive_delivery_waits_for_its_media_when_a_replica_lags() {
    let nats = NatsCluster::start_with(1, &common::nats_lag::mappings(&["HR_EV_runway", "KV_hr_media"])).await;
    let files = FileServer::start(LOCAL).await;
    let sub = Sub::ok().await;
    let (dir, archive) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = after_archive_on_nats(dir.path(), archive.path(), &sub.url(), nats.urls());
    let h = start(&cfg).await;
    let _lag = common::nats_lag::lagging_replica(&nats.urls()[0]).await;
    let posted = Instant::now();
    for i in 0..6 {
        let (_, url) = files.slow_video(&format!("/k/{i}.mp4"), SLOW);
        let body = runway_media(&format!("task-{i}"), &url, "").to_string();
        accepted_at(h.ingest_addrs[0], "/hooks/runway", &body).await;
    }
    let got = sub
        .wait_for(secs(40), "every after_archive delivery", |r| r.len() == 6)
        .await;
    for r in &got {
        let header: Vec<serde_json::Value> = serde_json::from_str(r.header("hookrelay-media")).unwrap();
        assert!(
            r.at - posted >= SLOW && header.len() == 1 && header[0]["state"] == "stored",
            "delivered {:?} after the callbacks, before its video was stored: {header:?}",
            r.at - posted
        );
    }
    h.shutdown().await;
}

/// An event listing reads past a replica that answers "not found" for an
/// event it has not applied: each such event was passed over as if
/// deleted, and `next_before` went below it, so no page listed it (cluster
/// review, stop 65). Every event is listed, asked again of the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_listing_leaves_out_nothing_a_replica_has_not_applied() {
    let nats = NatsCluster::start_with(1, &common::nats_lag::mappings(&["HR_EV_t"])).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let h = start(
        &TestConfig::new(dir.path())
            .subscriber(Subscriber::new("s", sub.url()))
            .nats(nats.urls(), 1),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(accepted_retrying(h.ingest_addrs[0], &runway(&format!("listed-{i}"))).await);
    }
    let _lag = common::nats_lag::lagging_replica(&nats.urls()[0]).await;
    let (s, page) = admin(h.admin_addr, "GET", "/api/events?limit=12").await;
    assert_eq!(s, http::StatusCode::OK, "{page}");
    let listed: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !listed.contains(&id.as_str())).collect();
    assert!(missing.is_empty(), "left out of the page: {missing:?}\n{page}");
    h.shutdown().await;
}
