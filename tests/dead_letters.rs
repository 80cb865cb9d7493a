//! Listing dead letters: the newest first across subscribers (not the oldest
//! of the first subscriber), with `total` counting them all; the CLI says
//! when its list is cut. Embedded store and cluster mode answer alike.
//! Replaying them with `?subscriber=` that names no subscriber is refused.

use crate::common;

use std::time::Duration;

use common::nats::NatsCluster;
use common::*;

async fn dead_letters_are_listed_newest_first_across_subscribers(base: TestConfig) {
    let gone = Sub::always(Behaviour::Status(410)).await;
    let cfg = base
        .subscriber(Subscriber::new("a", gone.url()))
        .subscriber(Subscriber::new("b", gone.url()));
    let h = start(&cfg).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(accepted(h.ingest_addrs[0], &runway(&format!("newest-{i}"))).await);
    }
    let all = admin_until(h.admin_addr, "/api/dead-letters", Duration::from_secs(10), |v| {
        v["dead_letters"].as_array().is_some_and(|d| d.len() == 8)
    })
    .await;
    let listed = |v: &serde_json::Value| -> Vec<(String, String)> {
        v["dead_letters"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|d| {
                (
                    d["event"].as_str().unwrap().to_string(),
                    d["subscriber"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(listed(&all).len(), 8, "{all}");
    let pair = |i: usize, s: &str| (ids[i].clone(), s.to_string());
    let (_, v) = admin(h.admin_addr, "GET", "/api/dead-letters?limit=3").await;
    assert_eq!(listed(&v), [pair(3, "a"), pair(3, "b"), pair(2, "a")], "{v}");
    assert_eq!(v["total"], 8, "{v}");
    let (_, v) = admin(h.admin_addr, "GET", "/api/dead-letters?subscriber=b&limit=2").await;
    assert_eq!(listed(&v), [pair(3, "b"), pair(2, "b")], "{v}");
    assert_eq!(v["total"], 4, "{v}");
    // The CLI says that more exist than it lists, and nothing when it lists them all.
    let admin_url = format!("http://{}", h.admin_addr);
    let args = |extra: &[&str]| {
        ["--admin", &admin_url, "dead-letters"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let (ok, out, err) = cli_async(args(&["--limit", "3"])).await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 5, "header, 3 rows, the note: {out}");
    assert!(out.lines().nth(1).unwrap().contains(&ids[3]), "{out}");
    assert!(out.contains("showing the newest 3 of 8 dead letters"), "{out}");
    let (ok, out, err) = cli_async(args(&[])).await;
    assert!(ok && !out.contains("showing"), "{out}{err}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_newest_first_across_subscribers_embedded() {
    let dir = tempfile::tempdir().unwrap();
    dead_letters_are_listed_newest_first_across_subscribers(TestConfig::new(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_newest_first_across_subscribers_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    dead_letters_are_listed_newest_first_across_subscribers(TestConfig::new(dir.path()).nats(nats.urls(), 1)).await;
}

/// `POST /api/events/<id>/replay?subscriber=s&only=` (`only=$X`, `X`
/// unset) is refused (`400`, naming `only`), not taken for a replay without
/// `only`: a delivery that succeeded was sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_with_an_empty_only_is_refused() {
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let h = start(&TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()))).await;
    let id = accepted_retrying(h.ingest_addrs[0], &runway("only-empty")).await;
    sub.wait_for(secs(10), "the delivery", |r| r.len() == 1).await;
    let path = format!("/api/events/{id}");
    admin_expect(h.admin_addr, &path, secs(10), "delivered", |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    let (s, v) = admin(h.admin_addr, "POST", &format!("{path}/replay?subscriber=s&only=")).await;
    tokio::time::sleep(ms(500)).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("only takes"), "{v}");
    assert_eq!(sub.count(), 1, "the delivered callback was sent again");
    h.shutdown().await;
}

/// `POST /api/dead-letters/replay?subscriber=` names one subscriber (empty):
/// it is refused (`400`, saying why), not taken for every subscriber, whose
/// dead letters would all be re-queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_replay_with_an_empty_subscriber_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, before, _subs) = one_event_dead_for_x_and_y(dir.path(), "empty-dead").await;
    let (s, v) = admin(h.admin_addr, "POST", "/api/dead-letters/replay?subscriber=").await;
    let (blank, bv) = admin(h.admin_addr, "POST", "/api/dead-letters/replay?subscriber=+").await;
    tokio::time::sleep(ms(500)).await;
    let (_, after) = admin(h.admin_addr, "GET", "/api/dead-letters").await;
    let (ok, out, err) = cli_async(vec![
        "--admin".into(),
        format!("http://{}", h.admin_addr),
        "replay-dead-letters".into(),
        "--subscriber".into(),
        String::new(),
    ])
    .await;
    h.shutdown().await;
    assert_eq!(s, 400, "an empty subscriber was taken for every subscriber: {v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("subscriber must not be empty"),
        "{v}"
    );
    assert_eq!(blank, 400, "a blank subscriber: {bv}");
    assert_eq!(
        after["dead_letters"], before["dead_letters"],
        "nothing was re-queued (a re-queued letter dies again later): {after}"
    );
    assert!(
        !ok && err.contains("--subscriber") && err.contains("must not be empty"),
        "the CLI refuses it before sending\nstdout: {out}\nstderr: {err}"
    );
}

/// A misspelt or unknown query parameter is refused (`400` naming it and the
/// ones the endpoint takes), never ignored: on a replay an ignored
/// `?subscribers=x` or `?sub=x` meant "every subscriber" (all dead letters
/// re-queued, an event sent again to subscribers that had it), and on a list
/// an ignored `?state=dead` (the tasks' name for `status`) answered every
/// event as if filtered. From review 43.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_query_parameter_is_refused_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (h, id, before, _subs) = one_event_dead_for_x_and_y(dir.path(), "typo-dead").await;
    let mut answers = Vec::new();
    for (method, path) in [
        ("POST", "/api/dead-letters/replay?subscribers=x".to_string()),
        ("POST", format!("/api/events/{id}/replay?sub=x")),
        ("GET", "/api/events?state=dead".to_string()),
        ("GET", "/api/dead-letters?subscriber=x&limt=1".to_string()),
    ] {
        let (s, v) = admin(h.admin_addr, method, &path).await;
        answers.push((path, s.as_u16(), v.to_string()));
    }
    tokio::time::sleep(ms(500)).await;
    let (_, after) = admin(h.admin_addr, "GET", "/api/dead-letters").await;
    // What the console and the CLI send is still taken.
    let (ok_list, listed) = admin(
        h.admin_addr,
        "GET",
        "/api/events?limit=100&route=t&status=dead&task=typo&before=",
    )
    .await;
    h.shutdown().await;
    assert_eq!(
        after["dead_letters"], before["dead_letters"],
        "nothing was re-queued: {answers:?}\n{after}"
    );
    for (path, status, body) in &answers {
        assert_eq!(*status, 400, "{path}: {body}");
    }
    assert!(
        answers[0].2.contains("subscribers") && answers[0].2.contains("subscriber"),
        "the answer names the parameter and the known ones: {answers:?}"
    );
    assert!(
        answers[2].2.contains("\\\"state\\\"") && answers[2].2.contains("status"),
        "{answers:?}"
    );
    assert_eq!(ok_list, 200, "{listed}");
}

/// One event dead for both of its subscribers `x` and `y` (each answers
/// `410`): the running daemon, the event's id, the dead-letter list, and
/// the subscribers (kept alive by the caller).
async fn one_event_dead_for_x_and_y(
    dir: &std::path::Path,
    key: &str,
) -> (
    hookrelay::Handle,
    String,
    serde_json::Value,
    [(Sub, std::sync::Arc<std::sync::atomic::AtomicBool>); 2],
) {
    let x = Sub::broken(Behaviour::Status(410)).await;
    let y = Sub::broken(Behaviour::Status(410)).await;
    let cfg = TestConfig::new(dir)
        .subscriber(Subscriber::new("x", x.0.url()))
        .subscriber(Subscriber::new("y", y.0.url()));
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway(key)).await;
    let before = admin_until(h.admin_addr, "/api/dead-letters", secs(10), |v| v["total"] == 2).await;
    assert_eq!(before["total"], 2, "{before}");
    (h, id, before, [x, y])
}
