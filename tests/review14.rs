//! Hostile review 14: failing tests of findings in the review 12/13 fixes
//! (handover of attempts in flight at a reload, kept rate limiters).

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::task_route;
use common::*;
use hookrelay::provider::Product;

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

/// Finding 1 (no provider needed): the handover's deadline is the lane's
/// current `timeout` counted from the reload, not the attempt's own. An
/// attempt sent under `timeout = 10s` and answered 200 after 5 s; a reload
/// lowers the timeout to 1 s (the lane is kept, the attempt keeps its 10 s),
/// the next reload removes the subscriber: its lane waits 1 s + 2 s, aborts
/// the attempt the subscriber is answering (unrecorded), and the lane of its
/// return sends the event again: the same webhook-id twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_an_attempt_sent_under_a_longer_timeout_is_not_cut_off_by_the_handover() {
    let dir = tempfile::tempdir().unwrap();
    let sub = slow_first(secs(5)).await;
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("other", DOWN));
    let with_s = |t: Duration| base.clone().subscriber(Subscriber::new("s", sub.url()).timeout(t));
    let h = start(&with_s(secs(10))).await;
    let addr = h.ingest_addrs[0];
    let id = accepted(addr, &runway("in-flight")).await;
    sub.wait_for(secs(5), "the attempt in flight", |r| r.len() == 1).await;
    // The operator lowers s's timeout, then removes s, then puts it back.
    with_s(secs(1)).write();
    h.reload().await.expect("reload lowering the timeout");
    base.clone().write();
    h.reload().await.expect("reload removing s");
    with_s(secs(1)).write();
    h.reload().await.expect("reload adding s back");
    // The attempt is answered 200 at 5 s; wait past it.
    tokio::time::sleep(secs(7)).await;
    let seen = seen_ids(&sub);
    let all = sub.all();
    let gaps: Vec<Duration> = all.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert_eq!(
        seen.get(&id),
        Some(&1),
        "event {id} was being answered 200 by s (timeout 10 s when sent) and was sent to s again after the reloads \
         (second request {gaps:?} after the first): {seen:?}"
    );
    h.shutdown().await;
}

/// A TCP proxy to `upstream` that holds each new connection `delay` before
/// passing it on; counts connections.
async fn slow_proxy(upstream: SocketAddr, delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else { return };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let Ok(mut u) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
            });
        }
    });
    (addr, n)
}

/// Finding 1 (one reload): on a `verify = "fetch"` route the attempt first
/// asks the provider (up to its 30 s timeout and its rate limits), and only
/// then sends. The handover waits `timeout` + 2 s from the reload, so an
/// attempt whose check was slow sends after the reload and is cut off while
/// the subscriber answers it (well within `timeout` of its send); the lane
/// of the subscriber's return sends it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_a_verify_fetch_attempt_sent_after_the_reload_is_not_cut_off_and_sent_again() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let (proxy, connections) = slow_proxy(fake.addr(), ms(3500)).await;
    // s: timeout 2 s; its first request is answered 200 after 1.5 s.
    let sub = slow_first(ms(1500)).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let url = format!("http://{addr}/hooks/runway");
    let config = |with_s: bool| {
        let mut route = task_route("runway", "kie-runway", &fake, DOWN)
            .provider(Provider::new(fake.api_key(), &format!("http://{proxy}")))
            .verify("fetch");
        if with_s {
            route = route.subscriber(Subscriber::new("s", sub.url()).timeout(secs(2)));
        }
        let public = format!("http://{addr}");
        TestConfig::new(dir.path())
            .listen(addr)
            .edit_route("t", |_| route)
            .raw(move |t| {
                t["server"]
                    .as_table_mut()
                    .unwrap()
                    .insert("public_url".into(), toml::Value::String(public.clone()));
            })
    };
    let h = start(&config(true)).await;
    let task = fake.create(Product::Runway, TaskPlan::success(), Some(&url));
    // The callback came and its check at the provider began (held 3.5 s).
    let t0 = Instant::now();
    while connections.load(Ordering::SeqCst) == 0 {
        assert!(t0.elapsed() < secs(10), "no verification request");
        tokio::time::sleep(ms(20)).await;
    }
    // s is removed while the check is out, and put back.
    config(false).write();
    h.reload().await.expect("reload removing s");
    config(true).write();
    h.reload().await.expect("reload adding s back");
    sub.wait_for(secs(15), "the callback", |r| !r.is_empty()).await;
    // s answers its first request 1.5 s after it came; wait past that.
    tokio::time::sleep(secs(4)).await;
    let seen = seen_ids(&sub);
    let all = sub.all();
    let gaps: Vec<Duration> = all.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        seen.values().all(|n| *n == 1),
        "task {task}: s received the callback (sent within its 2 s timeout, answered 200 after 1.5 s) and the lane of \
         its return sent it again ({gaps:?} later; first sent {:?} after the check began): {seen:?}",
        all[0].at - t0
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
