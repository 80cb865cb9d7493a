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

/// Finding 2: a pull subscriber switched to push by a reload while a
/// message is leased. The forwarder has it; its local service answers 2xx
/// well within the lease, and it acknowledges: the relay refuses (no pull
/// API any more) and the new push lane sends the message again at once. The
/// reverse switch (push to pull, review 13) waits for the attempt in flight;
/// this one forgets the lease (src/delivery/pull/task.rs, end of `run`:
/// `st.leases.drain()`) and the push lane opens the source at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r19_switching_pull_to_push_does_not_deliver_a_leased_message_again() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let pulled = TestConfig::new(dir.path()).subscriber(Subscriber::pull("laptop", TOKEN).lease(secs(30)));
    let h = start(&pulled).await;
    let addr = h.ingest_addrs[0];
    let id = accepted(addr, &runway("switched")).await;
    let (s, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s&max=1", Some(TOKEN), Some("fwd"), "").await;
    assert_eq!(
        (s, got["messages"][0]["id"].as_str()),
        (StatusCode::OK, Some(id.as_str())),
        "{got}"
    );
    // The operator opens an inbound route and switches the subscriber to push.
    TestConfig::new(dir.path())
        .subscriber(Subscriber::new("laptop", sub.url()))
        .write();
    h.reload().await.unwrap();
    // The forwarder's local delivery answers 2xx a moment later, well within the lease.
    let ack = format!(r#"{{"ids": ["{id}"]}}"#);
    let (ack_status, _, ack_answer) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &ack).await;
    tokio::time::sleep(secs(3)).await;
    let pushed = sub.all().iter().filter(|r| r.header("webhook-id") == id).count();
    h.shutdown().await;
    assert_eq!(
        pushed, 0,
        "the message was delivered by the forwarder within its 30 s lease (its acknowledgement answered \
         {ack_status} {ack_answer}) and the push lane sent it again right after the reload"
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
