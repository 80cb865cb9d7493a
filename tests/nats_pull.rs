//! Pull subscribers in cluster mode: every relay hands out the messages of
//! one shared cursor, a lease stays with the relay that handed the message
//! out for as long as the lease runs (longer than `takeover`), and a
//! forwarder's acknowledgement may reach any relay: the one holding the
//! lease applies it; a pull subscriber's filter holds as on one host.

use crate::common;

use common::nats::NatsCluster;
use common::*;
use http::StatusCode;

const TOKEN: &str = "laptop-pull-token";

/// Two relays on one NATS node with pull subscriber `laptop` (lease `lease`).
async fn two_relays(
    nats: &NatsCluster,
    lease: std::time::Duration,
) -> (Vec<tempfile::TempDir>, hookrelay::Handle, hookrelay::Handle) {
    two_relays_with(nats, Subscriber::pull("laptop", TOKEN).lease(lease)).await
}

/// Two relays on one NATS node with pull subscriber `laptop` as given.
async fn two_relays_with(
    nats: &NatsCluster,
    laptop: Subscriber,
) -> (Vec<tempfile::TempDir>, hookrelay::Handle, hookrelay::Handle) {
    two_relays_configured(nats, laptop, |c| c).await
}

/// [`two_relays_with`], each relay's config changed by `more`.
async fn two_relays_configured(
    nats: &NatsCluster,
    laptop: Subscriber,
    more: impl Fn(TestConfig) -> TestConfig,
) -> (Vec<tempfile::TempDir>, hookrelay::Handle, hookrelay::Handle) {
    let dirs = vec![tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let cfg = |dir: &std::path::Path| more(TestConfig::new(dir).subscriber(laptop.clone()).nats(nats.urls(), 1));
    let r1 = start(&cfg(dirs[0].path())).await;
    let r2 = start(&cfg(dirs[1].path())).await;
    (dirs, r1, r2)
}

/// Pull through `addr` as forwarder `holder`: the one message, which must be `id`.
async fn pull_one(addr: std::net::SocketAddr, holder: &str, id: &str) {
    let (s, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=10s", Some(TOKEN), Some(holder), "").await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["messages"][0]["id"], id, "{got}");
}

/// The event's one delivery is `delivered`, as both relays' admin APIs show it.
async fn delivered_on_both(r1: &hookrelay::Handle, r2: &hookrelay::Handle, id: &str) -> Vec<serde_json::Value> {
    let mut views = Vec::new();
    for admin_addr in [r1.admin_addr, r2.admin_addr] {
        let ev = admin_until(admin_addr, &format!("/api/events/{id}"), secs(20), |v| {
            v["subscribers"][0]["state"] == "delivered"
        })
        .await;
        assert_eq!(ev["subscribers"][0]["state"], "delivered", "{ev}");
        views.push(ev);
    }
    views
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_through_another_relay_settles_the_lease() {
    let nats = NatsCluster::start(1).await;
    let (_dirs, r1, r2) = two_relays(&nats, secs(30)).await;
    let (a1, a2) = (r1.ingest_addrs[0], r2.ingest_addrs[0]);
    let id = accepted(a1, &runway("acked-elsewhere")).await;
    pull_one(a1, "f1", &id).await;
    // Another holder cannot acknowledge it, through either relay.
    let ack = format!(r#"{{"ids": ["{id}"]}}"#);
    for addr in [a1, a2] {
        let (s, _, v) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f2"), &ack).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
    }
    // The holder's acknowledgement reaches the other relay: applied there.
    let (s, _, a) = pull_call(a2, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f1"), &ack).await;
    assert_eq!((s, a["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{a}");
    for ev in delivered_on_both(&r1, &r2, &id).await {
        assert_eq!(ev["subscribers"][0]["attempts_total"], 1, "{ev}");
    }
    // Settled: the lease is gone, and nothing is offered again.
    let (s, _, v) = pull_call(a1, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f1"), &ack).await;
    assert_eq!(s, StatusCode::CONFLICT, "acknowledged twice: {v}");
    for addr in [a1, a2] {
        let (_, _, after) = pull_call(addr, "GET", "/pull/laptop?wait=1s", Some(TOKEN), Some("f3"), "").await;
        assert_eq!(after["messages"].as_array().map(Vec::len), Some(0), "{after}");
    }
    // A hand-back through the other relay works the same way.
    let id2 = accepted(a2, &runway("handed-back")).await;
    pull_one(a2, "f1", &id2).await;
    let back = format!(r#"{{"retry": ["{id2}"]}}"#);
    let (s, _, a) = pull_call(a1, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f1"), &back).await;
    assert_eq!((s, a["retried"].as_u64()), (StatusCode::OK, Some(1)), "{a}");
    r1.shutdown().await;
    r2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_lease_longer_than_takeover_stays_with_its_relay() {
    let nats = NatsCluster::start(1).await;
    // A lease of 12 s against a takeover of 5 s: the relay holding it renews it.
    let (_dirs, r1, r2) = two_relays(&nats, secs(12)).await;
    let (a1, a2) = (r1.ingest_addrs[0], r2.ingest_addrs[0]);
    let id = accepted(a1, &runway("leased")).await;
    pull_one(a1, "f1", &id).await;
    // Another forwarder long-polls the other relay past the takeover: nothing.
    let (s, _, other) = pull_call(a2, "GET", "/pull/laptop?wait=9s", Some(TOKEN), Some("f2"), "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        other["messages"].as_array().map(Vec::len),
        Some(0),
        "handed out twice: {other}"
    );
    // The holder acknowledges: delivered, seen the same on both relays.
    let ack = format!(r#"{{"ids": ["{id}"]}}"#);
    let (s, _, a) = pull_call(a1, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f1"), &ack).await;
    assert_eq!((s, a["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{a}");
    delivered_on_both(&r1, &r2, &id).await;
    let (_, _, after) = pull_call(a2, "GET", "/pull/laptop?wait=2s", Some(TOKEN), Some("f2"), "").await;
    assert_eq!(after["messages"].as_array().map(Vec::len), Some(0), "{after}");
    r1.shutdown().await;
    r2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_subscribers_filter_hands_out_only_matching_callbacks() {
    let nats = NatsCluster::start(1).await;
    crate::pull::filter_hands_out_only_matching_callbacks(|c| c.nats(nats.urls(), 1)).await;
}

/// The queue depth the admin API shows for a pull subscriber follows the
/// cluster's count (taken once a second, apart from the lane): it shows a
/// waiting callback, then 0 once it is acknowledged, with nothing else
/// happening on the lane after the acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_depth_follows_the_cluster_after_an_acknowledgement() {
    let nats = NatsCluster::start(1).await;
    let (_dirs, r1, r2) = two_relays(&nats, secs(30)).await;
    let depth_is = |n: u64| move |v: &serde_json::Value| row(&v["subscribers"], "name", "laptop")["queue_depth"] == n;
    let id = accepted(r1.ingest_addrs[0], &runway("depth")).await;
    for h in [&r1, &r2] {
        let v = admin_until(h.admin_addr, "/api/subscribers", secs(20), depth_is(1)).await;
        assert!(depth_is(1)(&v), "{v}");
    }
    pull_one(r1.ingest_addrs[0], "f1", &id).await;
    let ack = format!(r#"{{"ids": ["{id}"]}}"#);
    let (s, _, a) = pull_call(
        r1.ingest_addrs[0],
        "POST",
        "/pull/laptop/ack",
        Some(TOKEN),
        Some("f1"),
        &ack,
    )
    .await;
    assert_eq!((s, a["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{a}");
    for h in [&r1, &r2] {
        let v = admin_until(h.admin_addr, "/api/subscribers", secs(20), depth_is(0)).await;
        assert!(depth_is(0)(&v), "{v}");
    }
    r1.shutdown().await;
    r2.shutdown().await;
}

/// A relay nobody pulls through takes nothing of the shared cursor: a
/// forwarder on one relay gets every callback, also those that reached the
/// other relay, without waiting for `takeover`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_without_pullers_leaves_the_work_to_the_others() {
    let nats = NatsCluster::start(3).await;
    // A takeover of 30 s: what a relay nobody pulls through took would come
    // only after it, well past the 15 s the pulls are given here.
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(30));
    let (_dirs, r1, r2) = two_relays_configured(&nats, laptop, |c| c.nats_takeover("30s")).await;
    let (a1, a2) = (r1.ingest_addrs[0], r2.ingest_addrs[0]);
    let mut want = std::collections::HashSet::new();
    for i in 0..30 {
        want.insert(accepted(if i % 2 == 0 { a1 } else { a2 }, &runway(&format!("spread-{i}"))).await);
    }
    let mut got = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + secs(15);
    while got.len() < want.len() && tokio::time::Instant::now() < deadline {
        let (s, _, v) = pull_call(a1, "GET", "/pull/laptop?wait=1s&max=10", Some(TOKEN), Some("f1"), "").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let ids: Vec<String> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        if ids.is_empty() {
            continue;
        }
        let ack = serde_json::json!({ "ids": ids }).to_string();
        let (s, _, a) = pull_call(a1, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f1"), &ack).await;
        assert_eq!(s, StatusCode::OK, "{a}");
        got.extend(ids);
    }
    assert_eq!(
        got, want,
        "every callback through the one relay pulled, before takeover (30 s)"
    );
    r1.shutdown().await;
    r2.shutdown().await;
}

/// A forwarder whose local delivery outlasted the lease acknowledges it
/// late, through the other relay: while the message waits out the retry
/// delay it would wait anyway (held by its relay, offered to nobody), that
/// acknowledgement still counts, so a slow but successful delivery is not
/// handed out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_acknowledgement_within_the_lapse_counts_on_either_relay() {
    let nats = NatsCluster::start(1).await;
    // The lapse: the retry delay (5 s ±20 %), at most one more lease (4 s):
    // from 4 s to 8 s after the hand-out.
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(4)).retry([secs(5)]);
    let (_dirs, r1, r2) = two_relays_with(&nats, laptop).await;
    let (a1, a2) = (r1.ingest_addrs[0], r2.ingest_addrs[0]);
    let id = accepted(a1, &runway("slow-local")).await;
    pull_one(a1, "f1", &id).await;
    let pulled = std::time::Instant::now();
    // The lease (4 s) has run out, the lapse (4 s more) has not.
    tokio::time::sleep(ms(4500)).await;
    for addr in [a1, a2] {
        let (_, _, other) = pull_call(addr, "GET", "/pull/laptop?wait=0", Some(TOKEN), Some("f2"), "").await;
        assert_eq!(
            other["messages"].as_array().map(Vec::len),
            Some(0),
            "offered while it lapses: {other}"
        );
    }
    let ack = format!(r#"{{"ids": ["{id}"]}}"#);
    let (s, _, a) = pull_call(a2, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f1"), &ack).await;
    assert_eq!(
        (s, a["acknowledged"].as_u64()),
        (StatusCode::OK, Some(1)),
        "the late acknowledgement: {a}"
    );
    assert!(
        pulled.elapsed() < secs(8),
        "acknowledged after the lapse: {:?}",
        pulled.elapsed()
    );
    for ev in delivered_on_both(&r1, &r2, &id).await {
        assert_eq!(ev["subscribers"][0]["attempts_total"], 1, "{ev}");
    }
    // Past the retry delay: nothing is handed out again, on either relay.
    let (_, _, none) = pull_call(a1, "GET", "/pull/laptop?wait=7s", Some(TOKEN), Some("f1"), "").await;
    assert_eq!(none["messages"].as_array().map(Vec::len), Some(0), "{none}");
    let (_, _, none) = pull_call(a2, "GET", "/pull/laptop?wait=0", Some(TOKEN), Some("f1"), "").await;
    assert_eq!(none["messages"].as_array().map(Vec::len), Some(0), "{none}");
    r1.shutdown().await;
    r2.shutdown().await;
}

/// A lease that runs out is a failed attempt, recorded after the lapse
/// (the retry delay, but at most one more lease): a relay does not hold
/// the message for a long retry delay (60 s here; hours in production).
/// The retry is due when the delay ends; a late acknowledgement after the
/// lapse no longer counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_recorded_as_a_failed_attempt_after_one_more_lease() {
    let nats = NatsCluster::start(1).await;
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(1)).retry([secs(60)]);
    let (_dirs, r1, r2) = two_relays_with(&nats, laptop).await;
    let (a1, a2) = (r1.ingest_addrs[0], r2.ingest_addrs[0]);
    let id = accepted(a1, &runway("never-answered")).await;
    pull_one(a1, "f1", &id).await;
    let pulled = std::time::Instant::now();
    // Recorded after the lease and the lapse (2 s), seen so on both relays.
    for h in [&r1, &r2] {
        let ev = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(20), |v| {
            v["subscribers"][0]["attempts_total"] == 1
        })
        .await;
        let d = &ev["subscribers"][0];
        assert_eq!(
            d["attempts_total"],
            1,
            "not recorded {:?} after the hand-out: {ev}",
            pulled.elapsed()
        );
        assert_eq!(d["state"], "pending", "a retry, not a dead letter: {ev}");
        assert_eq!(
            d["attempts"][0]["error"], "lease expired: no answer from the pull client within 1s",
            "{ev}"
        );
    }
    assert!(pulled.elapsed() < secs(20), "{:?}", pulled.elapsed());
    let ack = format!(r#"{{"ids": ["{id}"]}}"#);
    let (s, _, a) = pull_call(a1, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f1"), &ack).await;
    assert_eq!(s, StatusCode::CONFLICT, "the lapse is over: {a}");
    // Due when the 60 s delay ends: offered on neither relay now.
    for addr in [a1, a2] {
        let (_, _, none) = pull_call(addr, "GET", "/pull/laptop?wait=1s", Some(TOKEN), Some("f2"), "").await;
        assert_eq!(none["messages"].as_array().map(Vec::len), Some(0), "{none}");
    }
    r1.shutdown().await;
    r2.shutdown().await;
}
