//! What the console reads from the admin API: the task id search on events,
//! lists that say when they leave rows out (and where the next page is),
//! and no secret (admin token, route token, subscriber signing secret, a
//! secret header or URL parameter of a subscriber, a pull token) in any answer
//! the console renders, nor in the console's own files.

use crate::common;

use std::time::Duration;

use common::*;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_found_by_part_of_their_task_id() {
    let (_dir, sub, h) = with_ok_subscriber().await;
    let (ingest, a) = (h.ingest_addrs[0], h.admin_addr);
    let want = accepted(ingest, &runway("Gen-4-Alpha-7731")).await;
    for other in ["gen-3-beta", "unrelated"] {
        accepted(ingest, &runway(other)).await;
    }
    // A body without a task id is never a match.
    accepted(ingest, r#"{"code":200,"data":{"note":"alpha-7731"}}"#).await;
    sub.wait_for(Duration::from_secs(5), "the deliveries", |r| r.len() == 4)
        .await;
    let ids = event_ids;
    let (s, v) = admin(a, "GET", "/api/events?task=ALPHA-77").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(ids(&v), vec![want.clone()]);
    assert_eq!(v["events"][0]["task_id"], "Gen-4-Alpha-7731");
    // Combined with the other filters; limit counts matches, not scanned events.
    let (_, v) = admin(a, "GET", "/api/events?task=gen-&route=t&status=delivered&limit=2").await;
    assert_eq!(ids(&v).len(), 2, "{v}");
    assert!(ids(&v).contains(&want), "{v}");
    let (_, v) = admin(a, "GET", "/api/events?task=gen-&route=t&status=dead").await;
    assert!(ids(&v).is_empty(), "{v}");
    let (_, v) = admin(a, "GET", "/api/events?task=nothing-like-it").await;
    assert!(ids(&v).is_empty(), "{v}");
    let (_, v) = admin(a, "GET", &format!("/api/events/{want}")).await;
    assert_eq!(v["task_id"], "Gen-4-Alpha-7731");
    // The CLI asks the same question.
    let args = [
        "--admin",
        &format!("http://{a}"),
        "events",
        "--task",
        "alpha-77",
        "--json",
    ];
    let (ok, out, err) = cli_async(args.iter().map(|s| s.to_string()).collect()).await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ids(&v), vec![want.clone()]);
    h.shutdown().await;
}

/// A task id is whatever the poster sent: one of 100 KB is shown cut to
/// 256 bytes and `…` in the listing and the event's view (it was shown
/// whole: 10,000 such events made a listing of gigabytes), and the search
/// still finds it by its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_task_id_is_shown_cut() {
    let (_dir, _sub, h) = with_ok_subscriber().await;
    let (ingest, a) = (h.ingest_addrs[0], h.admin_addr);
    let task = format!("huge-{}", "é".repeat(50_000));
    let id = accepted(ingest, &runway(&task)).await;
    let cut = |v: &serde_json::Value| {
        let t = v["task_id"].as_str().unwrap_or_default().to_string();
        assert!(t.len() <= 256 + '…'.len_utf8() && t.ends_with('…'), "{} bytes", t.len());
        assert!(task.starts_with(t.trim_end_matches('…')));
    };
    let (s, v) = admin(a, "GET", "/api/events?task=huge-").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(event_ids(&v), vec![id.clone()]);
    cut(&v["events"][0]);
    let (_, v) = admin(a, "GET", &format!("/api/events/{id}")).await;
    cut(&v);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_in_anything_the_console_renders() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let secrets = [
        "adm1n-t0ken-zq",
        "r0ute-t0ken-zq",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "h3ader-s3cret-zq",
        "url-c0de-zq",
        "pu11-t0ken-zq",
    ];
    let url = format!("{}?code=url-c0de-zq&x=1", sub.url());
    let cfg = TestConfig::new(dir.path())
        .admin_token(secrets[0])
        .edit_route("t", |r| r.tokens([secrets[1]]))
        .subscriber(
            Subscriber::new("s", url)
                .secret(secrets[2])
                .header("x-api-key", secrets[4]),
        )
        .subscriber(Subscriber::pull("p", secrets[6]));
    let h = start(&cfg).await;
    let (ingest, a) = (h.ingest_addrs[0], h.admin_addr);
    // The route token both ways a provider may send it.
    let json = ("content-type", "application/json");
    let q = format!("/hooks/t?token={}", secrets[1]);
    assert_eq!(post(ingest, &q, &[json], runway("sec-1")).await.0, StatusCode::OK);
    let bearer = format!("Bearer {}", secrets[1]);
    let (s, _, b) = post(ingest, "/hooks/t", &[json, ("authorization", &bearer)], runway("sec-2")).await;
    assert_eq!(s, StatusCode::OK);
    let id: serde_json::Value = serde_json::from_slice(&b).unwrap();
    // A callback quoting the URL it was given, token and all, as kie's
    // Market records quote the whole create request (`data.param`).
    let callback_url = serde_json::json!({ "callBackUrl": format!("https://relay.example{q}") }).to_string();
    let echo = serde_json::json!({"code": 200, "data": {"taskId": "sec-3", "param": callback_url}}).to_string();
    let (s, _, b) = post(ingest, "/hooks/t", &[json, ("authorization", &bearer)], echo.clone()).await;
    assert_eq!(s, StatusCode::OK);
    let echoed: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let got = sub
        .wait_for(Duration::from_secs(5), "the deliveries", |r| r.len() == 3)
        .await;
    // The secrets are in force: the key is sent, the URL parameter too; the
    // callback quoting the token is delivered as the provider sent it.
    assert_eq!(got[0].header("x-api-key"), secrets[4]);
    assert!(
        got.iter().any(|r| r.body == echo.as_bytes()),
        "the echoing callback was not delivered byte for byte"
    );
    let auth = format!("Bearer {}", secrets[0]);
    let mut shown = String::new();
    let paths = [
        "/api/status".to_string(),
        "/api/events".into(),
        format!("/api/events/{}", id["id"].as_str().unwrap()),
        format!("/api/events/{}", echoed["id"].as_str().unwrap()),
        "/api/dead-letters".into(),
        "/api/subscribers".into(),
        "/metrics".into(),
        "/ui".into(),
        "/ui/app.js".into(),
        "/ui/dom.js".into(),
        "/ui/indent.js".into(),
        "/ui/pages.js".into(),
    ];
    for path in &paths {
        let (s, headers, body) = request(a, None, "GET", path, &[("authorization", &auth)], Default::default()).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        shown.push_str(&format!("{path}\n{headers:?}\n{}\n", String::from_utf8_lossy(&body)));
    }
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret} is shown:\n{shown}");
    }
    assert!(
        shown.contains("hooks/t?token=<redacted>"),
        "the echoed token's place is not marked:\n{shown}"
    );
    // The subscriber is shown by its host, its path and query cut.
    let host = sub.url().split('/').take(3).collect::<Vec<_>>().join("/");
    assert!(shown.contains(&format!("\"{host}/…\"")), "{host}/… not in:\n{shown}");
    h.shutdown().await;
}

/// A token rotated out of the configuration since its callback came stays
/// hidden where the body quotes it (the route's tokens are looked for by
/// value; the old one is no longer among them), as does a short token in
/// another URL the body quotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rotated_out_since_the_callback_came_stays_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let (old, new) = ("r0tated-0ut-t0ken-zq", "n3w-r0ute-t0ken-zq");
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg.clone().edit_route("t", |r| r.tokens([old]))).await;
    let (ingest, a) = (h.ingest_addrs[0], h.admin_addr);
    let callback_url = format!("https://relay.example/hooks/t?token={old}");
    let other = "https://other.example/cb?x=1&token=k3y";
    let param = serde_json::json!({ "callBackUrl": callback_url, "notify": other }).to_string();
    let echo = serde_json::json!({"code": 200, "data": {"taskId": "rot-1", "param": param}}).to_string();
    let (s, _, b) = post(
        ingest,
        &format!("/hooks/t?token={old}"),
        &[("content-type", "application/json")],
        echo,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let id = serde_json::from_slice::<serde_json::Value>(&b).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    sub.wait_for(secs(5), "the delivery", |r| r.len() == 1).await;
    cfg.edit_route("t", |r| r.tokens([new])).write();
    h.reload().await.expect("reload");
    let (s, v) = admin(a, "GET", &format!("/api/events/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let shown = v.to_string();
    assert!(!shown.contains(old), "the rotated-out token is shown: {shown}");
    assert!(!shown.contains("k3y"), "the other URL's token is shown: {shown}");
    assert_eq!(shown.matches("token=<redacted>").count(), 2, "{shown}");
    h.shutdown().await;
}

/// A list cut at `limit` says so: `/api/events` answers `more` and
/// `next_before` (the cursor of the next, older page), `/api/tasks` `more`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_say_when_rows_are_left_out_and_where_the_next_page_is() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(
        &TestConfig::new(dir.path())
            .subscriber(Subscriber::new("s", sub.url()))
            .route(preset_route("tasks", "kie-runway").subscriber(Subscriber::new("tasks-sub", sub.url()))),
    )
    .await;
    let a = h.admin_addr;
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(accepted(h.ingest_addrs[0], &runway(&format!("page-{i}"))).await);
    }
    sub.wait_for(secs(10), "3 deliveries", |r| r.len() == 3).await;
    let (s, first) = admin(a, "GET", "/api/events?limit=2").await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(event_ids(&first), vec![sent[2].clone(), sent[1].clone()]);
    assert_eq!(first["more"], true, "3 match, 2 listed: {first}");
    assert_eq!(first["next_before"], sent[1].as_str(), "{first}");
    let (_, next) = admin(a, "GET", &format!("/api/events?limit=2&before={}", sent[1])).await;
    assert_eq!(event_ids(&next), vec![sent[0].clone()], "{next}");
    assert_eq!(next["more"], false, "{next}");
    assert!(next["next_before"].is_null(), "{next}");
    let (_, all) = admin(a, "GET", "/api/events?limit=3").await;
    assert_eq!(
        (all["more"].clone(), event_ids(&all).len()),
        (serde_json::json!(false), 3),
        "{all}"
    );
    for t in ["page-task-1", "page-task-2"] {
        let body = format!(r#"{{"route": "tasks", "task_id": "{t}"}}"#);
        let (s, _, b) = request(
            a,
            None,
            "POST",
            "/api/tasks",
            &[("content-type", "application/json")],
            body.into(),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    }
    let (_, one) = admin(a, "GET", "/api/tasks?limit=1").await;
    assert_eq!(
        (one["tasks"].as_array().unwrap().len(), one["more"].clone()),
        (1, serde_json::json!(true)),
        "{one}"
    );
    let (_, both) = admin(a, "GET", "/api/tasks?limit=2").await;
    assert_eq!(
        (both["tasks"].as_array().unwrap().len(), both["more"].clone()),
        (2, serde_json::json!(false)),
        "{both}"
    );
    h.shutdown().await;
}

/// An event stored for no subscriber at all (what a request whose route's
/// subscribers were all taken off it by a reload at the moment of its store
/// leaves behind; review 35, finding 1) is `undelivered` in the admin API,
/// not `delivered`, and the status filter finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stored_for_no_subscriber_is_undelivered_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(&TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN))).await;
    let stored = h
        .app
        .store
        .append(hookrelay::store::NewEvent {
            meta: hookrelay::store::EventMeta {
                route: "t".into(),
                received_ms: hookrelay::clock::now_ms(),
                source: None,
                content_type: Some("application/json".into()),
                headers: vec![],
                subscribers: vec![],
                dedupe_fallback: false,
                origin: hookrelay::store::Origin::Callback,
            },
            dedupe_hash: [7; 32],
            body: bytes::Bytes::from_static(b"{}"),
            media: vec![],
            media_after_verify: false,
            task: None,
        })
        .await
        .unwrap();
    let id = stored.id.to_string();
    let (_, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    assert_eq!(ev["status"], "undelivered", "{ev}");
    let (s, list) = admin(h.admin_addr, "GET", "/api/events?status=undelivered").await;
    assert_eq!(s, http::StatusCode::OK, "{list}");
    let ids: Vec<&str> = list["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str()], "{list}");
    let (_, list) = admin(h.admin_addr, "GET", "/api/events?status=delivered").await;
    assert!(list["events"].as_array().unwrap().is_empty(), "{list}");
    h.shutdown().await;
}

/// Review 43, finding 3: a listing held every listed event's whole body
/// (`limit` up to 10 000, bodies up to `server.max_body`), so one
/// `GET /api/events?limit=10000` could hold ~10 GiB. Now the store takes
/// each body's size and task id while it scans and keeps no body: 160
/// events of 1 MiB are listed three times with the daemon's peak RSS within
/// 64 MiB of its resident memory before (before the fix: +160 MiB and
/// more), and the list says the same as before (size, task id, status,
/// subscribers). sled keeps every value it has read in its page cache
/// (a page written as a blob counts as its pointer's few bytes against
/// `store.cache`), so each event is read once first (`/api/events/ID`,
/// which still shows the body) and the peak is measured from there: what
/// the listing itself holds, not what sled caches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_listing_holds_no_bodies() {
    const EVENTS: usize = 160;
    const PAD: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    // A pull subscriber: the events wait (pending), no delivery reads them.
    let config = TestConfig::new(dir.path())
        .max_body(2 << 20)
        .store_cache(4 << 20)
        .subscriber(Subscriber::pull("p", "pu11-t0ken"))
        .write();
    let bin = Bin::start(&config, &[]);
    let pad = "x".repeat(PAD);
    let mut sizes = std::collections::HashMap::new();
    for n in 0..EVENTS {
        let task = format!("big-{n}");
        let body = serde_json::json!({"code": 200, "data": {"task_id": task, "pad": pad}}).to_string();
        let id = accepted(bin.addr, &body).await;
        sizes.insert(id, (task, body.len()));
    }
    // Storing them left memory freed but kept by the allocator, which a
    // listing would reuse unseen: a new daemon on the same store lists them.
    let stored = bin.peak_rss_kib();
    drop(bin);
    let bin = Bin::start(&config, &[]);
    let started = bin.peak_rss_kib();
    for (id, (task, size)) in &sizes {
        let (s, v) = admin(bin.admin, "GET", &format!("/api/events/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            (v["task_id"].as_str(), v["body"].as_str().map(str::len)),
            (Some(task.as_str()), Some(*size))
        );
    }
    // From here the peak is the resident memory now (Linux `clear_refs` 5).
    std::fs::write(format!("/proc/{}/clear_refs", bin.child.id()), "5").expect("reset the daemon's VmHWM");
    let before = bin.peak_rss_kib();
    for _ in 0..3 {
        let (s, v) = admin(bin.admin, "GET", "/api/events?limit=10000").await;
        assert_eq!(s, StatusCode::OK);
        let events = v["events"].as_array().unwrap();
        assert_eq!(events.len(), EVENTS);
        assert_eq!(
            (v["more"].clone(), v["next_before"].clone()),
            (false.into(), serde_json::Value::Null)
        );
        for e in events {
            let (task, size) = &sizes[e["id"].as_str().unwrap()];
            assert_eq!(e["task_id"], task.as_str(), "{e}");
            assert_eq!(e["size"], *size, "{e}");
            assert_eq!(e["route"], "t", "{e}");
            assert_eq!(e["status"], "pending", "{e}");
            assert_eq!(e["source"], "127.0.0.1", "{e}");
            assert_eq!(
                e["subscribers"],
                serde_json::json!([{"name": "p", "state": "pending"}]),
                "{e}"
            );
        }
    }
    let after = bin.peak_rss_kib();
    eprintln!(
        "{EVENTS} events of {} KiB: VmHWM {stored} KiB storing them; restarted: {started} KiB, \
         {before} KiB once each was read, {after} KiB at most listing them 3 times",
        PAD / 1024
    );
    assert!(
        after <= before + 64 * 1024,
        "listing {EVENTS} events of 1 MiB raised the daemon's peak RSS from {before} to {after} KiB"
    );
}
