//! Cluster mode: when the forwarder whose long-poll made a relay take
//! messages from NATS leaves before its answer, nobody waits for them there
//! any more; they go back to NATS at once, their attempt number not spent,
//! so that the forwarder, now pulling through another relay, gets them
//! without waiting for anything at the first relay
//! (src/delivery/pull/task.rs `give_back_ready`). On one host the message
//! stays ready at the relay instead.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use common::nats::NatsCluster;
use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::slow_proxy::{scripted_proxy, Conn};
use common::tasks::config_at;
use common::*;
use hookrelay::provider::Product;
use http::StatusCode;
use tokio::io::AsyncWriteExt;

const TOKEN: &str = "laptop-pull-token";

/// Route `runway` (`kie-runway`, `verify = "fetch"` at `provider`, no
/// reconcile) whose one subscriber is pull subscriber `laptop`, with a lease
/// (5 min) far longer than this test.
fn route(fake: &FakeProvider, provider: &str) -> Route {
    common::tasks::verified_runway(fake, provider).subscriber(Subscriber::pull("laptop", TOKEN).lease(secs(300)))
}

/// Long-poll `relay` as forwarder `fwd` on a raw connection, and close it
/// once the relay has called the provider (its first `connections`: the
/// check of the message it took for that poll, held 3 s); when it left.
async fn poll_and_leave(relay: SocketAddr, connections: &AtomicUsize) -> Instant {
    let mut poll = tokio::net::TcpStream::connect(relay).await.unwrap();
    let head = format!(
        "GET /pull/laptop?wait=30s&max=1 HTTP/1.1\r\nhost: relay\r\nauthorization: Bearer {TOKEN}\r\n\
         hookrelay-forwarder: fwd\r\n\r\n"
    );
    poll.write_all(head.as_bytes()).await.unwrap();
    let end = Instant::now() + secs(10);
    while connections.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < end,
            "the relay did not take the message for the long-poll"
        );
        tokio::time::sleep(ms(10)).await;
    }
    drop(poll);
    Instant::now()
}

/// Relay A takes the callback from NATS for a long-poll of forwarder `fwd`
/// and checks it at the provider (`verify = "fetch"`), which relay A reaches
/// through a proxy that holds that call 3 s: the test closes the long-poll's
/// connection meanwhile. When the check passes, the message is ready at A
/// and nobody waits there: it must go back to NATS at once. `fwd` pulls
/// through relay B right after it left A and must get the message within a
/// few seconds (the check's 3 s, and some; asserted under 14 s), with attempt 1, then
/// acknowledges it: delivered once, and offered by neither relay again.
/// Without the give-back relay A kept the message ready, held (renewed)
/// until a puller came to A: B's pull got nothing in its 15 s wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pullers_messages_go_back_to_the_cluster_when_it_leaves_before_its_answer() {
    let nats = NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    // Relay A's first call to the provider (its check of the callback) is
    // held 3 s; later ones go through at once.
    let (proxy, connections) = scripted_proxy(fake.addr(), |n| match n {
        0 => Conn::PassAfter(secs(3)),
        _ => Conn::Pass,
    })
    .await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (addr_a, addr_b) = (free_addr(), free_addr());
    let a = start(&config_at(da.path(), addr_a, route(&fake, &format!("http://{proxy}"))).nats(nats.urls(), 1)).await;
    let b = start(&config_at(db.path(), addr_b, route(&fake, &fake.url())).nats(nats.urls(), 1)).await;
    let hooks = format!("http://{addr_a}/hooks/runway");
    let task = fake.create(Product::Runway, TaskPlan::success(), Some(&hooks));
    let events = admin_until(a.admin_addr, "/api/events", secs(20), |v| {
        v["events"].as_array().is_some_and(|e| e.len() == 1)
    })
    .await;
    let id = event_ids(&events).pop().expect("the callback was accepted");
    // Nobody pulls yet: no relay took it (no check at the provider).
    assert_eq!(connections.load(Ordering::SeqCst), 0);

    // Forwarder `fwd` long-polls relay A, and leaves while A checks the
    // message it took for it.
    let left = poll_and_leave(addr_a, &connections).await;

    // It pulls through relay B now: the message comes once A's check is
    // over (3 s), not after A's lease (5 min), nor never.
    let (s, _, got) = pull_call(
        addr_b,
        "GET",
        "/pull/laptop?wait=15s&max=5",
        Some(TOKEN),
        Some("fwd"),
        "",
    )
    .await;
    let took = left.elapsed();
    assert_eq!(s, StatusCode::OK, "{got}");
    let messages = got["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        messages.len(),
        1,
        "task {task}: the forwarder left relay A before its answer, yet relay B did not hand out the message \
         A took for it (within {took:?}): {got}"
    );
    let m = &messages[0];
    assert!(
        took < secs(14),
        "task {task}: relay B handed the message out only {took:?} after the forwarder left relay A"
    );
    assert_eq!(
        (
            m["id"].as_str(),
            m["attempt"].as_u64(),
            m["headers"]["webhook-id"].as_str(),
            m["headers"]["hookrelay-attempt"].as_str(),
        ),
        (Some(id.as_str()), Some(1), Some(id.as_str()), Some("1")),
        "the attempt number of a message nobody got is not spent: {got}"
    );

    // Delivered once: acknowledged through B, and offered by neither relay again.
    acknowledge_once(&id, addr_b, &[(&a, addr_a), (&b, addr_b)]).await;
    a.shutdown().await;
    b.shutdown().await;
}

/// On one host (the embedded store) the message stays ready at the relay
/// when the forwarder leaves before its answer (the cursor offers nothing it
/// handed out again before a restart, so giving it back would lose it until
/// then): the forwarder's next pull gets it at once, with attempt 1, and it
/// is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_host_a_pullers_messages_stay_ready_when_it_leaves_before_its_answer() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let (proxy, connections) = scripted_proxy(fake.addr(), |n| match n {
        0 => Conn::PassAfter(secs(3)),
        _ => Conn::Pass,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let h = start(&config_at(dir.path(), addr, route(&fake, &format!("http://{proxy}")))).await;
    let hooks = format!("http://{addr}/hooks/runway");
    let task = fake.create(Product::Runway, TaskPlan::success(), Some(&hooks));
    let events = admin_until(h.admin_addr, "/api/events", secs(20), |v| {
        v["events"].as_array().is_some_and(|e| e.len() == 1)
    })
    .await;
    let id = event_ids(&events).pop().expect("the callback was accepted");
    let left = poll_and_leave(addr, &connections).await;
    let (s, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=15s&max=5", Some(TOKEN), Some("fwd"), "").await;
    let took = left.elapsed();
    assert_eq!(s, StatusCode::OK, "{got}");
    let messages = got["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        messages.len(),
        1,
        "task {task}: the message taken for a forwarder that left was not handed out again (within {took:?}): {got}"
    );
    assert!(
        took < secs(14),
        "task {task}: handed out again only {took:?} after the forwarder left"
    );
    let m = &messages[0];
    assert_eq!(
        (
            m["id"].as_str(),
            m["attempt"].as_u64(),
            m["headers"]["hookrelay-attempt"].as_str()
        ),
        (Some(id.as_str()), Some(1), Some("1")),
        "the attempt number of a message nobody got is not spent: {got}"
    );
    acknowledge_once(&id, addr, &[(&h, addr)]).await;
    h.shutdown().await;
}

/// Acknowledge `id` through `through` and check it was delivered once: at
/// every relay its one attempt is recorded delivered, and none offers it again.
async fn acknowledge_once(id: &str, through: SocketAddr, relays: &[(&hookrelay::Handle, SocketAddr)]) {
    let ack = format!(r#"{{"ids": ["{id}"]}}"#);
    let (s, _, v) = pull_call(through, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &ack).await;
    assert_eq!((s, v["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    for (h, _) in relays {
        let ev = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(20), |v| {
            v["subscribers"][0]["state"] == "delivered"
        })
        .await;
        let d = &ev["subscribers"][0];
        assert_eq!(
            (d["state"].as_str(), d["attempts_total"].as_u64()),
            (Some("delivered"), Some(1)),
            "{ev}"
        );
    }
    for (_, addr) in relays {
        let (_, _, after) = pull_call(*addr, "GET", "/pull/laptop?wait=1s", Some(TOKEN), Some("fwd"), "").await;
        assert_eq!(
            after["messages"].as_array().map(Vec::len),
            Some(0),
            "handed out again: {after}"
        );
    }
}

/// A message the relay took from NATS for a long-poll that ended first
/// (NATS's pull request outlives the long-poll) is given back unread after
/// 2 s. NATS counts that hand-out, and a first delivery without a result
/// was numbered by the count: sent as attempt 2, with no attempt 1 in its
/// history (2 % of the first deliveries of a cluster pull soak, stop 77).
/// Its attempt number is kept now (src/store/nats/give_back.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_given_back_unread_is_first_offered_as_attempt_1() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::pull("laptop", TOKEN).lease(secs(60)))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    let pull = |wait: &'static str| async move {
        let path = format!("/pull/laptop?wait={wait}&max=4");
        let (s, _, got) = pull_call(addr, "GET", &path, Some(TOKEN), Some("fwd"), "").await;
        assert_eq!(s, StatusCode::OK, "{got}");
        got
    };
    let got = pull("1s").await;
    assert_eq!(got["messages"].as_array().map(Vec::len), Some(0), "{got}");
    // Arrives on the relay's pull request to NATS, which outlived the
    // long-poll; nobody wants it there, so it goes back after 2 s.
    let id = accepted(addr, &runway("unread")).await;
    tokio::time::sleep(ms(3500)).await;
    let got = pull("10s").await;
    let m = &got["messages"][0];
    assert_eq!(m["id"], id.as_str(), "{got}");
    assert_eq!(m["attempt"], 1, "given back unread, not an attempt: {got}");
    assert_eq!(m["headers"]["hookrelay-attempt"], "1", "{got}");
    let body = format!(r#"{{"ids": ["{id}"], "attempts": {{"{id}": 1}}}}"#);
    let (s, _, v) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let view = admin_expect(h.admin_addr, &format!("/api/events/{id}"), secs(10), "delivered", |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    let sub = &view["subscribers"][0];
    assert_eq!(sub["attempts_total"], 1, "{view}");
    assert_eq!(sub["attempts"][0]["attempt"], 1, "{view}");
    h.shutdown().await;
}
