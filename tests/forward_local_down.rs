//! The private service failing every delivery for a while (a redeploy, a
//! crash): the forwarder pulls one message at a time with a pause between
//! tries instead of burning the backlog's retry schedule at full speed (each
//! message pulled failed at once, and with a short schedule the whole
//! backlog was dead letters within a second), and pulls at full speed again
//! once a delivery succeeds.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_private_service_does_not_burn_the_backlogs_retries() {
    let dir = tempfile::tempdir().unwrap();
    let token = "local-down-pull-token";
    let path = TestConfig::new(dir.path())
        .subscriber(Subscriber::pull("laptop", token).lease(secs(30)).retry([ms(200); 3]))
        .write();
    let relay = Bin::start(&path, &[]);
    let ids = send_spaced(relay.addr, "down", 20, Duration::ZERO).await;
    // Down for 3 s from the first delivery it gets (answering 503), then well.
    let first = Arc::new(std::sync::OnceLock::<Instant>::new());
    let first_at = first.clone();
    let local = Local::start(Arc::new(move |_, _| {
        let up_at = *first_at.get_or_init(Instant::now) + secs(3);
        (if Instant::now() < up_at { 503 } else { 200 }, Duration::ZERO)
    }))
    .await;
    let fwd = Forwarder::start(dir.path(), &pull_url(relay.addr, "laptop"), &local.url(), token, &[]);
    let up_at = || *first.get().expect("a delivery came") + secs(3);
    let delivered = |g: &[Got]| {
        let Some(first) = first.get() else {
            return 0;
        };
        let up_at = *first + secs(3);
        let ok: std::collections::HashSet<&str> =
            g.iter().filter(|x| x.ended >= up_at).map(|x| x.id.as_str()).collect();
        ok.len()
    };
    // Each message has four attempts (200 ms apart): without the pause all
    // twenty were spent within a second. With it a few tries are made (the
    // first pull's, then one at a time), and every message that kept an
    // attempt is delivered once the service is back.
    local
        .wait_for(secs(30), "the deliveries after the outage", |g| delivered(g) >= 16)
        .await;
    let tries_down = local.all().iter().filter(|x| x.ended < up_at()).count();
    assert!(tries_down <= 15, "{tries_down} tries while the service was down");
    let (_, v) = admin(relay.admin, "GET", "/api/dead-letters").await;
    let dead = v["dead_letters"].as_array().unwrap().len();
    assert!(dead <= 3, "{dead} dead letters of {}: {v}", ids.len());
    assert!(
        fwd.log_text().contains("pulling one message at a time"),
        "{}",
        fwd.log_text()
    );
}

/// A `410` is the service's answer, not its failure (as for a push
/// subscriber's circuit breaker): a run of them does not pause the pulls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_410s_does_not_pause_the_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let token = "local-gone-pull-token";
    let path = TestConfig::new(dir.path())
        .subscriber(Subscriber::pull("laptop", token).lease(secs(30)).retry([ms(200); 3]))
        .write();
    let relay = Bin::start(&path, &[]);
    let gone = send_spaced(relay.addr, "gone", 8, Duration::ZERO).await;
    let wanted = send_spaced(relay.addr, "wanted", 20, Duration::ZERO).await;
    let gone_ids = gone.clone();
    let local = Local::start(Arc::new(move |id, _| {
        (if gone_ids.iter().any(|g| g == id) { 410 } else { 200 }, Duration::ZERO)
    }))
    .await;
    let fwd = Forwarder::start(dir.path(), &pull_url(relay.addr, "laptop"), &local.url(), token, &[]);
    // At full speed: well within the first pause's second or more per message.
    local.wait_all(secs(8), &wanted).await;
    assert!(
        !fwd.log_text().contains("pulling one message at a time"),
        "{}",
        fwd.log_text()
    );
}

/// The delivery that ends a pause (one message at a time) brings back full
/// speed at once: it slept one more pause first, up to 30 s, whenever that
/// delivery was answered while the forwarder waited for it (pull review,
/// stop 65: 18–25 s between the first success and the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_success_after_a_pause_brings_full_speed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let token = "local-back-pull-token";
    let path = TestConfig::new(dir.path())
        .subscriber(Subscriber::pull("laptop", token).lease(secs(60)).retry([secs(300)]))
        .write();
    let relay = Bin::start(&path, &[]);
    send_spaced(relay.addr, "back", 40, Duration::ZERO).await;
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let is_up = up.clone();
    let local = Local::start(Arc::new(move |_, _| {
        match is_up.load(std::sync::atomic::Ordering::SeqCst) {
            true => (200, Duration::ZERO),
            false => (503, Duration::ZERO),
        }
    }))
    .await;
    let fwd = Forwarder::start(
        dir.path(),
        &pull_url(relay.addr, "laptop"),
        &local.url(),
        token,
        &["--concurrency", "1"],
    );
    // Down long enough for the pauses to reach seconds (0.5–1, 1–2, 2–4, 4–8 s).
    local.wait_for(secs(20), "a first try", |g| !g.is_empty()).await;
    tokio::time::sleep(secs(10)).await;
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    // Each request begun from now on is answered 200.
    let up_at = Instant::now();
    let got = local
        .wait_for(secs(40), "the first success and five more", |g| {
            g.iter().filter(|x| x.started >= up_at).count() >= 6
        })
        .await;
    let ok: Vec<&Got> = got.iter().filter(|x| x.started >= up_at).collect();
    let gap = ok[5].ended - ok[0].ended;
    assert!(
        gap < secs(3),
        "{gap:?} from the first success to the sixth\n{}",
        fwd.log_text()
    );
}
