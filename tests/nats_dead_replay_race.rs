//! Cluster mode: one dead letter replayed at two relays at the same moment
//! is queued by one of them and sent once (a replay of dead letters, or of
//! a dead letter's row, re-queues only a delivery still dead).

use crate::common;

use common::nats::NatsCluster;
use common::*;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_replayed_at_two_relays_at_once_is_sent_once() {
    replayed_at_two_relays_at_once(false).await;
}

/// The console's replay of one dead letter (`only=dead`) at one relay while
/// the other replays all dead letters: one of them queues it. The console's
/// was a check, then a replay of the event, which a delivery the other
/// replay had queued meanwhile took as one to send again once it failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letters_row_replayed_while_another_relay_replays_all_is_sent_once() {
    replayed_at_two_relays_at_once(true).await;
}

/// Four rounds of one dead letter replayed at two relays at once: both by a
/// replay of all dead letters, or the second by its row (`only=dead`).
async fn replayed_at_two_relays_at_once(row_at_second: bool) {
    let nats = NatsCluster::start(3).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    // Always gone: every attempt (a replay's too) makes the letter again.
    let sub = Sub::always(Behaviour::Status(410)).await;
    let cfg = |d: &std::path::Path| {
        TestConfig::new(d)
            .subscriber(Subscriber::new("s", sub.url()))
            .nats(nats.urls(), 3)
    };
    let (r1, r2) = (start(&cfg(dirs[0].path())).await, start(&cfg(dirs[1].path())).await);
    let id = accepted_retrying(r1.ingest_addrs[0], &runway("dead")).await;
    for round in 1..=4 {
        for r in [&r1, &r2] {
            admin_expect(r.admin_addr, "/api/dead-letters", secs(20), "one dead letter", |v| {
                v["dead_letters"].as_array().is_some_and(|d| d.len() == 1)
            })
            .await;
        }
        sub.wait_for(secs(10), "the attempt", |r| r.len() == round).await;
        let all = "/api/dead-letters/replay?subscriber=s".to_string();
        let second = match row_at_second {
            true => format!("/api/events/{id}/replay?subscriber=s&only=dead"),
            false => all.clone(),
        };
        let (a, b) = tokio::join!(
            tokio::spawn(async move { admin(r1.admin_addr, "POST", &all).await }),
            tokio::spawn(async move { admin(r2.admin_addr, "POST", &second).await })
        );
        let requeued: u64 = [a.unwrap(), b.unwrap()]
            .iter()
            .map(|(s, v)| match *s {
                StatusCode::OK if v["queued"].is_array() => v["queued"].as_array().unwrap().len() as u64,
                StatusCode::OK => v["requeued"].as_u64().unwrap(),
                // The row's replay found it queued by the other already.
                StatusCode::CONFLICT => 0,
                _ => panic!("{s} {v}"),
            })
            .sum();
        assert_eq!(requeued, 1, "round {round}: one of the two replays queues it");
        let got = sub.wait_for(secs(10), "the replay", |r| r.len() == round + 1).await;
        assert_eq!(got[round].header("webhook-id"), id);
    }
    tokio::time::sleep(secs(1)).await;
    assert_eq!(sub.count(), 5, "each replay sent once");
    r1.shutdown().await;
    r2.shutdown().await;
}
