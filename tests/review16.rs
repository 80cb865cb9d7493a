//! Review 16: failing tests for the merged review-14/15 fixes.

use crate::common;

use common::*;

/// Finding 1. A stale relay's late *final* outcome is written over any
/// pending result (result_write.rs `write_outcome`: `mine = is_final(outcome)
/// || ...`), including one that an operator's replay made pending *after*
/// the delivery was finished. Here: relay 1 sends attempt 1 and is paused
/// (SIGSTOP) before it reads the 200; relay 2 takes over, attempt 2 gets 200
/// (delivered). The operator replays; the replay's attempt 3 gets 500 and is
/// scheduled again. Relay 1 runs again, reads its 200 of attempt 1 and
/// writes `delivered` over the replay's retrying result: the replay's retry
/// message then finds a final result and is acked unsent. The operator's
/// replay (answered `queued`) failed once and is never tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_relays_late_success_does_not_cancel_a_later_replay() {
    let nats = common::nats::NatsCluster::start(1).await;
    let sub = Sub::start(std::sync::Arc::new(|n, _: &Received| match n {
        // Relay 1's attempt: answered while relay 1 is paused.
        0 => Behaviour::Slow(secs(8)),
        // The replay's first attempt fails.
        2 => Behaviour::Status(500),
        _ => Behaviour::Status(200),
    }))
    .await;
    let s = Subscriber::new("s", sub.url())
        .timeout(secs(60))
        .retry([secs(20), secs(20), secs(20)]);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(s.clone()).nats(nats.urls(), 1);
    let first = Bin::start(&cfg(d1.path()).write(), &[]);
    let id = accepted(first.addr, &runway("stale-final")).await;
    sub.wait_for(secs(10), "the first attempt", |r| r.len() == 1).await;
    first.signal("STOP");

    let second = start(&cfg(d2.path())).await;
    let path = format!("/api/events/{id}");
    sub.wait_for(secs(20), "taken over", |r| r.len() == 2).await;
    admin_until(second.admin_addr, &path, secs(10), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;

    // The operator replays it; the replay's attempt fails (500) and is
    // scheduled again in 20 s.
    let (status, replay) = admin(second.admin_addr, "POST", &format!("{path}/replay")).await;
    assert_eq!(status, 200, "{replay}");
    sub.wait_for(secs(10), "the replay's attempt", |r| r.len() == 3).await;
    admin_until(second.admin_addr, &path, secs(10), |v| {
        v["subscribers"][0]["state"] == "retrying"
    })
    .await;

    // The paused relay runs again: the 200 of its attempt 1 waits in its socket.
    first.signal("CONT");
    let deadline = tokio::time::Instant::now() + secs(40);
    while sub.count() < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let retried = sub.count() >= 4;
    let (_, ev) = admin(second.admin_addr, "GET", &path).await;
    assert!(
        retried,
        "the replay's failed attempt was never tried again (a stale relay's late 200 of attempt 1 \
         was written over the replay's retrying result): sent {} times; event {ev}; relay 1's log:\n{}",
        sub.count(),
        first.log_text()
    );
    second.shutdown().await;
}

/// Finding 2. A stale relay's late `dead` beats a later attempt's 200 (the
/// same rule: a final outcome is written over a pending result, and then
/// "the first final wins"). Relay 1's attempt 2 (the schedule's last) hangs
/// and relay 1 is paused; relay 2 takes over and begins attempt 3 (the
/// result: pending, attempts 3), which the subscriber answers 200 after a
/// while. Meanwhile relay 1 runs again, its attempt 2 times out, and it
/// writes `dead` over attempt 3's pending result and publishes a dead letter.
/// Attempt 3's 200 then finds a final result and is dropped. The delivery
/// the subscriber acknowledged shows `dead`, its letter is listed, and a
/// dead-letter replay sends it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_relays_late_dead_does_not_bury_a_later_attempts_success() {
    let nats = common::nats::NatsCluster::start(1).await;
    let sub = Sub::start(std::sync::Arc::new(|n, _: &Received| match n {
        0 => Behaviour::Status(500),
        // Relay 1's last attempt: never answered (it times out late).
        1 => Behaviour::Hang,
        // Relay 2's attempt: 200, after relay 1's timeout has struck.
        2 => Behaviour::Slow(secs(12)),
        _ => Behaviour::Status(200),
    }))
    .await;
    let s = Subscriber::new("s", sub.url()).timeout(secs(12)).retry([secs(1)]);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(s.clone()).nats(nats.urls(), 1);
    let first = Bin::start(&cfg(d1.path()).write(), &[]);
    let id = accepted(first.addr, &runway("stale-dead")).await;
    sub.wait_for(secs(10), "relay 1's second attempt", |r| r.len() == 2)
        .await;
    first.signal("STOP");

    let second = start(&cfg(d2.path())).await;
    let path = format!("/api/events/{id}");
    sub.wait_for(secs(20), "relay 2's attempt", |r| r.len() == 3).await;
    first.signal("CONT");
    // Relay 2's attempt is answered 200 twelve seconds after it was sent.
    tokio::time::sleep(secs(16)).await;
    let (_, ev) = admin(second.admin_addr, "GET", &path).await;
    let (_, dead) = admin(second.admin_addr, "GET", "/api/dead-letters").await;
    assert_eq!(
        ev["subscribers"][0]["state"],
        "delivered",
        "the subscriber answered 200 to attempt 3, but relay 1's late `dead` of attempt 2 stands: \
         event {ev}; dead letters {dead}; relay 1's log:\n{}",
        first.log_text()
    );
    second.shutdown().await;
}

/// A TCP proxy to `upstream` that holds each new connection `delay` before
/// passing it on; counts connections (as in reload_handover.rs).
async fn slow_proxy(
    upstream: std::net::SocketAddr,
    delay: std::time::Duration,
) -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = std::sync::Arc::new(AtomicUsize::new(0));
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

/// Finding 3 (nit). In cluster mode an attempt that a reload's handover
/// drops before it sends (here: its `verify = "fetch"` check outlasts the
/// handover's bound) is never sent, yet its number is spent: the next lane
/// reads the delivery again only after `takeover` (the message was taken, so
/// the stopped lane's follower does not give it back) and numbers its first
/// real send attempt 2 (NATS's hand-out count; for a retry, the number that
/// `begin_attempt` wrote). The subscriber's first request says
/// `hookrelay-attempt: 2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_dropped_before_it_sends_spends_no_attempt_number_in_cluster_mode() {
    use common::provider::{FakeOptions, FakeProvider, TaskPlan};
    use common::tasks::task_route;
    use hookrelay::provider::Product;
    use std::sync::atomic::Ordering;
    let nats = common::nats::NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    // Every check at the provider takes 6 s: longer than the handover's
    // bound for an attempt still preparing (timeout 2 s + 2 s).
    let (proxy, connections) = slow_proxy(fake.addr(), secs(6)).await;
    let sub = Sub::start(std::sync::Arc::new(|_, _: &Received| Behaviour::Status(200))).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let url = format!("http://{addr}/hooks/runway");
    let urls = nats.urls();
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
            .nats(urls.clone(), 1)
            .raw(move |t| {
                t["server"]
                    .as_table_mut()
                    .unwrap()
                    .insert("public_url".into(), toml::Value::String(public.clone()));
            })
    };
    let h = start(&config(true)).await;
    let task = fake.create(Product::Runway, TaskPlan::success(), Some(&url));
    let t0 = tokio::time::Instant::now();
    while connections.load(Ordering::SeqCst) == 0 {
        assert!(t0.elapsed() < secs(15), "no verification request");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // s is removed while the check is out, and put back: the check outlasts
    // the handover's bound, so the attempt is dropped unsent.
    config(false).write();
    h.reload().await.expect("reload removing s");
    config(true).write();
    h.reload().await.expect("reload adding s back");
    let got = sub.wait_for(secs(40), "the callback", |r| !r.is_empty()).await;
    let attempt = got[0]
        .headers
        .get("hookrelay-attempt")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(
        attempt,
        "1",
        "task {task}: the subscriber's first request is numbered {attempt} (an attempt dropped unsent spent a number); \
         it came {:?} after the check began",
        got[0].at.duration_since(t0.into_std())
    );
    h.shutdown().await;
}

/// Finding 4. A handover waits for an attempt sending until its send's start
/// + `timeout` + 2 s (handover.rs `RECORD_MARGIN`), then aborts it; but in
/// cluster mode recording is tried again for up to 10 s while the results
/// bucket has no leader (result_write.rs `RESULT_PATIENCE`). An attempt
/// answered 200 whose result write is waiting out a short NATS hiccup is cut
/// off by a reload that removes and re-adds its subscriber: unrecorded, its
/// message goes to the next lane after `takeover`, which sends it again.
/// Without the reload the same hiccup costs nothing (the write lands once
/// the bucket is back, within its patience).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_does_not_cut_off_an_attempt_recording_through_a_nats_hiccup() {
    let nats = common::nats::NatsCluster::start(1).await;
    // The attempt is answered 200 after 1.5 s (its timeout: 2 s).
    let sub = Sub::start(std::sync::Arc::new(|n, _: &Received| match n {
        0 => Behaviour::Slow(ms(1500)),
        _ => Behaviour::Status(200),
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new(dir.path())
        .nats(nats.urls(), 1)
        .subscriber(Subscriber::new("other", DOWN));
    let with_s = base
        .clone()
        .subscriber(Subscriber::new("s", sub.url()).timeout(secs(2)));
    let without_s = base.clone();
    let h = start(&with_s).await;
    let js = async_nats::jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    let original = js
        .get_stream("KV_hr_results")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    let id = accepted(h.ingest_addrs[0], &runway("hiccup")).await;
    sub.wait_for(secs(10), "the attempt", |r| r.len() == 1).await;
    // While the attempt waits for its answer a reload removes s and another
    // puts it back; then the bucket stops taking writes.
    without_s.write();
    h.reload().await.expect("reload removing s");
    with_s.write();
    h.reload().await.expect("reload adding s back");
    // The results bucket takes no writes for a moment, from before the 200 comes ("no responders", as
    // while its leader is being elected).
    let mut away = original.clone();
    away.subjects = vec!["hr.elsewhere.>".into()];
    js.update_stream(&away).await.unwrap();

    // The bucket is back 6 s later: well within the write's 10 s patience.
    tokio::time::sleep(secs(6)).await;
    js.update_stream(&original).await.unwrap();

    tokio::time::sleep(secs(12)).await;
    let seen = seen_ids(&sub);
    let (_, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    assert_eq!(
        seen.get(&id),
        Some(&1),
        "event {id} was answered 200, its result write was cut off by the handover and the lane of s's return \
         sent it again: {seen:?}; {ev}"
    );
    h.shutdown().await;
}
