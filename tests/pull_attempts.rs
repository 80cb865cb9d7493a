//! What a pull subscriber's attempts record: a lease that runs out is a
//! failed attempt (the retry schedule, then a dead letter; a release during
//! its lapse does not undo it), and a hand-back keeps what the private
//! service answered (`local`, advisory: an entry the relay cannot use is left
//! out and named, the acknowledgement stands).

use crate::common;
use crate::pull::{ids, laptop_delivery, relay, send, TOKEN};

use common::*;
use http::StatusCode;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_lease_always_runs_out_ends_as_a_dead_letter() {
    // A local service slower than the lease, or a forwarder that dies on this
    // message: each lease that runs out is a failed attempt, so the retry
    // schedule (100ms, 200ms, then dead letter) ends it instead of offering
    // it forever.
    let (_dir, _sub, h) = relay(secs(1)).await;
    let addr = h.ingest_addrs[0];
    let id = send(&h, "never-answered").await;
    for attempt in 1..=3u64 {
        let (_, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s", Some(TOKEN), Some("f"), "").await;
        assert_eq!(ids(&got), vec![id.clone()], "attempt {attempt}: {got}");
        assert_eq!(got["messages"][0]["attempt"].as_u64(), Some(attempt), "{got}");
    }
    let dead = admin_until(h.admin_addr, "/api/dead-letters?subscriber=laptop", secs(5), |d| {
        d["dead_letters"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert_eq!(dead["dead_letters"][0]["event"], id.as_str(), "{dead}");
    assert_eq!(dead["dead_letters"][0]["attempts"], 3, "{dead}");
    let (_, _, none) = pull_call(addr, "GET", "/pull/laptop?wait=300ms", Some(TOKEN), Some("f"), "").await;
    assert!(ids(&none).is_empty(), "a dead letter is not offered: {none}");
    let d = laptop_delivery(&h, &id).await;
    let tries = d["attempts"].as_array().unwrap();
    assert_eq!(tries.len(), 3, "{d}");
    assert!(
        tries.iter().all(|t| t["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("lease expired: no answer from the pull client")),
        "{d}"
    );
    assert_eq!(
        d["last_error"],
        "lease expired: no answer from the pull client within 1s; retry schedule exhausted"
    );
    let (_, m) = admin(h.admin_addr, "GET", "/metrics").await;
    let m = m.as_str().unwrap();
    assert!(
        m.contains("hookrelay_deliveries_total{subscriber=\"laptop\",outcome=\"expired\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("hookrelay_deliveries_total{subscriber=\"laptop\",outcome=\"dead\"} 1"),
        "{m}"
    );
    // The late acknowledgement of the last holder changes nothing.
    let late = format!(r#"{{"ids": ["{id}"]}}"#);
    let (s, _, _) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f"), &late).await;
    assert_eq!(s, StatusCode::CONFLICT);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_local_answers_are_left_out_and_named_and_the_hand_back_stands() {
    let (_dir, _sub, h) = relay(secs(30)).await;
    let addr = h.ingest_addrs[0];
    let never = "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV";
    for (local, warning) in [
        (r#"{"status": 600}"#, "not an HTTP status"),
        (r#"{"status": 200}"#, "is a success"),
        (r#"{}"#, "give status"),
        (r#"{"error": " "}"#, "empty"),
        (r#"{"error": "a\nforged log line"}"#, "control characters"),
    ] {
        let id = send(&h, &format!("local-{warning}")).await;
        let (_, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s", Some(TOKEN), None, "").await;
        assert_eq!(ids(&got), vec![id.clone()], "{got}");
        let body = format!(r#"{{"retry": ["{id}"], "local": {{"{id}": {local}, "{never}": {{"status": 503}}}}}}"#);
        let (s, _, a) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), None, &body).await;
        assert_eq!((s, a["retried"].as_u64()), (StatusCode::OK, Some(1)), "{local}: {a}");
        let warnings = a["warnings"].to_string();
        assert!(
            warnings.contains(warning) && warnings.contains("not in retry"),
            "{local}: {a}"
        );
        let d = laptop_delivery(&h, &id).await;
        assert_eq!(d["attempts"][0]["status"], Value::Null, "{local}: {d}");
        assert_eq!(d["last_error"], "handed back by the pull client", "{local}: {d}");
    }
    // A usable answer next to an id that is not in retry: recorded.
    let id = send(&h, "local-usable").await;
    let (_, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s", Some(TOKEN), None, "").await;
    assert_eq!(ids(&got), vec![id.clone()], "{got}");
    let body = format!(r#"{{"retry": ["{id}"], "local": {{"{id}": {{"error": "connection refused", "later": 1}}}}}}"#);
    let (s, _, a) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), None, &body).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert!(
        a.get("warnings").is_none(),
        "a field of a later version is ignored: {a}"
    );
    let d = laptop_delivery(&h, &id).await;
    assert_eq!(
        d["last_error"], "handed back by the pull client: no answer from the local service: connection refused",
        "{d}"
    );
    h.shutdown().await;
}

/// A forwarder whose local delivery outlasted the lease acknowledges it
/// late: while the message waits out the retry delay it would wait anyway
/// (offered to nobody), that acknowledgement still counts, so a slow but
/// successful delivery is not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_acknowledgement_within_the_retry_delay_still_counts() {
    let dir = tempfile::tempdir().unwrap();
    // The lapse: the retry delay (5 s ±20 %), at most one more lease (4 s):
    // from 4 s to 8 s after the hand-out.
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(4)).retry([secs(5)]);
    let h = start(&TestConfig::new(dir.path()).subscriber(laptop)).await;
    let addr = h.ingest_addrs[0];
    let id = send(&h, "slow-local").await;
    let (_, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s", Some(TOKEN), Some("f"), "").await;
    assert_eq!(ids(&got), vec![id.clone()], "{got}");
    // The lease (4 s) runs out; the lapse has not (3.5 s of slack left).
    tokio::time::sleep(std::time::Duration::from_millis(4500)).await;
    let (_, _, other) = pull_call(addr, "GET", "/pull/laptop?wait=0", Some(TOKEN), Some("g"), "").await;
    assert!(ids(&other).is_empty(), "offered to nobody while it lapses: {other}");
    let ack = format!(r#"{{"ids": ["{id}"]}}"#);
    let (s, _, a) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("g"), &ack).await;
    assert_eq!(s, StatusCode::CONFLICT, "only its holder: {a}");
    let (s, _, a) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f"), &ack).await;
    assert_eq!((s, a["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{a}");
    let d = laptop_delivery(&h, &id).await;
    assert_eq!(
        (d["state"].as_str(), d["attempts_total"].as_u64()),
        (Some("delivered"), Some(1)),
        "{d}"
    );
    // Past the retry delay (due 8–10 s after the hand-out): not offered again.
    let (_, _, none) = pull_call(addr, "GET", "/pull/laptop?wait=8s", Some(TOKEN), Some("f"), "").await;
    assert!(ids(&none).is_empty(), "not offered again: {none}");
    h.shutdown().await;
}

/// The lapse lasts the retry delay but at most one more lease: a message is
/// not kept from everyone (in a cluster: held by one relay) for hours of a
/// long retry delay. After it the attempt is recorded, due when the delay
/// ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapse_lasts_at_most_one_more_lease() {
    let dir = tempfile::tempdir().unwrap();
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(1)).retry([secs(60)]);
    let h = start(&TestConfig::new(dir.path()).subscriber(laptop)).await;
    let addr = h.ingest_addrs[0];
    let id = send(&h, "long-delay").await;
    let (_, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s", Some(TOKEN), Some("f"), "").await;
    assert_eq!(ids(&got), vec![id.clone()], "{got}");
    let d = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(10), |ev| {
        ev["subscribers"][0]["attempts_total"] == 1
    })
    .await;
    // Recorded after the lease and the lapse (2 s), not after the 60 s delay.
    assert_eq!(
        d["subscribers"][0]["attempts"][0]["duration_ms"]
            .as_u64()
            .map(|ms| ms < 10_000),
        Some(true),
        "{d}"
    );
    let ack = format!(r#"{{"ids": ["{id}"]}}"#);
    let (s, _, a) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f"), &ack).await;
    assert_eq!(s, StatusCode::CONFLICT, "the lapse is over: {a}");
    let (_, _, none) = pull_call(addr, "GET", "/pull/laptop?wait=0", Some(TOKEN), Some("f"), "").await;
    assert!(ids(&none).is_empty(), "due when the 60 s delay ends: {none}");
    h.shutdown().await;
}

/// A lease that ran out is a failed attempt (README, "Leases"); its holder
/// may still claim it during the lapse, but a *release* then (a forwarder
/// restarted while its local service outlived the lease) does not undo the
/// expiry: the attempt is recorded, and the message comes again after the
/// retry delay with the next attempt number, not at once as the same one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_a_lapsed_lease_keeps_the_failed_attempt_of_its_expiry() {
    let dir = tempfile::tempdir().unwrap();
    // The lapse: the retry delay (20 s ±20 %), at most one more lease (4 s):
    // from 4 s to 8 s after the hand-out.
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(4)).retry([secs(20)]);
    let h = start(&TestConfig::new(dir.path()).subscriber(laptop)).await;
    let addr = h.ingest_addrs[0];
    let id = accepted(addr, &runway("lapsed-release")).await;
    let (_, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s&max=1", Some(TOKEN), Some("fwd"), "").await;
    assert_eq!(got["messages"][0]["attempt"].as_u64(), Some(1), "{got}");
    // The local service outlives the 4 s lease; then the forwarder is stopped
    // and releases what it still delivers (within the lapse: one more lease).
    tokio::time::sleep(std::time::Duration::from_millis(4400)).await;
    let release = format!(r#"{{"release": ["{id}"]}}"#);
    let (s, _, a) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &release).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(
        a["retried"], 1,
        "offered again after the retry delay, like a hand-back: {a}"
    );
    // Not offered at once: the retry is due 20 s after the expiry.
    let (_, _, again) = pull_call(addr, "GET", "/pull/laptop?wait=1s&max=1", Some(TOKEN), Some("fwd2"), "").await;
    let (_, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    h.shutdown().await;
    let delivery = &ev["subscribers"][0];
    assert_eq!(
        delivery["attempts_total"], 1,
        "the expiry stays a failed attempt after a release within the lapse: {delivery}"
    );
    let error = delivery["attempts"][0]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("lease expired"), "{delivery}");
    assert_eq!(
        again["messages"],
        serde_json::json!([]),
        "not offered again at once: {again}"
    );
}

/// The answer to an earlier hand-out, arriving after the message's lease
/// ran out and it was handed out again to the same puller (a large answer
/// on a slow link): with its attempt number it is refused (`409` naming
/// it), so it does not settle the later hand-out the puller has not seen
/// yet (it did, and the puller then posted that copy a second time); the
/// later hand-out's own answer is taken. An attempt number for an id not in
/// the lists is a bad request. From review 48, pull finding 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_for_an_earlier_hand_out_does_not_settle_a_later_one() {
    let (_dir, _sub, h) = relay(secs(1)).await;
    let addr = h.ingest_addrs[0];
    let id = send(&h, "slow-link").await;
    for attempt in 1..=2u64 {
        let (_, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s", Some(TOKEN), Some("f"), "").await;
        assert_eq!(ids(&got), vec![id.clone()], "{got}");
        assert_eq!(got["messages"][0]["attempt"].as_u64(), Some(attempt), "{got}");
    }
    let ack = |n: u32| format!(r#"{{"ids": ["{id}"], "attempts": {{"{id}": {n}}}}}"#);
    let (s, _, v) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f"), &ack(1)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["not_leased"], serde_json::json!([id]), "{v}");
    assert_eq!(v.get("delivered"), None, "attempt 1's lease ran out: {v}");
    let other = r#"{"ids": ["evt_01ARZ3NDEKTSV4RRFFQ69G5FAV"], "attempts": {"evt_01ARZ3NDEKTSV4RRFFQ69G5FAW": 1}}"#;
    let (s, _, v) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f"), other).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _, v) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f"), &ack(2)).await;
    assert_eq!((s, v["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    let d = laptop_delivery(&h, &id).await;
    assert_eq!(d["state"], "delivered", "{d}");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 2, "{d}");
    h.shutdown().await;
}

/// An acknowledgement sent again after its answer was lost is refused (the
/// lease is over), and the `409` names the id as `delivered`, so the
/// forwarder forgets it — also when an operator's replay made the delivery
/// pending again meanwhile (the attempt named is looked for in its
/// history). An attempt that was not acknowledged is not named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_sent_again_is_named_delivered_when_it_was_recorded() {
    let (_dir, _sub, h) = relay(secs(30)).await;
    let addr = h.ingest_addrs[0];
    let id = send(&h, "answer-lost").await;
    let (_, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s", Some(TOKEN), Some("f"), "").await;
    assert_eq!(ids(&got), vec![id.clone()], "{got}");
    let ack = |n: u32| {
        let body = format!(r#"{{"ids": ["{id}"], "attempts": {{"{id}": {n}}}}}"#);
        async move {
            let (s, _, v) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f"), &body).await;
            (s, v)
        }
    };
    let named = (StatusCode::CONFLICT, serde_json::json!([id]));
    let (s, v) = ack(1).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Sent again (its answer lost): recorded.
    let (s, v) = ack(1).await;
    assert_eq!((s, &v["delivered"]), (named.0, &named.1), "{v}");
    // An operator's replay before the second try arrives.
    let (s, v) = admin(h.admin_addr, "POST", &format!("/api/events/{id}/replay")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = ack(1).await;
    assert_eq!((s, &v["delivered"]), (named.0, &named.1), "{v}");
    // Not the replay's attempt, which nobody acknowledged.
    let (s, v) = ack(2).await;
    assert_eq!((s, v.get("delivered")), (StatusCode::CONFLICT, None), "{v}");
    // The replay leased to the forwarder that delivered attempt 1: asked
    // again about attempt 1 (it does, offered a later attempt of an id whose
    // acknowledgement it never saw confirmed), the relay names it, and the
    // replay's lease is left for the replay's own answer.
    let (_, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s", Some(TOKEN), Some("f"), "").await;
    assert_eq!(ids(&got), vec![id.clone()], "{got}");
    assert_eq!(got["messages"][0]["attempt"].as_u64(), Some(2), "{got}");
    let (s, v) = ack(1).await;
    assert_eq!((s, &v["delivered"]), (named.0, &named.1), "{v}");
    let (s, v) = ack(2).await;
    assert_eq!((s, v["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    h.shutdown().await;
}

/// Two forwarders on one subscriber: the first's lease of attempt 1 runs
/// out (its acknowledgement given up, say), the second delivers attempt 2,
/// and an operator's replay is offered to the first as attempt 3. Asked
/// about attempt 1 (the one it delivered), the relay names the id
/// delivered: a later attempt was acknowledged, so the offer is a replay,
/// posted (it answered "not recorded", and the replay was acknowledged
/// unsent: review of stop 76's change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_attempt_delivered_by_another_forwarder_names_an_earlier_one_delivered() {
    let (_dir, _sub, h) = relay(secs(1)).await;
    let addr = h.ingest_addrs[0];
    let id = send(&h, "two-forwarders").await;
    let pull = |by: &'static str, attempt: u64| {
        let id = id.clone();
        async move {
            let (_, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=10s", Some(TOKEN), Some(by), "").await;
            assert_eq!(ids(&got), vec![id], "{got}");
            assert_eq!(got["messages"][0]["attempt"].as_u64(), Some(attempt), "{got}");
        }
    };
    let ack = |by: &'static str, n: u32| {
        let body = format!(r#"{{"ids": ["{id}"], "attempts": {{"{id}": {n}}}}}"#);
        async move {
            let (s, _, v) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some(by), &body).await;
            (s, v)
        }
    };
    pull("f", 1).await;
    pull("g", 2).await;
    let (s, v) = ack("g", 2).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = admin(h.admin_addr, "POST", &format!("/api/events/{id}/replay")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    pull("f", 3).await;
    let (s, v) = ack("f", 1).await;
    assert_eq!(
        (s, &v["delivered"]),
        (StatusCode::CONFLICT, &serde_json::json!([id])),
        "{v}"
    );
    let (s, v) = ack("f", 3).await;
    assert_eq!((s, v["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    h.shutdown().await;
}
