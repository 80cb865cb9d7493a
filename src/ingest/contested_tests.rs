//! A polled result contesting a forgery on a `verify = "fetch"` route is
//! stored in more than one write: a relay killed between them must leave
//! the task open and polled again, not settled by the forgery.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{append, STOP_AFTER_FIRST_WRITE};
use crate::delivery::verify_gate::Verifier;
use crate::store::*;

/// A small store with route `runway` and its subscriber `s`.
async fn open(dir: &std::path::Path) -> Store {
    crate::store::sled::tests::open(dir, &["s"]).await
}

pub(crate) fn event(origin: Origin, url: &str, task: Option<TaskMark>) -> NewEvent {
    NewEvent {
        meta: EventMeta {
            route: "runway".into(),
            received_ms: 1,
            source: None,
            content_type: Some("application/json".into()),
            headers: Vec::new(),
            subscribers: vec!["s".into()],
            dedupe_fallback: false,
            origin,
        },
        // The route's dedupe key: the task id (the bodies differ).
        dedupe_hash: Sha256::digest(b"t1").into(),
        body: Bytes::from(format!(
            r#"{{"code":200,"data":{{"task_id":"t1","video_url":"{url}"}}}}"#
        )),
        media: Vec::new(),
        media_after_verify: false,
        task,
    }
}

fn polled() -> NewEvent {
    let mark = TaskMark {
        task_id: "t1".into(),
        terminal: true,
        provider_state: Some("success".into()),
        if_new: false,
    };
    event(Origin::Poll, "https://cdn.example/genuine.mp4", Some(mark))
}

#[tokio::test]
async fn a_relay_stopped_between_the_writes_of_a_contesting_polled_result_polls_the_task_again() {
    let dir = tempfile::tempdir().unwrap();
    let verifier = Verifier::default();
    let s = open(dir.path()).await;
    s.register_task(NewTask {
        route: "runway".into(),
        task_id: "t1".into(),
        now_ms: 1,
        first_poll_ms: Some(2),
        terminal_keys: Vec::new(),
    })
    .await
    .unwrap();
    // The forged callback (not vouched for: no delivery attempted) owns the key.
    let forged = append(
        &s,
        Some(&verifier),
        event(Origin::Callback, "https://evil.example/x.mp4", None),
    )
    .await
    .unwrap();
    // The poll fetches the genuine result; the relay is killed after the first write.
    STOP_AFTER_FIRST_WRITE.with(|c| c.set(true));
    assert!(append(&s, Some(&verifier), polled()).await.is_err());
    s.close().await;
    drop(s);

    let s = open(dir.path()).await;
    let t = s.task(Some("runway".into()), "t1".into()).await.unwrap().unwrap();
    assert!(
        !t.state.is_final(),
        "the task was left settled by the forgery {forged:?}, never polled again: {t:?}"
    );
    let (due, _) = s.due_tasks(u64::MAX / 2, 10).await.unwrap();
    assert!(due.iter().any(|d| d.task_id == "t1"), "not scheduled: {t:?}");

    // Its next poll stores the result and settles the task by it.
    let stored = append(&s, Some(&Verifier::default()), polled()).await.unwrap();
    assert!(!stored.duplicate && stored.id != forged.id, "{stored:?}");
    let t = s.task(Some("runway".into()), "t1".into()).await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.event, t.polls),
        (TaskState::Recovered, Some(stored.id), 1),
        "{t:?}"
    );
    let (due, _) = s.due_tasks(u64::MAX / 2, 10).await.unwrap();
    assert!(due.is_empty(), "{due:?}");
    s.close().await;
}

/// A nats-server (`NATS_SERVER`, else on PATH) with JetStream on a free
/// loopback port, its files under `dir`; killed on drop.
pub(crate) struct NatsServer(std::process::Child, pub(crate) String);

impl NatsServer {
    pub(crate) fn start(dir: &std::path::Path) -> NatsServer {
        let bin = std::env::var_os("NATS_SERVER").unwrap_or_else(|| "nats-server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server (set NATS_SERVER)");
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < end, "nats-server did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        NatsServer(child, format!("nats://127.0.0.1:{port}"))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The store settings of a test relay on the NATS server at `url`: one
/// replica, `takeover` 1 s.
pub(crate) fn nats_config(url: &str) -> crate::config::NatsConfig {
    crate::config::NatsConfig {
        servers: vec![url.to_string()],
        auth: crate::config::NatsAuth::None,
        ca_file: None,
        replicas: 1,
        takeover: std::time::Duration::from_secs(1),
    }
}

pub(crate) async fn open_nats(url: &str) -> Store {
    let s = Store::open_nats(&nats_config(url), std::time::Duration::from_secs(86_400), 1 << 20)
        .await
        .unwrap();
    s.register(&Topology {
        routes: vec![("runway".into(), vec!["s".into()])],
    })
    .await
    .unwrap();
    s
}

/// The task's poll as the reconciler takes it (its work message held).
/// Waited for up to a minute: with test processes crowding two cores, NATS
/// once took longer than 20 s to hand it over (a bound, not a timing claim).
pub(crate) async fn taken(s: &Store) -> Task {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (due, _) = s.due_tasks(crate::clock::now_ms(), 10).await.unwrap();
        if let Some(t) = due.into_iter().find(|t| t.task_id == "t1") {
            return t;
        }
        assert!(std::time::Instant::now() < end, "the task is never polled again");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A runtime of its own: dropping it is a relay's death (its connections gone).
pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Expect task `t1` on `runway`, due for its first poll now.
pub(crate) async fn register_due(s: &Store) {
    let now = crate::clock::now_ms();
    s.register_task(NewTask {
        route: "runway".into(),
        task_id: "t1".into(),
        now_ms: now,
        first_poll_ms: Some(now),
        terminal_keys: Vec::new(),
    })
    .await
    .unwrap();
}

/// Cluster mode: the relay dies (its runtime and connections gone) between
/// the writes; the task stays open and its work goes to the next reconciler.
#[test]
fn in_cluster_mode_a_relay_stopped_between_the_writes_of_a_contesting_polled_result_polls_the_task_again() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let forged = rt().block_on(async {
        let s = open_nats(&nats.1).await;
        register_due(&s).await;
        let verifier = Verifier::default();
        let forged = append(
            &s,
            Some(&verifier),
            event(Origin::Callback, "https://evil.example/x.mp4", None),
        )
        .await
        .unwrap();
        taken(&s).await;
        STOP_AFTER_FIRST_WRITE.with(|c| c.set(true));
        assert!(append(&s, Some(&verifier), polled()).await.is_err());
        // A round trip on the connection: what the first write sent (an
        // acknowledgement of the task's work) has reached the server.
        let t = s.task(Some("runway".into()), "t1".into()).await.unwrap().unwrap();
        assert!(!t.state.is_final(), "{t:?}");
        forged
        // The runtime goes: the relay is dead, its work not acknowledged.
    });
    rt().block_on(async {
        let s = open_nats(&nats.1).await;
        let t = s.task(Some("runway".into()), "t1".into()).await.unwrap().unwrap();
        assert!(
            !t.state.is_final(),
            "the task was left settled by the forgery {forged:?}, never polled again: {t:?}"
        );
        taken(&s).await;
        let stored = append(&s, Some(&Verifier::default()), polled()).await.unwrap();
        assert!(!stored.duplicate && stored.id != forged.id, "{stored:?}");
        let t = s.task(Some("runway".into()), "t1".into()).await.unwrap().unwrap();
        assert_eq!(
            (t.state, t.event, t.polls),
            (TaskState::Recovered, Some(stored.id), 1),
            "{t:?}"
        );
        s.close().await;
    });
}
