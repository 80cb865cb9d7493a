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

