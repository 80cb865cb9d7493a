//! A reload keeps the state of a subscriber's delivery settings it does not
//! change: the rate limiter's window (`rate` promises no bursts, so a reload
//! must not let one through, even one that gives the subscriber a new lane)
//! and the client's open connections (kept unless `ca_file` or `timeout`
//! changes).

use crate::common;

use std::time::Duration;

use common::*;

/// Review 13, finding 2: a reload that did not even touch the subscriber
/// built a fresh limiter, so the next delivery went out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_does_not_reset_a_subscribers_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    // 6/m: one request every 10 s.
    let cfg = limited(dir.path(), &sub, "6/m");
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    accepted(addr, &runway("one")).await;
    sub.wait_for(secs(5), "the first delivery", |r| r.len() == 1).await;
    // Control: without a reload the limit holds the second one back.
    accepted(addr, &runway("two")).await;
    tokio::time::sleep(secs(1)).await;
    assert_eq!(sub.count(), 1, "the rate limit holds the second delivery");
    sub.wait_for(secs(15), "the second delivery", |r| r.len() == 2).await;
    // The same file again: nothing about the subscriber changed.
    cfg.write();
    h.reload().await.expect("reload");
    accepted(addr, &runway("three")).await;
    tokio::time::sleep(secs(3)).await;
    let all = sub.all();
    let gaps: Vec<Duration> = all.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert_eq!(
        all.len(),
        2,
        "rate 6/m: a third delivery within 3 s of the second one (gaps between deliveries: {gaps:?})"
    );
    h.shutdown().await;
}

/// Review 14, finding 3: a subscriber moved to another route keeps its URL
/// and `rate` but gets a new lane, whose limiter started empty: rate = "1/h"
/// sent the next request seconds after the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_subscriber_to_another_route_does_not_reset_its_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let limited = || Subscriber::new("limited", sub.url()).rate("1/h");
    let route_u = |subs: Vec<Subscriber>| {
        subs.into_iter()
            .fold(Route::new("u", "/hooks/u").tokens(["tok"]), Route::subscriber)
    };
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("other", DOWN));
    let on_t = base
        .clone()
        .subscriber(limited())
        .route(route_u(vec![Subscriber::new("b", DOWN)]));
    let on_u = base.route(route_u(vec![Subscriber::new("b", DOWN), limited()]));
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

/// A `1/h` subscriber delivers once; the reloads with `away` then with it
/// back in place; a second callback must then wait for the rate (`what`
/// names the change in the failure).
async fn rate_survives_going_and_coming_back(away: impl FnOnce(&std::path::Path) -> TestConfig, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let with_limited = limited(dir.path(), &sub, "1/h");
    let h = start(&with_limited).await;
    let addr = h.ingest_addrs[0];
    accepted(addr, &runway("one")).await;
    sub.wait_for(secs(5), "the first delivery", |r| r.len() == 1).await;
    away(dir.path()).write();
    h.reload().await.expect("reload taking limited away");
    with_limited.write();
    h.reload().await.expect("reload putting limited back");
    accepted(addr, &runway("two")).await;
    tokio::time::sleep(secs(3)).await;
    assert_eq!(
        sub.count(),
        1,
        "rate 1/h: a second request within seconds of the first, after the subscriber was {what}"
    );
    h.shutdown().await;
}

/// Review 14, finding 3: the same for a subscriber removed and put back (its
/// lane of the return started with an empty limiter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_and_re_adding_a_subscriber_does_not_reset_its_rate_limit() {
    let removed = |dir: &std::path::Path| TestConfig::new(dir).subscriber(Subscriber::new("other", DOWN));
    rate_survives_going_and_coming_back(removed, "removed and put back").await;
}

/// Review 14, finding 3: the same for a subscriber switched to pull and back
/// to push (a pull subscriber has no rate; its push lane of the return
/// started with an empty limiter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_a_subscriber_to_pull_and_back_does_not_reset_its_rate_limit() {
    let pulled = |dir: &std::path::Path| TestConfig::new(dir).subscriber(Subscriber::pull("limited", "pull-token"));
    rate_survives_going_and_coming_back(pulled, "switched to pull and back").await;
}

/// A reload that keeps `ca_file` and `timeout` keeps the client, so the next
/// delivery goes on the connection already open; a changed `timeout` builds
/// a new client (a new connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_a_subscribers_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let base = TestConfig::new(dir.path());
    let cfg = base
        .clone()
        .subscriber(Subscriber::new("s", sub.url()).timeout(secs(10)));
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    let deliver = |n: usize| {
        let sub = sub.clone();
        async move {
            accepted(addr, &runway(&format!("call-{n}"))).await;
            sub.wait_for(secs(10), "the delivery", |r| r.len() == n).await;
            // The connection is back in the client's pool.
            tokio::time::sleep(ms(200)).await;
        }
    };
    deliver(1).await;
    deliver(2).await;
    let from = |n: usize| sub.all()[n - 1].from;
    // Control: without a reload the second one came on the same connection.
    assert_eq!(from(1), from(2), "the client reuses its connection");
    cfg.write();
    h.reload().await.expect("reload");
    deliver(3).await;
    assert_eq!(
        from(3),
        from(2),
        "a reload that changed nothing about the subscriber opened a new connection"
    );
    base.clone()
        .subscriber(Subscriber::new("s", sub.url()).timeout(secs(20)))
        .write();
    h.reload().await.expect("reload");
    deliver(4).await;
    assert_ne!(from(4), from(3), "a changed timeout builds a new client");
    h.shutdown().await;
}

/// A shutdown while a delivery waits for the rate limit ends at once: the
/// lane's wait for its next request saw the stop and left only the
/// rate-limit loop, then slept with nothing to wake it (a kept limiter made
/// the waits after a reload long enough to hit it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_during_a_rate_limit_wait_ends() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = limited(dir.path(), &sub, "1/h");
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    accepted(addr, &runway("one")).await;
    sub.wait_for(secs(5), "the first delivery", |r| r.len() == 1).await;
    accepted(addr, &runway("two")).await;
    tokio::time::sleep(ms(500)).await;
    let t = std::time::Instant::now();
    assert!(
        tokio::time::timeout(secs(10), h.shutdown()).await.is_ok(),
        "shutdown still waiting after {:?} for the lane waiting for its rate limit",
        t.elapsed()
    );
}

/// One subscriber `limited` sending to `sub` at most at `rate`.
fn limited(dir: &std::path::Path, sub: &Sub, rate: &str) -> TestConfig {
    TestConfig::new(dir).subscriber(Subscriber::new("limited", sub.url()).rate(rate))
}
