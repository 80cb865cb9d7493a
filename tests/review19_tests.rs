//! Review 19 (pull subscribers and `hookrelay forward`): failing tests for
//! the findings in notes/review19.md.

use crate::common;

use common::*;
use http::StatusCode;

const TOKEN: &str = "laptop-pull-token";

/// Finding 2: a pull subscriber switched to push by a reload while a
/// message is leased. The forwarder has it; its local service answers 2xx
/// well within the lease, and it acknowledges: the relay refuses (no pull
/// API any more) and the new push lane sends the message again at once. The
/// reverse switch (push to pull, review 13) waits for the attempt in flight;
/// this one forgets the lease (src/delivery/pull/task.rs, end of `run`:
/// `st.leases.drain()`) and the push lane opens the source at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r19_switching_pull_to_push_does_not_deliver_a_leased_message_again() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let pulled = TestConfig::new(dir.path()).subscriber(Subscriber::pull("laptop", TOKEN).lease(secs(30)));
    let h = start(&pulled).await;
    let addr = h.ingest_addrs[0];
    let id = accepted(addr, &runway("switched")).await;
    let (s, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s&max=1", Some(TOKEN), Some("fwd"), "").await;
    assert_eq!(
        (s, got["messages"][0]["id"].as_str()),
        (StatusCode::OK, Some(id.as_str())),
        "{got}"
    );
    // The operator opens an inbound route and switches the subscriber to push.
    TestConfig::new(dir.path())
        .subscriber(Subscriber::new("laptop", sub.url()))
        .write();
    h.reload().await.unwrap();
    // The forwarder's local delivery answers 2xx a moment later, well within the lease.
    let ack = format!(r#"{{"ids": ["{id}"]}}"#);
    let (ack_status, _, ack_answer) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &ack).await;
    tokio::time::sleep(secs(3)).await;
    let pushed = sub.all().iter().filter(|r| r.header("webhook-id") == id).count();
    h.shutdown().await;
    assert_eq!(
        pushed, 0,
        "the message was delivered by the forwarder within its 30 s lease (its acknowledgement answered \
         {ack_status} {ack_answer}) and the push lane sent it again right after the reload"
    );
}

/// Finding 3 (low): a lease that ran out is a failed attempt (README,
/// "Leases"), but while it lapses its holder may *release* it: the claim
/// accepts a lapsed lease for any list (src/delivery/pull/leases.rs `claim`),
/// and `settle::released` records no attempt, so the expiry vanishes from
/// the history, the message is offered again at once with the same attempt
/// number and no step of the retry schedule is used. A forwarder whose
/// local service outlives the lease and that is restarted (SIGTERM
/// releases what it still delivers) never moves the message toward a dead
/// letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r19_releasing_a_lapsed_lease_keeps_the_failed_attempt_of_its_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(1)).retry([secs(5)]);
    let h = start(&TestConfig::new(dir.path()).subscriber(laptop)).await;
    let addr = h.ingest_addrs[0];
    let id = accepted(addr, &runway("lapsed-release")).await;
    let (_, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s&max=1", Some(TOKEN), Some("fwd"), "").await;
    assert_eq!(got["messages"][0]["attempt"].as_u64(), Some(1), "{got}");
    // The local service outlives the 1 s lease; then the forwarder is stopped
    // and releases what it still delivers (within the lapse: one more lease).
    tokio::time::sleep(std::time::Duration::from_millis(1400)).await;
    let release = format!(r#"{{"release": ["{id}"]}}"#);
    let (s, _, a) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &release).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let (_, _, again) = pull_call(addr, "GET", "/pull/laptop?wait=1s&max=1", Some(TOKEN), Some("fwd2"), "").await;
    let (_, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    h.shutdown().await;
    assert_eq!(
        ev["subscribers"][0]["attempts_total"], 1,
        "the lease ran out (a failed attempt), yet after its release within the lapse no attempt is recorded \
         and the message is offered again at once with the same attempt number; the event's history: {}; \
         the next hand-out: {}",
        ev["subscribers"][0], again["messages"][0]["headers"]
    );
}

/// Finding 4: a pull answer has no size bound (src/pull/mod.rs `pull`:
/// every handed-out message, base64, in one body), but `hookrelay forward`
/// reads at most 128 MiB of it (src/forward/client.rs `MAX_ANSWER`). With
/// `--concurrency 100` and 70 callbacks of 1.5 MB (`max_body = "2MiB"`)
/// the answer is ~140 MB: the forwarder fails to read it ("reading the
/// answer"), backs off and pulls again, while the relay has leased all 70
/// to it. Nothing reaches the local service; each lease runs out (a failed
/// attempt) and the same happens again until the messages are dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r19_large_callbacks_reach_a_forwarder_with_high_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(10)).retry([secs(1); 5]);
    let h = start(&TestConfig::new(dir.path()).max_body(2 << 20).subscriber(laptop)).await;
    let addr = h.ingest_addrs[0];
    let pad = "x".repeat(1_500_000);
    let mut ids = Vec::new();
    for i in 0..70 {
        let body = format!(r#"{{"code":200,"data":{{"task_id":"big-{i}"}},"pad":"{pad}"}}"#);
        ids.push(accepted(addr, &body).await);
    }
    drop(pad);
    let local = common::forward::Local::ok().await;
    let mut fwd = common::forward::Forwarder::start(
        dir.path(),
        &common::forward::pull_url(addr, "laptop"),
        &local.url(),
        TOKEN,
        &["--concurrency", "100", "--timeout", "5s"],
    );
    // Well within the 10 s lease: on loopback this takes a second or two.
    let deadline = tokio::time::Instant::now() + secs(8);
    while local.all().len() < ids.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let got = local.all().len();
    let (_, subs) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    let row = row(&subs["subscribers"], "name", "laptop");
    // What happens next: the leases run out (a failed attempt each) and the
    // messages trickle in again, one expiry at a time, as attempt 2.
    tokio::time::sleep(secs(8)).await;
    let later: Vec<u32> = local.all().iter().map(|g| g.attempt).collect();
    fwd.kill9();
    let log: Vec<String> = fwd
        .log_text()
        .lines()
        .filter(|l| l.contains("answer") || l.contains("WARN") || l.contains("ERROR"))
        .take(3)
        .map(|l| l.chars().take(300).collect())
        .collect();
    h.shutdown().await;
    assert_eq!(
        got,
        ids.len(),
        "the local service received {got} of {} messages in 8 s (within their lease); the relay shows leased={} depth={}; \
         8 s later it had {} of them, with attempt numbers {later:?}; forwarder log: {log:#?}",
        ids.len(),
        row["leased"],
        row["queue_depth"],
        later.len()
    );
}
