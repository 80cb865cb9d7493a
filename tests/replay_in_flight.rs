//! An operator's replay asked while the delivery's attempt is under way:
//! answered `already_pending` (a second send at once would duplicate it),
//! and kept — the attempt failing, the last of its schedule too, leaves the
//! delivery due at once, its schedule from the start, not a dead letter
//! and not at its retry's later time. On one host and in cluster mode.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::StatusCode;

/// A subscriber failing the first attempt at once and the second after
/// `late` (the replay comes meanwhile), then taking every later one.
async fn failing_twice(late: Duration) -> Sub {
    let script = std::sync::Arc::new(move |n: usize, _: &Received| match n {
        0 => Behaviour::Status(500),
        1 => Behaviour::Late(late, 503),
        _ => Behaviour::Status(200),
    });
    Sub::start(script).await
}

/// Replay event `id` while `sub` holds its second attempt.
async fn replay_during_second_attempt(h: &hookrelay::Handle, sub: &Sub, id: &str) {
    sub.wait_for(Duration::from_secs(10), "the second attempt", |r| r.len() == 2)
        .await;
    replay(h, id).await;
}

/// Replay event `id`; the API answers that it is already pending.
async fn replay(h: &hookrelay::Handle, id: &str) {
    let json = [("content-type", "application/json")];
    let path = format!("/api/events/{id}/replay");
    let (s, _, body) = request(h.admin_addr, None, "POST", &path, &json, Bytes::new()).await;
    assert_eq!(s, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["already_pending"][0], "s", "{answer}");
}

/// The event's view once its delivery is delivered.
async fn delivered(h: &hookrelay::Handle, id: &str) -> serde_json::Value {
    let view = admin_until(
        h.admin_addr,
        &format!("/api/events/{id}"),
        Duration::from_secs(10),
        |v| v["subscribers"][0]["state"] == "delivered",
    )
    .await;
    assert_eq!(view["subscribers"][0]["state"], "delivered", "{view}");
    view
}

async fn delivered_by_a_third_attempt(h: &hookrelay::Handle, sub: &Sub, id: &str) {
    sub.wait_for(
        Duration::from_secs(10),
        "a third attempt, for the replay asked during the second",
        |r| r.len() == 3,
    )
    .await;
    let view = delivered(h, id).await;
    assert_eq!(
        view["subscribers"][0]["attempts"].as_array().map(Vec::len),
        Some(3),
        "{view}"
    );
    let got = sub.all();
    assert_eq!(got[2].header("hookrelay-attempt"), "3");
    assert_eq!(got[2].header("webhook-id"), got[0].header("webhook-id"));
    let (_, dead) = admin(h.admin_addr, "GET", "/api/dead-letters").await;
    assert_eq!(dead["dead_letters"].as_array().map(Vec::len), Some(0), "{dead}");
}

/// The subscriber, retrying on `retry`, fails the first attempt and the
/// second after 1.5 s; a replay asked during the second is kept. `nats`:
/// in cluster mode (one NATS server).
async fn a_replay_during_the_second_attempt_is_kept(retry: &[Duration], name: &str, nats: bool) {
    let dir = tempfile::tempdir().unwrap();
    let sub = failing_twice(Duration::from_millis(1500)).await;
    let mut cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()).retry(retry.to_vec()));
    let cluster = match nats {
        true => Some(common::nats::NatsCluster::start(1).await),
        false => None,
    };
    if let Some(c) = &cluster {
        cfg = cfg.nats(c.urls(), 1);
    }
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway(name)).await;
    replay_during_second_attempt(&h, &sub, &id).await;
    delivered_by_a_third_attempt(&h, &sub, &id).await;
    h.shutdown().await;
}

/// The replay comes during the last attempt of the schedule (one retry):
/// before, that attempt's failure made the delivery a dead letter, the
/// replay said `already_pending` and nothing more was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_during_the_last_attempt_is_sent_when_it_fails() {
    a_replay_during_the_second_attempt_is_kept(&[Duration::from_millis(200)], "last", false).await;
}

/// The replay comes during an attempt whose failure schedules the next an
/// hour later: before, the replay only restarted the schedule's count and
/// the delivery waited the hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_during_an_attempt_is_not_left_to_the_next_retry() {
    let hour = Duration::from_secs(3600);
    a_replay_during_the_second_attempt_is_kept(&[Duration::from_millis(200), hour, hour], "hour", false).await;
}

/// Both in cluster mode: the relay sending the attempt writes its outcome
/// over the result it read, and merges a replay's mark written meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_mode_a_replay_during_an_attempt_is_kept_too() {
    let hour = Duration::from_secs(3600);
    a_replay_during_the_second_attempt_is_kept(&[Duration::from_millis(200)], "nats-last", true).await;
    a_replay_during_the_second_attempt_is_kept(&[Duration::from_millis(200), hour, hour], "nats-hour", true).await;
}

/// A replay during an attempt that succeeds asks for nothing more: the
/// mark goes with the success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_during_an_attempt_that_succeeds_sends_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let script = std::sync::Arc::new(|n: usize, _: &Received| match n {
        0 => Behaviour::Status(500),
        _ => Behaviour::Slow(Duration::from_millis(1500)),
    });
    let sub = Sub::start(script).await;
    let cfg =
        TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()).retry([Duration::from_millis(200)]));
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("ok")).await;
    replay_during_second_attempt(&h, &sub, &id).await;
    let view = delivered(&h, &id).await;
    assert_eq!(
        view["subscribers"][0]["attempts"].as_array().map(Vec::len),
        Some(2),
        "{view}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(sub.all().len(), 2, "sent again after its success");
    h.shutdown().await;
}

/// Cluster mode: a replay asked while a retry, handed out already, waits
/// for its subscriber's rate (before its attempt is numbered): the relay
/// sends it when the rate allows, the replay's mark taken in, and applies
/// the mark to its failure. Before, the attempt's numbering found the
/// result moved and let the message go: nothing was sent until
/// `store.nats.takeover` (60 s here) ran out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_mode_a_replay_while_a_retry_waits_for_the_rate_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let nats = common::nats::NatsCluster::start(1).await;
    // Fails twice at once, then takes it.
    let sub = Sub::start(std::sync::Arc::new(|n: usize, _: &Received| match n {
        0 | 1 => Behaviour::Status(500),
        _ => Behaviour::Status(200),
    }))
    .await;
    let hour = Duration::from_secs(3600);
    let cfg = TestConfig::new(dir.path())
        .subscriber(
            Subscriber::new("s", sub.url())
                .retry([Duration::from_millis(200), hour])
                .rate("6/m"),
        )
        .nats(nats.urls(), 1)
        .nats_takeover("60s");
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("nats-rate")).await;
    sub.wait_for(Duration::from_secs(10), "the first attempt", |r| r.len() == 1)
        .await;
    // The retry is due in 200 ms and waits for the rate's next cell (10 s).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sub.count(), 1);
    replay(&h, &id).await;
    // Sent at the rate's next cell (~8 s on), failing: due at once for the
    // replay, sent at the cell after (~18 s on), taken.
    let got = sub
        .wait_for(Duration::from_secs(40), "the retry and the replay's attempt", |r| {
            r.len() == 3
        })
        .await;
    assert_eq!(
        got.iter()
            .map(|r| r.header("hookrelay-attempt").to_string())
            .collect::<Vec<_>>(),
        ["1", "2", "3"]
    );
    delivered(&h, &id).await;
    h.shutdown().await;
}
