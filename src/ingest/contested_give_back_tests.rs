//! Cluster mode: a reload's handover giving back a forged callback's work
//! unsent (its `verify = "fetch"` check not answered yet) after an earlier
//! hand-out wrote a result counting that hand-out as an attempt: the
//! forgery was then vouched for, and the genuine callback with its key
//! answered as its duplicate and dropped (stop 78's Left). The count stays
//! (the next attempt's number goes on from it), marked as hand-outs.

use super::crash_tests::{event, open_nats, rt, NatsServer};
use super::{append, vouched};
use crate::delivery::verify_gate::Verifier;
use crate::store::{Work, WorkSource};

/// The forged callback's work, as the next lane takes it.
async fn take(source: &mut WorkSource) -> Work {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut got = source.take(1, crate::clock::now_ms()).await.unwrap();
        if let Some(w) = got.pop() {
            return w;
        }
        assert!(std::time::Instant::now() < end, "no work handed out");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[test]
fn in_cluster_mode_work_given_back_unsent_does_not_vouch_for_a_forged_callback() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    rt().block_on(async {
        let s = open_nats(&nats.1).await;
        let verifier = Verifier::default();
        let forged = append(
            &s,
            Some(&verifier),
            event(crate::store::Origin::Callback, "https://evil.example/x.mp4", None),
        )
        .await
        .unwrap();
        // A relay takes the work and dies before it records anything (its
        // lane dropped without a word): NATS hands the message out again
        // after `takeover` (1 s), counted.
        let mut dead = s.work_source("s").unwrap();
        let first = take(&mut dead).await;
        assert_eq!((first.event.id, first.attempts), (forged.id, 0));
        drop(dead);
        let mut lane = s.work_source("s").unwrap();
        let again = take(&mut lane).await;
        assert_eq!((again.event.id, again.attempts), (forged.id, 1), "a hand-out counted");
        // Its check still waits at the provider when a reload's handover
        // drops it unsent: given back.
        lane.give_back(&again.ticket).await;
        let view = s.event_view(forged.id).await.unwrap().unwrap();
        assert_eq!(view.deliveries[0].attempts, 1, "the hand-out stays counted: {view:?}");
        assert!(
            !vouched(&view),
            "a hand-out given back unsent taken for a delivery: {view:?}"
        );
        // The provider's genuine callback: stored beside the forgery.
        let genuine = append(
            &s,
            Some(&verifier),
            event(crate::store::Origin::Callback, "https://cdn.example/genuine.mp4", None),
        )
        .await
        .unwrap();
        assert!(
            !genuine.duplicate && genuine.id != forged.id,
            "the genuine callback was answered as a duplicate of the forgery and dropped: {genuine:?}"
        );
        drop(lane);
        s.close().await;
    });
}
