//! Review 19 (pull subscribers and `hookrelay forward`): failing tests for
//! the findings in notes/review19.md.

use crate::common;

use common::nats::NatsCluster;
use common::*;
use http::StatusCode;

const TOKEN: &str = "laptop-pull-token";

/// Finding 1 (cluster): a forwarder behind a balancer pulls through two
/// relays; both of its local deliveries succeed and its acknowledgements,
/// which finish together, go to the relay in one request (as
/// `hookrelay forward` batches them). The relay answers 409 naming the id
/// the *other* relay leases to this very forwarder, so the forwarder drops
/// it (README: "send the others again without them"); its lease runs out
/// and the delivered message is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r19_a_batched_acknowledgement_of_leases_held_by_two_relays_is_applied() {
    let nats = NatsCluster::start(1).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(30));
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(laptop.clone()).nats(nats.urls(), 1);
    let r1 = start(&cfg(dirs[0].path())).await;
    let r2 = start(&cfg(dirs[1].path())).await;
    let (a1, a2) = (r1.ingest_addrs[0], r2.ingest_addrs[0]);
    let id1 = accepted(a1, &runway("split-1")).await;
    let (s, _, got) = pull_call(a1, "GET", "/pull/laptop?wait=10s&max=1", Some(TOKEN), Some("fwd"), "").await;
    assert_eq!(
        (s, got["messages"][0]["id"].as_str()),
        (StatusCode::OK, Some(id1.as_str())),
        "{got}"
    );
    let id2 = accepted(a2, &runway("split-2")).await;
    let (s, _, got) = pull_call(a2, "GET", "/pull/laptop?wait=10s&max=1", Some(TOKEN), Some("fwd"), "").await;
    assert_eq!(
        (s, got["messages"][0]["id"].as_str()),
        (StatusCode::OK, Some(id2.as_str())),
        "{got}"
    );
    // Both delivered locally: one acknowledgement, through the first relay.
    let ack = format!(r#"{{"ids": ["{id1}", "{id2}"]}}"#);
    let (s, _, v) = pull_call(a1, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &ack).await;
    r1.shutdown().await;
    r2.shutdown().await;
    assert_eq!(
        (s, v["acknowledged"].as_u64()),
        (StatusCode::OK, Some(2)),
        "both ids are leased to this forwarder (one at each relay), yet the relay refused: {v}"
    );
}

// Finding 2 (pull to push switch): moved to tests/pull_to_push.rs.

/// Finding 3 (low): a lease that ran out is a failed attempt (README,
/// "Leases"), but while it lapses its holder may *release* it: the claim
/// accepts a lapsed lease for any list (src/delivery/pull/leases.rs `claim`),
/// and `settle::released` records no attempt, so the expiry vanishes from
/// the history, the message is offered again at once with the same attempt
/// number and no step of the retry schedule is used. A forwarder whose
/// local service outlives the lease and that is restarted (SIGTERM
/// releases what it still delivers) never moves the message toward a dead
/// letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r19_releasing_a_lapsed_lease_keeps_the_failed_attempt_of_its_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(1)).retry([secs(5)]);
    let h = start(&TestConfig::new(dir.path()).subscriber(laptop)).await;
    let addr = h.ingest_addrs[0];
    let id = accepted(addr, &runway("lapsed-release")).await;
    let (_, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s&max=1", Some(TOKEN), Some("fwd"), "").await;
    assert_eq!(got["messages"][0]["attempt"].as_u64(), Some(1), "{got}");
    // The local service outlives the 1 s lease; then the forwarder is stopped
    // and releases what it still delivers (within the lapse: one more lease).
    tokio::time::sleep(std::time::Duration::from_millis(1400)).await;
    let release = format!(r#"{{"release": ["{id}"]}}"#);
    let (s, _, a) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &release).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let (_, _, again) = pull_call(addr, "GET", "/pull/laptop?wait=1s&max=1", Some(TOKEN), Some("fwd2"), "").await;
    let (_, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    h.shutdown().await;
    assert_eq!(
        ev["subscribers"][0]["attempts_total"], 1,
        "the lease ran out (a failed attempt), yet after its release within the lapse no attempt is recorded \
         and the message is offered again at once with the same attempt number; the event's history: {}; \
         the next hand-out: {}",
        ev["subscribers"][0], again["messages"][0]["headers"]
    );
}

/// Finding 4: a pull answer has no size bound (src/pull/mod.rs `pull`:
/// every handed-out message, base64, in one body), but `hookrelay forward`
/// reads at most 128 MiB of it (src/forward/client.rs `MAX_ANSWER`). With
/// `--concurrency 100` and 70 callbacks of 1.5 MB (`max_body = "2MiB"`)
/// the answer is ~140 MB: the forwarder fails to read it ("reading the
/// answer"), backs off and pulls again, while the relay has leased all 70
/// to it. Nothing reaches the local service; each lease runs out (a failed
/// attempt) and the same happens again until the messages are dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r19_large_callbacks_reach_a_forwarder_with_high_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(10)).retry([secs(1); 5]);
    let h = start(&TestConfig::new(dir.path()).max_body(2 << 20).subscriber(laptop)).await;
    let addr = h.ingest_addrs[0];
    let pad = "x".repeat(1_500_000);
    let mut ids = Vec::new();
    for i in 0..70 {
        let body = format!(r#"{{"code":200,"data":{{"task_id":"big-{i}"}},"pad":"{pad}"}}"#);
        ids.push(accepted(addr, &body).await);
    }
    drop(pad);
    let local = common::forward::Local::ok().await;
    let mut fwd = common::forward::Forwarder::start(
        dir.path(),
        &common::forward::pull_url(addr, "laptop"),
        &local.url(),
        TOKEN,
        &["--concurrency", "100", "--timeout", "5s"],
    );
    // Well within the 10 s lease: on loopback this takes a second or two.
    let deadline = tokio::time::Instant::now() + secs(8);
    while local.all().len() < ids.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let got = local.all().len();
    let (_, subs) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    let row = row(&subs["subscribers"], "name", "laptop");
    // What happens next: the leases run out (a failed attempt each) and the
    // messages trickle in again, one expiry at a time, as attempt 2.
    tokio::time::sleep(secs(8)).await;
    let later: Vec<u32> = local.all().iter().map(|g| g.attempt).collect();
    fwd.kill9();
    let log: Vec<String> = fwd
        .log_text()
        .lines()
        .filter(|l| l.contains("answer") || l.contains("WARN") || l.contains("ERROR"))
        .take(3)
        .map(|l| l.chars().take(300).collect())
        .collect();
    h.shutdown().await;
    assert_eq!(
        got,
        ids.len(),
        "the local service received {got} of {} messages in 8 s (within their lease); the relay shows leased={} depth={}; \
         8 s later it had {} of them, with attempt numbers {later:?}; forwarder log: {log:#?}",
        ids.len(),
        row["leased"],
        row["queue_depth"],
        later.len()
    );
}

/// Finding 1, second face: through the other relay, one id of a batch whose
/// lease ran out makes the holder stay silent (src/delivery/pull/peer.rs
/// `serve`: `NotLeased => return`), so the answer, 5 s later, is a 409
/// naming *every* id. On one host (or at the holder) it names only the
/// expired one; the forwarder drops what a 409 names, so the acknowledgement
/// of the live, delivered ones is lost and they are sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r19_through_another_relay_a_409_names_only_the_ids_not_leased() {
    let nats = NatsCluster::start(1).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(2)).retry([ms(100); 3]);
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(laptop.clone()).nats(nats.urls(), 1);
    let r1 = start(&cfg(dirs[0].path())).await;
    let r2 = start(&cfg(dirs[1].path())).await;
    let (a1, a2) = (r1.ingest_addrs[0], r2.ingest_addrs[0]);
    let slow = accepted(a1, &runway("slow-one")).await;
    let (_, _, got) = pull_call(a1, "GET", "/pull/laptop?wait=10s&max=1", Some(TOKEN), Some("fwd"), "").await;
    assert_eq!(got["messages"][0]["id"].as_str(), Some(slow.as_str()), "{got}");
    tokio::time::sleep(ms(1500)).await;
    let quick = accepted(a1, &runway("quick-one")).await;
    let (_, _, got) = pull_call(a1, "GET", "/pull/laptop?wait=10s&max=1", Some(TOKEN), Some("fwd"), "").await;
    assert_eq!(got["messages"][0]["id"].as_str(), Some(quick.as_str()), "{got}");
    // The slow one's lease (and its short lapse) is over; the quick one's runs.
    tokio::time::sleep(ms(800)).await;
    let ack = format!(r#"{{"ids": ["{slow}", "{quick}"]}}"#);
    let (s, _, v) = pull_call(a2, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &ack).await;
    r1.shutdown().await;
    r2.shutdown().await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(
        v["not_leased"],
        serde_json::json!([slow]),
        "the quick one is still leased to this forwarder (at the other relay), yet the 409 names it too, so the \
         forwarder drops its acknowledgement: {v}"
    );
}
