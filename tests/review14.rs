//! Hostile review 14: failing tests of findings in the review 12/13 fixes
//! (handover of attempts in flight at a reload, kept rate limiters).

use crate::common;

use common::*;

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
