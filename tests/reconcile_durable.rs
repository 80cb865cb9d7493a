//! Expected tasks survive `kill -9` of the relay: a task registered through
//! the submit proxy, whose callback is lost while the relay is down, is
//! polled after the restart and its result delivered (marked `poll`); an
//! unreadable task row does not make its callback refused for ever, nor
//! keep its task from being polled and the poll recorded.

use crate::common;

use crate::common::v1_store;

use std::time::Duration;

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{register, submit_ok, task, task_route, task_until, tasks_config};
use common::*;
use http::StatusCode;

#[tokio::test]
async fn tasks_and_their_polls_resume_after_kill_9() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route =
        task_route("runway", "kie-runway", &fake, &sub.url()).reconcile(Reconcile::new(secs(2), ms(200), secs(60)));
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    let path = cfg.write();
    let mut bin = Bin::start(&path, &[]);
    // Lost while the relay is down: the provider gives up on its callback.
    fake.plan_next(TaskPlan::success().lose());
    let id = submit_ok(bin.admin, "runway", "/api/v1/runway/generate").await;
    assert_eq!(task(bin.admin, &id).await["state"], "waiting");
    bin.kill9();
    assert_eq!(fake.status_requests(&id), 0, "not polled before the kill");
    let bin = Bin::start(&path, &[]);
    let t = task_until(bin.admin, &id, "recovered", secs(15)).await;
    assert_eq!(t["state"], "recovered", "{t}");
    let got = sub
        .wait_for(secs(10), "the recovered result", |all| all.len() == 1)
        .await;
    assert_eq!(got[0].header("hookrelay-source"), "poll");
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["data"]["task_id"], id.as_str());
    assert_eq!(body, fake.final_callback(&id), "the product's callback shape");
}

/// One unreadable expected-task row (`G`, written torn, say) made every
/// terminal callback for that task answered 503 for ever, though its event
/// was stored and delivered (review 22 #4): `add_event` put the log and
/// dedupe rows in the batch, then `mark_task` failed decoding the task row;
/// the batch was still flushed with the event in it and the request got the
/// error. The provider's retry is a duplicate, which went through
/// `mark_task` again and failed the same way; each refusal also marked the
/// store unreachable (/readyz). The row is now replaced (settled by the
/// event), as unreadable result rows are.
#[tokio::test]
async fn an_unreadable_task_row_does_not_refuse_its_callback_for_ever() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("plain", "kie-runway", &fake, &sub.url()).without_reconcile();
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let (s, v) = register(h.admin_addr, "plain", "T1").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    h.shutdown().await;
    tear_the_task_row(&cfg.data());
    let h = start(&cfg).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        let (s, v) = callback_at(addr, "/hooks/plain", &runway("T1")).await;
        answers.push((s, v));
    }
    // Whatever the provider was told, the event was stored and is delivered.
    sub.wait_for(Duration::from_secs(10), "the callback's event", |r| !r.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivered = sub.count();
    h.shutdown().await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::OK),
        "the callback was stored and delivered ({delivered} time(s)) but the provider was answered {:?}",
        answers.iter().map(|(s, v)| format!("{s} {v}")).collect::<Vec<_>>()
    );
}

/// An unreadable task row of a task the reconciler is polling: the due
/// schedule row named a task that did not decode, so it was skipped every
/// round and never polled again (and a poll's outcome could not be recorded
/// on it). Now it is polled, and the poll's outcome goes on a fresh row.
#[tokio::test]
async fn an_unreadable_task_row_is_still_polled_and_its_poll_recorded() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route =
        task_route("runway", "kie-runway", &fake, &sub.url()).reconcile(Reconcile::new(secs(2), ms(200), secs(60)));
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    // Still running at the provider, and no callback comes.
    fake.plan_next(TaskPlan::success().manual());
    let id = submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;
    h.shutdown().await;
    assert_eq!(fake.status_requests(&id), 0, "not polled before the restart");
    tear_the_task_row(&cfg.data());
    let h = start(&cfg).await;
    // Unreadable: not shown (404) until the poll replaces the row.
    let end = tokio::time::Instant::now() + secs(15);
    let t = loop {
        let (s, t) = admin(h.admin_addr, "GET", &format!("/api/tasks/{id}")).await;
        if (s == StatusCode::OK && t["state"] == "polling") || tokio::time::Instant::now() > end {
            break t;
        }
        tokio::time::sleep(ms(100)).await;
    };
    h.shutdown().await;
    assert!(fake.status_requests(&id) >= 1, "never polled: {t}");
    assert_eq!(t["state"], "polling", "the poll is recorded on a readable row: {t}");
}

/// Make the stopped store's one expected-task row unreadable.
fn tear_the_task_row(data: &std::path::Path) {
    let db = v1_store::open(data);
    let t = db.open_tree("hookrelay-v2").unwrap();
    let keys: Vec<_> = t.scan_prefix(b"G").keys().map(|k| k.unwrap()).collect();
    assert_eq!(keys.len(), 1, "one task row");
    for k in keys {
        t.insert(k, &b"\xff\xff"[..]).unwrap();
    }
    db.flush().unwrap();
}
