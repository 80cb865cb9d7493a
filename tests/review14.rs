//! Hostile review 14: failing tests of findings in the review 12/13 fixes
//! (handover of attempts in flight at a reload, kept rate limiters).

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;

/// A subscriber whose first request is answered 200 after `first`, the others at once.
async fn slow_first(first: Duration) -> Sub {
    Sub::start(Arc::new(move |n, _| {
        if n == 0 {
            Behaviour::Slow(first)
        } else {
            Behaviour::Status(200)
        }
    }))
    .await
}

/// Finding 3: a subscriber moved to another route keeps its URL and `rate`
/// but gets a new lane, whose limiter starts empty: rate = "1/h" sent the
/// next request seconds after the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_moving_a_subscriber_to_another_route_does_not_reset_its_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let limited = || Subscriber::new("limited", sub.url());
    let rate = |doc: &mut toml::Table, route: usize, i: usize| {
        doc["routes"][route]["subscribers"][i]
            .as_table_mut()
            .unwrap()
            .insert("rate".into(), toml::Value::String("1/h".into()));
    };
    let route_u = |subs: Vec<Subscriber>| {
        subs.into_iter()
            .fold(Route::new("u", "/hooks/u").tokens(["tok"]), Route::subscriber)
    };
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("other", DOWN));
    let on_t = base
        .clone()
        .subscriber(limited())
        .route(route_u(vec![Subscriber::new("b", DOWN)]))
        .raw(move |doc| rate(doc, 0, 1));
    let on_u = base
        .route(route_u(vec![Subscriber::new("b", DOWN), limited()]))
        .raw(move |doc| rate(doc, 1, 1));
    let h = start(&on_t).await;
    accepted(h.ingest_addrs[0], &runway("one")).await;
    sub.wait_for(secs(5), "the first delivery", |r| r.len() == 1).await;
    on_u.write();
    h.reload().await.expect("reload moving limited to u");
    accepted_at(h.ingest_addrs[0], "/hooks/u?token=tok", &runway("two")).await;
    tokio::time::sleep(secs(3)).await;
    assert_eq!(
        sub.count(),
        1,
        "rate 1/h: a second request within seconds of the first, after a reload that moved the subscriber"
    );
    h.shutdown().await;
}

/// Finding 4: while a subscriber's new lane waits for its stopped lane's
/// attempts (the handover, up to `timeout` + 2 s), `/api/subscribers` and
/// `hookrelay_queue_depth` say nothing is pending for it (the new lane's
/// depth is 0 until its source opens), though its backlog is in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_a_subscriber_waiting_for_the_handover_shows_its_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let sub = slow_first(secs(8)).await;
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("other", DOWN));
    let with_s = base
        .clone()
        .subscriber(Subscriber::new("s", sub.url()).timeout(secs(10)).concurrency(1));
    let h = start(&with_s).await;
    let addr = h.ingest_addrs[0];
    for n in 0..4 {
        accepted(addr, &runway(&format!("backlog-{n}"))).await;
    }
    sub.wait_for(secs(5), "the attempt in flight", |r| r.len() == 1).await;
    let v = admin_until(h.admin_addr, "/api/subscribers", secs(5), |v| {
        row(&v["subscribers"], "name", "s")["queue_depth"].as_u64() >= Some(3)
    })
    .await;
    let before = row(&v["subscribers"], "name", "s")["queue_depth"].clone();
    base.clone().write();
    h.reload().await.expect("reload removing s");
    with_s.write();
    h.reload().await.expect("reload adding s back");
    tokio::time::sleep(secs(2)).await;
    let (_, v) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    let m = metrics(h.admin_addr).await;
    let depth = sample(&m, "hookrelay_queue_depth{subscriber=\"s\"}");
    assert!(
        row(&v["subscribers"], "name", "s")["queue_depth"].as_u64() >= Some(3) && depth >= 3.0,
        "s has 4 callbacks pending (queue_depth {before} before the reloads); while its new lane waits for \
         the attempt in flight: {v}, hookrelay_queue_depth {depth}"
    );
    h.shutdown().await;
}
