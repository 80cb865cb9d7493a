use super::*;

fn meta(route: &str, subs: &[&str]) -> EventMeta {
    EventMeta {
        route: route.into(),
        received_ms: now_ms(),
        source: "127.0.0.1".into(),
        content_type: Some("application/json".into()),
        headers: vec![],
        subscribers: subs.iter().map(|s| s.to_string()).collect(),
        dedupe: hex::encode([7u8; 32]),
        dedupe_fallback: false,
    }
}

fn new_event(route: &str, subs: &[&str], hash: u8, body: &str) -> NewEvent {
    let mut m = meta(route, subs);
    m.dedupe = hex::encode([hash; 32]);
    NewEvent {
        meta: m,
        dedupe_hash: [hash; 32],
        body: Bytes::from(body.to_string()),
    }
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), 1 << 20).unwrap();
    (dir, store)
}

#[test]
fn commit_dedupes_within_and_across_batches() {
    let (_d, store) = open();
    let evs = [
        new_event("r", &["a", "b"], 1, "x"),
        new_event("r", &["a", "b"], 1, "x"),
        new_event("r", &["a", "b"], 2, "y"),
    ];
    let out = store.commit_batch(evs.iter()).unwrap();
    assert!(!out[0].duplicate && out[1].duplicate && !out[2].duplicate);
    assert_eq!(out[0].id, out[1].id);
    let again = store.commit_batch([new_event("r", &["a"], 1, "x")].iter()).unwrap();
    assert_eq!(
        again[0],
        Accepted {
            id: out[0].id,
            duplicate: true
        }
    );
    // Same key on another route is another event.
    let other = store.commit_batch([new_event("other", &["a"], 1, "x")].iter()).unwrap();
    assert!(!other[0].duplicate);
    assert_eq!(store.count_jobs("a"), 3);
    assert_eq!(store.count_jobs("b"), 2);
    let ev = store.event(out[0].id).unwrap().unwrap();
    assert_eq!(&ev.body[..], b"x");
    assert_eq!(ev.meta.subscribers, vec!["a", "b"]);
}

#[tokio::test]
async fn committer_wakes_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let woken = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let id = {
        let store = Store::open(&path, 1 << 20).unwrap();
        let w = woken.clone();
        let c = store.committer(
            16,
            Arc::new(move |s: &[String]| w.lock().unwrap().extend(s.iter().cloned())),
        );
        let a = c.commit(new_event("r", &["a"], 9, "body")).await.unwrap();
        let b = c.commit(new_event("r", &["a"], 9, "body")).await.unwrap();
        assert!(!a.duplicate && b.duplicate);
        c.stop().await;
        a.id
    };
    assert_eq!(
        *woken.lock().unwrap(),
        vec!["a".to_string()],
        "only the new event wakes lanes"
    );
    // The writer stopped and every handle is gone: the store reopens.
    let store = Store::open(&path, 1 << 20).expect("reopen");
    assert!(store.event(id).unwrap().is_some());
    let dup = store.commit_batch([new_event("r", &["a"], 9, "body")].iter()).unwrap();
    assert_eq!(dup[0], Accepted { id, duplicate: true });
}

#[test]
fn jobs_in_due_order_and_outcomes() {
    let (_d, store) = open();
    let out = store
        .commit_batch([new_event("r", &["a"], 1, "1"), new_event("r", &["a"], 2, "2")].iter())
        .unwrap();
    let busy = HashSet::new();
    let jobs = store.due_jobs("a", now_ms() + 1, 10, &busy).unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].event, out[0].id);
    // First fails and is retried later; second is delivered.
    let a = Attempt {
        attempt: 1,
        at_ms: now_ms(),
        duration_ms: 3,
        status: Some(500),
        error: None,
    };
    store
        .finish(
            &jobs[0],
            Some(&a),
            &Outcome::Retry {
                due_ms: now_ms() + 60_000,
            },
        )
        .unwrap();
    store.finish(&jobs[1], Some(&a), &Outcome::Delivered).unwrap();
    assert!(store.due_jobs("a", now_ms() + 1, 10, &busy).unwrap().is_empty());
    let later = store.due_jobs("a", now_ms() + 61_000, 10, &busy).unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!((later[0].step, later[0].attempts), (1, 1));
    assert!(store.next_due("a", &busy).unwrap().unwrap() > now_ms());
    assert_eq!(
        store.state(out[1].id, "a").unwrap().unwrap().state,
        FinalState::Delivered
    );
    assert!(store.state(out[0].id, "a").unwrap().is_none());
    // Busy jobs are skipped.
    let busy: HashSet<Vec<u8>> = [later[0].key.clone()].into();
    assert!(store.due_jobs("a", now_ms() + 61_000, 10, &busy).unwrap().is_empty());
    // Dead letter, then replay.
    store
        .finish(
            &later[0],
            Some(&a),
            &Outcome::Dead {
                error: "HTTP 500".into(),
            },
        )
        .unwrap();
    let dl = store.dead_letters(Some("a"), 10).unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].attempts, 2);
    assert_eq!(store.attempts(out[0].id, "a").unwrap().len(), 2);
    let counts = store.replay_dead_letters(Some("a")).unwrap();
    assert_eq!(counts.get("a"), Some(&1));
    assert!(store.dead_letters(None, 10).unwrap().is_empty());
    let again = store.due_jobs("a", now_ms() + 1, 10, &HashSet::new()).unwrap();
    assert_eq!((again.len(), again[0].step, again[0].attempts), (1, 0, 2));
}

#[test]
fn sweep_removes_only_finished_expired_events() {
    let (_d, store) = open();
    let mut old = new_event("r", &["a"], 1, "old");
    old.meta.received_ms = now_ms() - 100_000;
    let mut pending = new_event("r", &["a"], 2, "pending");
    pending.meta.received_ms = now_ms() - 90_000;
    let fresh = new_event("r", &["a"], 3, "fresh");
    let out = store.commit_batch([old, pending, fresh].iter()).unwrap();
    let jobs = store.due_jobs("a", now_ms() + 1, 10, &HashSet::new()).unwrap();
    let old_job = jobs.iter().find(|j| j.event == out[0].id).unwrap();
    store.finish(old_job, None, &Outcome::Delivered).unwrap();
    let fresh_job = jobs.iter().find(|j| j.event == out[2].id).unwrap();
    store.finish(fresh_job, None, &Outcome::Delivered).unwrap();
    let (cursor, removed) = store.sweep(now_ms() - 50_000, None, 100).unwrap();
    assert_eq!((cursor, removed), (None, 1));
    assert!(store.event(out[0].id).unwrap().is_none());
    assert!(
        store.event(out[1].id).unwrap().is_some(),
        "pending delivery keeps its event"
    );
    assert!(store.event(out[2].id).unwrap().is_some(), "younger than retention");
    // The expired dedupe key is gone: the same callback is new again.
    let again = store.commit_batch([new_event("r", &["a"], 1, "old")].iter()).unwrap();
    assert!(!again[0].duplicate);
    // Bounded batches resume from the cursor.
    let (cursor, removed) = store.sweep(now_ms() + 1, None, 1).unwrap();
    assert_eq!(removed, 0);
    assert!(cursor.is_some());
}

#[test]
fn dead_letters_are_kept_retention_after_they_died() {
    let (_d, store) = open();
    // Received long before the cutoff; one delivery died just now, one was delivered.
    let mut ev = new_event("r", &["a", "b"], 1, "long retried");
    ev.meta.received_ms = now_ms() - 100_000;
    let id = store.commit_batch([ev].iter()).unwrap()[0].id;
    let due = |s| store.due_jobs(s, now_ms() + 1, 10, &HashSet::new()).unwrap().remove(0);
    store.finish(&due("b"), None, &Outcome::Delivered).unwrap();
    let dead = Outcome::Dead {
        error: "HTTP 500".into(),
    };
    store.finish(&due("a"), None, &dead).unwrap();
    let (_, removed) = store.sweep(now_ms() - 50_000, None, 100).unwrap();
    assert_eq!(removed, 0, "a fresh dead letter must not expire with its old event");
    assert!(store.event(id).unwrap().is_some());
    assert_eq!(store.dead_letters(Some("a"), 10).unwrap().len(), 1);
    // Once the dead letter itself is older than the cutoff, everything goes.
    let (_, removed) = store.sweep(now_ms() + 1, None, 100).unwrap();
    assert_eq!(removed, 1);
    assert!(store.event(id).unwrap().is_none());
    assert!(store.dead_letters(Some("a"), 10).unwrap().is_empty());
}

#[test]
fn recent_events_newest_first_by_route() {
    let (_d, store) = open();
    let mut evs = Vec::new();
    for i in 0..5u8 {
        let mut e = new_event(if i % 2 == 0 { "even" } else { "odd" }, &["a"], i, "b");
        e.meta.received_ms = 1_000_000 + u64::from(i);
        evs.push(e);
    }
    let out = store.commit_batch(evs.iter()).unwrap();
    let all = store.recent_events(None, None, 10).unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        out.iter().rev().map(|a| a.id).collect::<Vec<_>>()
    );
    let even = store.recent_events(Some("even"), None, 2).unwrap();
    assert_eq!(even.len(), 2);
    assert!(even.iter().all(|e| e.meta.route == "even"));
    let before = store.recent_events(None, Some(out[2].id), 10).unwrap();
    assert_eq!(before.len(), 2);
    let subs = store.subscribers_with_rows().unwrap();
    assert_eq!(subs, vec!["a".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_count_stays_exact_while_commits_continue() {
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    use std::sync::Arc;
    let (_d, store) = open();
    // More than two counting chunks of backlog, with due times spread out so
    // new jobs land both ahead of and behind the count's cursor.
    for b in 0..45u32 {
        let evs: Vec<NewEvent> = (0..1000u32)
            .map(|i| {
                let n = b * 1000 + i;
                let mut e = new_event("r", &["a"], 0, &format!("{n}"));
                e.dedupe_hash = Sha256Like::hash(n);
                e.meta.received_ms = now_ms() - 3_600_000 + u64::from(n) * 100;
                e
            })
            .collect();
        store.commit_batch(evs.iter()).unwrap();
    }
    let depth = Arc::new(AtomicI64::new(0));
    let counted = Arc::new(AtomicBool::new(false));
    let (d2, c2) = (depth.clone(), counted.clone());
    let committer = store.committer(
        1024,
        Arc::new(move |subs: &[String]| {
            if c2.load(Ordering::Acquire) && subs.iter().any(|s| s == "a") {
                d2.fetch_add(1, Ordering::Relaxed);
            }
        }),
    );
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (d3, c3) = (depth.clone(), counted.clone());
    committer
        .count_jobs(
            "a",
            Arc::new(move |n| {
                d3.fetch_add(n as i64, Ordering::Relaxed);
            }),
            Box::new(move || {
                c3.store(true, Ordering::Release);
                let _ = tx.send(());
            }),
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..8u32 {
        let c = committer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..250u32 {
                let n = 100_000 + w * 1000 + i;
                let mut e = new_event("r", &["a"], 0, &format!("{n}"));
                e.dedupe_hash = Sha256Like::hash(n);
                c.commit(e).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    rx.await.unwrap();
    committer.stop().await;
    assert_eq!(depth.load(Ordering::Relaxed), store.count_jobs("a") as i64);
    assert_eq!(store.count_jobs("a"), 47_000);
}

/// Distinct dedupe hashes for numbered test events.
struct Sha256Like;
impl Sha256Like {
    fn hash(n: u32) -> [u8; 32] {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&n.to_be_bytes());
        h[31] = 0xaa;
        h
    }
}

#[test]
fn event_ids_parse_only_within_128_bits() {
    let max: EventId = "evt_7ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse().unwrap();
    assert_eq!(max.0, Ulid(u128::MAX));
    let id = EventId(Ulid::from_parts(1_700_000_000_000, 42));
    assert_eq!(id.to_string().to_lowercase().parse::<EventId>(), Ok(id));
    for bad in [
        "evt_8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
        "evt_80000000000000000000000000",
        "evt_ZZ",
        "evt_",
    ] {
        assert!(bad.parse::<EventId>().is_err(), "{bad}");
    }
}
