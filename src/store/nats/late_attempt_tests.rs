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

#[test]
fn a_later_attempt_joins_a_final_result_written_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    rt().block_on(async {
        let s = NatsStore::open(&nats_config(&nats.1), std::time::Duration::from_secs(86_400), 1 << 20)
            .await
            .unwrap();
        s.register(&crate::store::Topology {
            routes: vec![("runway".into(), vec!["s".into()])],
        })
        .await
        .unwrap();
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
