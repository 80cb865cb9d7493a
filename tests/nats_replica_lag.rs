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
    let (_dir, h) = relay_on(&nats, Subscriber::new("s", sub.url())).await;
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

/// Retries while a replica of the results bucket answers "not found" for
/// half the reads: every message that comes again (a retry's delay over, a
/// relay gone) reads its result on the bucket's leader, as a replay's did.
/// Before, a retry that read "not found" stalled: four deliveries took 11
/// to 46 s to reach their dead letters (five runs) against about a second,
/// and a replica holding an older row could hand a delivery another
/// relay had finished back as due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_go_on_at_their_pace_when_a_replica_lags() {
    let (nats, sub, _dir, h) = failing_relay().await;
    let _lag = common::nats_lag::lagging_replica(&nats.urls()[0]).await;
    // About a second with the reads on the leader; 11 to 46 s before, as
    // each retry that read "not found" stalled.
    dead_letters_within(&h, "retried", secs(8)).await;
    // Nothing more comes after the dead letters.
    tokio::time::sleep(ms(500)).await;
    let got = sub.all();
    let mut by_id: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in &got {
        by_id
            .entry(r.header("webhook-id").to_string())
            .or_default()
            .push(r.header("hookrelay-attempt").to_string());
    }
    assert_eq!(by_id.len(), 4, "{by_id:?}");
    for (id, attempts) in &by_id {
        assert_eq!(attempts, &["1", "2", "3"], "the attempts of {id}");
    }
    h.shutdown().await;
}

/// Replays of dead letters while a replica of the results bucket answers
/// "not found" for half the reads: each is queued and sent (the delivery's
/// result is read on the leader). Before, a replay that read "not found"
/// found nothing to replay: about half of them were answered as not queued
/// and never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_of_dead_letters_are_queued_when_a_replica_lags() {
    let (nats, sub, _dir, h) = failing_relay().await;
    let ids = dead_letters_within(&h, "replayed", secs(30)).await;
    let _lag = common::nats_lag::lagging_replica(&nats.urls()[0]).await;
    for id in &ids {
        let (s, v) = admin(
            h.admin_addr,
            "POST",
            &format!("/api/events/{id}/replay?subscriber=s&only=dead"),
        )
        .await;
        assert_eq!(
            (s, v["queued"].clone()),
            (http::StatusCode::OK, serde_json::json!(["s"])),
            "{id}: {v}"
        );
    }
    sub.wait_for(secs(20), "the four replays", |r| {
        r.iter().filter(|r| r.header("hookrelay-attempt") == "4").count() == 4
    })
    .await;
    h.shutdown().await;
}

/// A relay in cluster mode on one NATS node whose results bucket's reads
/// can be lagged ([`common::nats_lag`]), its subscriber `s` always
/// answering `500`: the test schedule (two retries, 100 and 200 ms), then a
/// dead letter; no circuit.
async fn failing_relay() -> (NatsCluster, Sub, tempfile::TempDir, hookrelay::Handle) {
    failing_relay_with(&common::nats_lag::mappings(&["KV_hr_results"])).await
}

/// [`failing_relay`] on a NATS node started with `server_config` added.
pub(crate) async fn failing_relay_with(
    server_config: &str,
) -> (NatsCluster, Sub, tempfile::TempDir, hookrelay::Handle) {
    let nats = NatsCluster::start_with(1, server_config).await;
    let sub = Sub::always(Behaviour::Status(500)).await;
    let (dir, h) = relay_on(&nats, Subscriber::new("s", sub.url()).circuit_threshold(100)).await;
    (nats, sub, dir, h)
}

/// A relay in cluster mode on `nats` (one copy of each stream) with the one
/// subscriber `sub`; its directory, and its handle.
pub(crate) async fn relay_on(nats: &NatsCluster, sub: Subscriber) -> (tempfile::TempDir, hookrelay::Handle) {
    let dir = tempfile::tempdir().unwrap();
    let h = start(&TestConfig::new(dir.path()).subscriber(sub).nats(nats.urls(), 1)).await;
    (dir, h)
}

/// Post four callbacks (task ids `<tag>-N`) and assert each is a dead
/// letter after its three attempts within `limit` of the posting; their ids.
pub(crate) async fn dead_letters_within(h: &hookrelay::Handle, tag: &str, limit: Duration) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(accepted_retrying(h.ingest_addrs[0], &runway(&format!("{tag}-{i}"))).await);
    }
    let deadline = Instant::now() + limit;
    for id in &ids {
        let path = format!("/api/events/{id}");
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = admin_until(h.admin_addr, &path, left, |v| v["subscribers"][0]["state"] == "dead").await;
        let d = &ev["subscribers"][0];
        assert_eq!(
            (d["state"].as_str(), d["attempts_total"].as_u64()),
            (Some("dead"), Some(3)),
            "not a dead letter after three attempts within {limit:?}: {ev}"
        );
    }
    ids
}
