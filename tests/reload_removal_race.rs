//! A callback whose request began before a reload that removes its
//! subscriber, and is stored after it: the removal decides. The event is
//! not for the removed subscriber — not listed as its delivery by
//! `/api/events/{id}`, not counted for it by `/api/subscribers` or the
//! start-up warning, not sent when it comes back — as a callback that
//! arrives while it is away. Embedded store and cluster mode. From review
//! 13, finding 1.

use crate::common;

use common::nats::NatsCluster;
use common::*;

async fn not_for_the_removed_subscriber(base: TestConfig) {
    let s = Sub::ok().await;
    let with_s = base
        .clone()
        .subscriber(Subscriber::new("s", DOWN).retry([secs(3600)]))
        .subscriber(Subscriber::new("other", DOWN));
    let h = start(&with_s).await;
    let addr = h.ingest_addrs[0];
    let body = runway("across-the-reload");
    let (c, tail) = common::client::half_sent_callback(addr, &body).await;
    // Begun under the config before the reload: its head is read.
    common::client::read_by_server(&c).await;
    // s removed (another subscriber keeps the route; a reload that replaces
    // all of them is refused for a retry: `moved_route.rs`).
    base.clone().subscriber(Subscriber::new("other", DOWN)).write();
    h.reload().await.expect("reload");
    let answer = common::client::finish_half_sent(c, &tail).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let json_at = answer.find("\r\n\r\n").unwrap() + 4;
    let v: serde_json::Value = serde_json::from_str(&answer[json_at..]).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let (_, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    let for_s = ev["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "s")
        .cloned();
    assert_eq!(
        for_s, None,
        "event {id}, stored after the reload that removed s, is listed for s: {ev}"
    );
    let (_, subs) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    let listed = subs["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "s")
        .cloned();
    assert_eq!(listed, None, "nothing is pending for s: {subs}");
    // Nor at the next start, and s back (on a subscriber that answers) does not get it.
    h.shutdown().await;
    let h = start(&base.clone().subscriber(Subscriber::new("s", s.url()))).await;
    let back = accepted(h.ingest_addrs[0], &runway("after-return")).await;
    s.wait_for(secs(10), "the callback after the return", |r| {
        r.iter().any(|x| x.header("webhook-id") == back)
    })
    .await;
    assert_eq!(
        seen_ids(&s).get(&id),
        None,
        "event {id} was sent to s when it came back"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_a_callback_accepted_across_the_reload_that_removes_its_subscriber_is_not_for_it_in_any_view() {
    let dir = tempfile::tempdir().unwrap();
    not_for_the_removed_subscriber(TestConfig::new(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_a_callback_accepted_across_the_reload_that_removes_its_subscriber_is_not_for_it_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    not_for_the_removed_subscriber(TestConfig::new(dir.path()).nats(nats.urls(), 1)).await;
}
