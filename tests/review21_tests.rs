//! Review 21: the split pull acknowledgement (`ack_across`), leases of
//! stopped pull lanes in the listing and the gauge, token generations.

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

/// A pull subscriber moved to another route while its forwarder leases a
/// message: the stopped lane's one lease is counted in `leased` of the
/// subscriber's pull row *and* of the `removed` row of its old route (the
/// leased message is pending there), so the listing shows 2 leases for 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_subscribers_stopped_lease_is_listed_once() {
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
    let rows_of_p = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["subscribers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["name"] == "p")
            .cloned()
            .collect()
    };
    // Wait for the listing to show the old route's row.
    let v = admin_until(h.admin_addr, "/api/subscribers", secs(5), |v| rows_of_p(v).len() >= 2).await;
    h.shutdown().await;
    let rows = rows_of_p(&v);
    let total: u64 = rows.iter().map(|r| r["leased"].as_u64().unwrap_or(0)).sum();
    assert_eq!(total, 1, "one message is leased, yet the rows of p show: {rows:?}");
}

/// The token is rotated A → B → A → C while the forwarder leases one
/// message handed out under A the first time (generation 0) and one handed
/// out under A the second time (generation 2). A, replaced, must still
/// acknowledge both (both were leased under it); `earlier_token` takes the
/// first earlier generation A matches (0), so the lease of generation 2 is
/// refused with 409: the forwarder drops that acknowledgement and the
/// delivered message is offered again when its lease runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rotated_back_and_away_again_acknowledges_all_it_leased() {
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new(dir.path());
    let with = |t: &str| {
        base.clone()
            .subscriber(Subscriber::pull("laptop", t).lease(secs(60)))
    };
    let h = start(&with("token-a")).await;
    let addr = h.ingest_addrs[0];
    let first = accepted(addr, &runway("under-a-first")).await;
    let (s, _, v) = pull_call(addr, "GET", "/pull/laptop?wait=5s&max=1", Some("token-a"), Some("fwd"), "").await;
    assert_eq!((s.as_u16(), v["messages"][0]["id"].as_str()), (200, Some(first.as_str())), "{v}");
    with("token-b").write();
    h.reload().await.expect("reload to b");
    with("token-a").write();
    h.reload().await.expect("reload back to a");
    let second = accepted(addr, &runway("under-a-again")).await;
    let (s, _, v) = pull_call(addr, "GET", "/pull/laptop?wait=5s&max=1", Some("token-a"), Some("fwd"), "").await;
    assert_eq!((s.as_u16(), v["messages"][0]["id"].as_str()), (200, Some(second.as_str())), "{v}");
    with("token-c").write();
    h.reload().await.expect("reload to c");
    let body = format!(r#"{{"ids": ["{second}"]}}"#);
    let (s, _, v) = pull_call(addr, "POST", "/pull/laptop/ack", Some("token-a"), Some("fwd"), &body).await;
    let body = format!(r#"{{"ids": ["{first}"]}}"#);
    let (s0, _, v0) = pull_call(addr, "POST", "/pull/laptop/ack", Some("token-a"), Some("fwd"), &body).await;
    h.shutdown().await;
    assert_eq!((s0.as_u16(), v0["acknowledged"].as_u64()), (200, Some(1)), "{v0}");
    assert_eq!(
        (s.as_u16(), v["acknowledged"].as_u64()),
        (200, Some(1)),
        "leased under token-a (its second time), acknowledged with token-a after it was replaced: {v}"
    );
}
