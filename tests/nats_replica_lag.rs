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
