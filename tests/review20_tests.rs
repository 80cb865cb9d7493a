//! Review 20: failing tests for findings in the merged pull-handover,
//! connection-share and config-error changes (notes/review20.md).

use crate::common;

use common::*;

fn route_u(subs: Vec<Subscriber>) -> Route {
    subs.into_iter().fold(
        Route::new("u", "/hooks/u")
            .tokens(["tok"])
            .dedupe_key(["/data/task_id"]),
        Route::subscriber,
    )
}

/// Finding 1: a forwarder's acknowledgement batch holding a lease of the
/// lane a reload stopped (the subscriber moved to another route) *and* a
/// lease of its new lane is refused with 409 naming the stopped lane's id
/// (src/pull/mod.rs `ack`: the current lane answers NotLeased for fewer than
/// all ids, so the loop breaks before the stopped lane is asked). The
/// forwarder drops what a 409 names (src/forward/acker.rs), so the delivered
/// message's lease runs out and it is delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r20_an_ack_batch_spanning_a_stopped_lane_and_the_new_one_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (b, c) = (Sub::ok().await, Sub::ok().await);
    let p = || Subscriber::pull("p", "p-token").lease(secs(60));
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("c", c.url()));
    let on_t = base
        .clone()
        .subscriber(p())
        .route(route_u(vec![Subscriber::new("b", b.url())]));
    let on_u = base.route(route_u(vec![Subscriber::new("b", b.url()), p()]));
    let h = start(&on_t).await;
    let addr = h.ingest_addrs[0];
    let old = accepted(addr, &runway("old-lane")).await;
    let (s, _, v) = pull_call(addr, "GET", "/pull/p?wait=10s&max=5", Some("p-token"), Some("f1"), "").await;
    assert_eq!(
        (s.as_u16(), v["messages"][0]["id"].as_str()),
        (200, Some(old.as_str())),
        "{v}"
    );

    on_u.write();
    h.reload().await.expect("reload");
    let fresh = accepted_at(addr, "/hooks/u?token=tok", &runway("new-lane")).await;
    let (s, _, v) = pull_call(addr, "GET", "/pull/p?wait=10s&max=5", Some("p-token"), Some("f1"), "").await;
    assert_eq!(
        (s.as_u16(), v["messages"][0]["id"].as_str()),
        (200, Some(fresh.as_str())),
        "{v}"
    );

    // Both delivered by the forwarder: one acknowledgement batch.
    let body = format!(r#"{{"ids": ["{old}", "{fresh}"]}}"#);
    let (s, _, v) = pull_call(addr, "POST", "/pull/p/ack", Some("p-token"), Some("f1"), &body).await;
    h.shutdown().await;
    assert_eq!(
        (s.as_u16(), v["acknowledged"].as_u64()),
        (200, Some(2)),
        "both ids are leased to f1 (one by the stopped lane, one by the new one), yet: {v}"
    );
}
