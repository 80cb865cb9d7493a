//! Cluster mode: a replay of an event whose replay fails for one of its
//! subscribers (NATS did not answer) goes on with the others and says what
//! it did; it stopped at the first failure, saying nothing of those it had
//! queued, and never came to those after it.

use super::FAIL_REPLAY_OF;
use crate::ingest::contested::crash_tests::{event, open_nats, rt, NatsServer};
use crate::store::*;

#[test]
fn one_subscribers_failure_does_not_keep_the_others_from_their_replay() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    rt().block_on(async {
        let s = open_nats(&nats.1).await;
        s.register(&Topology {
            routes: vec![("runway".into(), vec!["s".into(), "t".into()])],
        })
        .await
        .unwrap();
        let mut e = event(Origin::Callback, "https://cdn.example/p.mp4", None);
        e.meta.subscribers = vec!["s".into(), "t".into()];
        let id = s.append(e).await.unwrap().id;
        FAIL_REPLAY_OF.with(|f| *f.borrow_mut() = Some("s".into()));
        let err = s.replay_event(id, None).await.unwrap_err().to_string();
        FAIL_REPLAY_OF.with(|f| *f.borrow_mut() = None);
        assert!(matches!(
            s.replay_event(id, Some("t".into())).await.unwrap().as_deref(),
            Some([Replayed { queued: false, .. }])
        ));
        assert!(
            err.contains("not replayed to \"s\"") && err.contains("already pending for t"),
            "{err}"
        );
        s.close().await;
    });
}
