//! Cluster mode: NATS expires an event `store.retention` after it arrived
//! and its dead letter `store.retention` after the delivery died, so a
//! letter outlives its event by as long as the delivery was retried. Such a
//! letter was listed (under an id of 1970) and a replay of all dead letters
//! counted it `requeued`, took it off the list and sent nothing. Now it is
//! left out of the list and of its subscriber's dead-letter count (and
//! gauge, which counted it until the sweep), a replay drops it uncounted,
//! and the retention sweep drops it. The event's expiry is made here by
//! removing its message (what `max_age` does).

use crate::common;

use async_nats::jetstream;
use common::nats::NatsCluster;
use common::*;
use http::StatusCode;

/// The stream's events removed, as `max_age` removes them.
async fn expire_events(nats: &NatsCluster) {
    let js = jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    let mut stream = js.get_stream("HR_EV_t").await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    for seq in state.first_sequence..=state.last_sequence {
        let _ = stream.delete_message(seq).await;
    }
}

async fn one_dead_letter(h: &hookrelay::Handle, task: &str) {
    accepted(h.ingest_addrs[0], &runway(task)).await;
    admin_expect(h.admin_addr, "/api/dead-letters", secs(20), "one dead letter", |v| {
        v["dead_letters"].as_array().is_some_and(|d| d.len() == 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_whose_event_expired_is_not_listed_nor_counted_as_replayed() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::always(Behaviour::Status(410)).await; // gone: dead at once
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    one_dead_letter(&h, "expired-1").await;
    expire_events(&nats).await;

    let (st, v) = admin(h.admin_addr, "GET", "/api/dead-letters").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["dead_letters"], serde_json::json!([]), "{v}");
    assert_eq!(v["total"], 0, "{v}");
    // Nor counted in the subscriber's dead letters (and its gauge) until swept.
    let (_, subs) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    assert_eq!(
        row(&subs["subscribers"], "name", "s")["dead_letters"],
        0,
        "expired, not swept yet: {subs}"
    );
    let (st, v) = admin(h.admin_addr, "POST", "/api/dead-letters/replay").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["requeued"], 0, "nothing could be sent: {v}");
    let (_, subs) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    assert_eq!(
        row(&subs["subscribers"], "name", "s")["dead_letters"],
        0,
        "dropped: {subs}"
    );
    assert_eq!(sub.count(), 1, "only the first attempt");

    // A later one, dropped by the retention sweep.
    one_dead_letter(&h, "expired-2").await;
    expire_events(&nats).await;
    h.app.store.sweep(0).await.unwrap();
    let (_, subs) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    assert_eq!(
        row(&subs["subscribers"], "name", "s")["dead_letters"],
        0,
        "swept: {subs}"
    );

    // A letter whose event is still there is listed and replayed as before.
    one_dead_letter(&h, "kept").await;
    let (_, v) = admin(h.admin_addr, "POST", "/api/dead-letters/replay").await;
    assert_eq!(v["requeued"], 1, "{v}");
    sub.wait_for(secs(10), "the replay", |r| r.len() == 4).await;
    h.shutdown().await;
}
