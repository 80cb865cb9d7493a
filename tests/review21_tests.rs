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
