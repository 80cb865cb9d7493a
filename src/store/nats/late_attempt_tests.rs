//! Cluster mode: an attempt later than any in a final result another relay
//! wrote meanwhile joins its history (the result stands). It was dropped,
//! the count left below an attempt a pull client delivered and had
//! acknowledged: an operator's replay, offered with that attempt's number,
//! was then taken by `hookrelay forward` for the message it delivered and
//! acknowledged unsent (stop 76's Left).

use super::NatsStore;
use crate::ingest::contested::crash_tests::{nats_config, rt, NatsServer};
use crate::store::{Attempt, DeliveryState, Outcome};

fn delivered(n: u32, at_ms: u64) -> Attempt {
    Attempt {
        attempt: n,
        at_ms,
        duration_ms: 5,
        status: None,
        error: None,
    }
}

/// Relay A, which lost its hold, records its attempt 1 (begun before
/// anything was written) as delivered, at `now` + 10 ms.
async fn relay_a_delivered(s: &NatsStore, key: &str, now: u64) -> super::result_write::Recorded {
    s.shared
        .write_outcome(
            key,
            (None, 0),
            0,
            Some(&delivered(1, now)),
            &Outcome::Delivered,
            now + 10,
        )
        .await
        .unwrap()
}

/// A store on the NATS server at `url` with route `runway` and its subscriber `s`.
async fn open(url: &str) -> NatsStore {
    let s = NatsStore::open(&nats_config(url), std::time::Duration::from_secs(86_400), 1 << 20)
        .await
        .unwrap();
    s.register(&crate::store::Topology {
        routes: vec![("runway".into(), vec!["s".into()])],
    })
    .await
    .unwrap();
    s
}

#[test]
fn a_later_attempt_joins_a_final_result_written_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    rt().block_on(async {
        let s = open(&nats.1).await;
        let key = super::layout::result_key("runway", 1, "s");
        let now = crate::clock::now_ms();
        // Relay A, which lost its hold, records attempt 1 delivered; relay
        // B, which read no result when it handed out attempt 2, records
        // attempt 2's acknowledgement over the same (empty) revision.
        let first = delivered(1, now);
        let a = s
            .shared
            .write_outcome(&key, (None, 0), 0, Some(&first), &Outcome::Delivered, now);
        assert!(matches!(a.await.unwrap(), super::result_write::Recorded::Mine(..)));
        let later = delivered(2, now + 10);
        let b = s
            .shared
            .write_outcome(&key, (None, 0), 0, Some(&later), &Outcome::Delivered, now + 10);
        assert!(matches!(b.await.unwrap(), super::result_write::Recorded::Theirs));
        let (row, _) = s.shared.result(&key).await.unwrap().unwrap();
        assert_eq!(row.state, DeliveryState::Delivered, "the first final result stands");
        assert_eq!(row.attempts, 2, "the later attempt counted: {row:?}");
        assert_eq!(
            row.history.iter().map(|a| a.attempt).collect::<Vec<_>>(),
            [1, 2],
            "{row:?}"
        );
        // An earlier attempt told late (an expiry) is dropped, as before.
        let expired = Attempt {
            error: Some("lease expired".into()),
            ..delivered(1, now - 10)
        };
        let retry = Outcome::Retry { due_ms: now };
        let c = s.shared.write_outcome(&key, (None, 0), 0, Some(&expired), &retry, now);
        assert!(matches!(c.await.unwrap(), super::result_write::Recorded::Theirs));
        let (again, _) = s.shared.result(&key).await.unwrap().unwrap();
        assert_eq!(again, row);
        s.close().await;
    });
}

/// A relay that lost its hold had its attempt delivered while the relay
/// that took the delivery over failed to the last and wrote it `dead`: the
/// subscriber has it, so the result says `delivered` (a dead-letter replay
/// of it sent it again, stop 77's Left). Not after an operator's replay of
/// the dead delivery: that round's outcome is the replay's own.
#[test]
fn a_delivered_attempt_told_after_another_relays_dead_result_makes_it_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    rt().block_on(async {
        let s = open(&nats.1).await;
        let now = crate::clock::now_ms();
        let failed = |n: u32| Attempt {
            status: Some(500),
            ..delivered(n, now + u64::from(n))
        };
        let dead = Outcome::Dead {
            error: "HTTP 500".into(),
        };
        for (seq, replays) in [(1, 0), (2, 1)] {
            let key = super::layout::result_key("runway", seq, "s");
            // Relay B, which took the delivery over, fails attempt 2, the last.
            let last = failed(2);
            let b = s.shared.write_outcome(&key, (None, 0), 0, Some(&last), &dead, now);
            assert!(matches!(b.await.unwrap(), super::result_write::Recorded::Mine(..)));
            if replays > 0 {
                // An operator replayed it since, and the replay died too.
                let (mut row, at) = s.shared.result(&key).await.unwrap().unwrap();
                row.replays = replays;
                assert!(matches!(
                    s.shared
                        .write_result(&key, &row, at, std::time::Duration::ZERO)
                        .await
                        .unwrap(),
                    super::result_write::Write::Done(_)
                ));
            }
            // Relay A's attempt 1, begun before, with no result read.
            let a = relay_a_delivered(&s, &key, now).await;
            let (row, _) = s.shared.result(&key).await.unwrap().unwrap();
            if replays == 0 {
                assert!(matches!(a, super::result_write::Recorded::Revived));
                assert_eq!(
                    (&row.state, row.last_error.as_deref()),
                    (&DeliveryState::Delivered, None),
                    "{row:?}"
                );
                assert_eq!(row.history.iter().map(|a| a.attempt).collect::<Vec<_>>(), [1, 2]);
                assert_eq!(row.attempts, 2, "{row:?}");
                // Its settle failed after the write and is sent again (a pull
                // client's acknowledgement): still told to drop the letter.
                let again = s
                    .shared
                    .write_outcome(
                        &key,
                        (None, 0),
                        0,
                        Some(&delivered(1, now)),
                        &Outcome::Delivered,
                        now + 20,
                    )
                    .await
                    .unwrap();
                assert!(matches!(again, super::result_write::Recorded::Revived));
            } else {
                assert!(matches!(a, super::result_write::Recorded::Theirs));
                assert_eq!(row.state, DeliveryState::Dead, "a replay's own death stands: {row:?}");
            }
        }
        s.close().await;
    });
}

/// Not over a verdict: a delivery settled as a duplicate of its family (or
/// held as unverified) stays so, the attempt joining its history (the
/// event's other subscribers are decided by that verdict).
#[test]
fn a_delivered_attempt_told_after_a_verdict_leaves_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    rt().block_on(async {
        let s = open(&nats.1).await;
        let now = crate::clock::now_ms();
        let key = super::layout::result_key("runway", 1, "s");
        let verdict = Outcome::Dead {
            error: "duplicate: evt_x, an event of the same dedupe key, agreed with the provider's record first".into(),
        };
        let b = s.shared.write_outcome(&key, (None, 0), 0, None, &verdict, now);
        assert!(matches!(b.await.unwrap(), super::result_write::Recorded::Mine(..)));
        let a = relay_a_delivered(&s, &key, now).await;
        assert!(!matches!(a, super::result_write::Recorded::Revived));
        let (row, _) = s.shared.result(&key).await.unwrap().unwrap();
        assert_eq!(row.state, DeliveryState::Dead, "{row:?}");
        assert!(
            row.last_error.as_deref().is_some_and(|e| e.starts_with("duplicate: ")),
            "{row:?}"
        );
        s.close().await;
    });
}

/// The relay that wrote `dead` publishes its letter after the other relay
/// made the delivery `delivered` and looked for the letter to drop (none
/// yet): the letter is dropped by its publisher, not left listed.
#[test]
fn a_dead_letter_published_after_the_delivery_was_made_delivered_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    rt().block_on(async {
        let s = open(&nats.1).await;
        let now = crate::clock::now_ms();
        let key = super::layout::result_key("runway", 1, "s");
        let failed = Attempt {
            status: Some(500),
            ..delivered(2, now)
        };
        let dead = Outcome::Dead {
            error: "HTTP 500".into(),
        };
        let b = s.shared.write_outcome(&key, (None, 0), 0, Some(&failed), &dead, now);
        let super::result_write::Recorded::Mine(dead_row, revision, _) = b.await.unwrap() else {
            panic!("relay B's dead not written");
        };
        let a = relay_a_delivered(&s, &key, now).await;
        assert!(matches!(a, super::result_write::Recorded::Revived));
        assert_eq!(s.shared.last_letter("runway", "s", 1).await, None, "no letter yet");
        let delivery = ("runway", 1, "s");
        s.shared
            .publish_dead_letter(delivery, &dead_row, revision, std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            s.shared.last_letter("runway", "s", 1).await,
            None,
            "the letter of a delivery made delivered stays listed"
        );
        s.close().await;
    });
}
