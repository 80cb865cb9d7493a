//! The pull API on the public listener: long-polls answered by the store's
//! work signal, leases (one holder at a time, expiry is a failed attempt that
//! re-offers the same id),
//! acknowledgements and hand-backs through the retry schedule to dead
//! letters, filters, refusals that tell nothing about which names exist, bad
//! input, and how operators see pull subscribers.

use crate::common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use http::StatusCode;
use serde_json::Value;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub(crate) const TOKEN: &str = "laptop-pull-token";

/// Pull subscriber `laptop`: fetched with `token`, leases of `lease`, signed with SECRET.
fn laptop(token: &str, lease: Duration) -> Subscriber {
    Subscriber::pull("laptop", token).lease(lease).secret(SECRET)
}

/// A push subscriber `push` at `push_url`, `laptop` as given, and pull
/// subscriber `other` ("other-token", leases of `lease`).
fn relay_config(dir: &Path, push_url: &str, laptop: Subscriber, lease: Duration) -> TestConfig {
    TestConfig::new(dir)
        .subscriber(Subscriber::new("push", push_url))
        .subscriber(laptop)
        .subscriber(Subscriber::pull("other", "other-token").lease(lease).secret(SECRET))
}

/// A daemon with a push subscriber `push` (answering 200) and pull
/// subscribers `laptop` (TOKEN) and `other` ("other-token"), lease `lease`.
pub(crate) async fn relay(lease: Duration) -> (tempfile::TempDir, Sub, hookrelay::Handle) {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(&relay_config(dir.path(), &sub.url(), laptop(TOKEN, lease), lease)).await;
    (dir, sub, h)
}

/// The laptop subscriber's delivery in the event's view.
pub(crate) async fn laptop_delivery(h: &hookrelay::Handle, id: &str) -> Value {
    let (_, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    let d = ev["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "laptop");
    d.cloned().unwrap_or_else(|| panic!("no laptop delivery: {ev}"))
}

pub(crate) fn ids(v: &Value) -> Vec<String> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) async fn send(h: &hookrelay::Handle, task: &str) -> String {
    accepted(h.ingest_addrs[0], &runway(task)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_is_answered_by_new_work_with_signed_original_bytes() {
    let (_dir, _sub, h) = relay(secs(30)).await;
    let addr = h.ingest_addrs[0];
    let waiting = tokio::spawn(async move {
        pull_call(addr, "GET", "/pull/laptop?wait=20s&max=5", Some(TOKEN), Some("f1"), "").await
    });
    let subs = admin_until(h.admin_addr, "/api/subscribers", secs(10), |v| {
        row(&v["subscribers"], "name", "laptop")["waiting_pulls"] == 1
    })
    .await;
    assert_eq!(
        row(&subs["subscribers"], "name", "laptop")["waiting_pulls"],
        1,
        "{subs}"
    );
    assert!(!waiting.is_finished(), "the long-poll waits for work");
    let body = runway("live");
    let (s, v) = callback(addr, &body).await;
    let sent = Instant::now();
    assert_eq!(s, StatusCode::OK);
    let (s, headers, got) = waiting.await.unwrap();
    let took = sent.elapsed();
    assert_eq!(s, StatusCode::OK, "{got}");
    assert!(took < Duration::from_secs(1), "hand-off took {took:?}");
    assert_eq!(headers["cache-control"], "no-store");
    let m = &got["messages"][0];
    assert_eq!(got["messages"].as_array().unwrap().len(), 1);
    assert_eq!(m["id"], v["id"]);
    assert_eq!((m["route"].as_str(), m["attempt"].as_u64()), (Some("t"), Some(1)));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(m["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, body.as_bytes(), "the original bytes");
    let hd = &m["headers"];
    assert_eq!(hd["webhook-id"], v["id"]);
    assert_eq!(hd["content-type"], "application/json");
    assert_eq!(hd["hookrelay-attempt"], "1");
    let ts: i64 = hd["webhook-timestamp"].as_str().unwrap().parse().unwrap();
    let now = hookrelay::clock::now_secs();
    assert!((now - ts).abs() <= 2, "signed at hand-out time");
    let key = hookrelay::config::decode_whsec(SECRET).unwrap();
    let expected = hookrelay::auth::standard_webhooks_signature(&[key], v["id"].as_str().unwrap(), ts, &bytes);
    assert_eq!(hd["webhook-signature"], expected.as_str());
    // Nothing more: wait=0 answers at once with an empty list.
    let started = Instant::now();
    let (s, _, empty) = pull_call(addr, "GET", "/pull/laptop?wait=0", Some(TOKEN), Some("f1"), "").await;
    assert_eq!((s, ids(&empty).len()), (StatusCode::OK, 0));
    assert!(started.elapsed() < Duration::from_secs(1));
    // Acknowledged: delivered in the event view, like a push delivery.
    let ack = format!(r#"{{"ids": ["{}"]}}"#, v["id"].as_str().unwrap());
    let (s, _, a) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f1"), &ack).await;
    assert_eq!((s, a["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{a}");
    let ev = event_view(h.admin_addr, v["id"].as_str().unwrap()).await;
    let laptop = row(&ev["subscribers"], "name", "laptop");
    assert_eq!(laptop["state"], "delivered", "{ev}");
    assert_eq!(laptop["attempts"][0]["attempt"], 1);
    assert_eq!(laptop["last_error"], Value::Null);
    h.shutdown().await;
}

/// A pull subscriber's `filter` works as a push subscriber's: only matching
/// callbacks are handed out; the others are recorded as `skipped` and never
/// wait in its queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_subscribers_filter_hands_out_only_matching_callbacks() {
    filter_hands_out_only_matching_callbacks(|c| c).await;
}

/// The test above on the store `store` sets (the embedded one here, cluster
/// mode in `nats_pull`): `laptop` with `filter = { "/code" = 200 }`.
pub(crate) async fn filter_hands_out_only_matching_callbacks(store: impl FnOnce(TestConfig) -> TestConfig) {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let only_ok = laptop(TOKEN, secs(30)).filter("/code", 200.into());
    let h = start(&store(relay_config(dir.path(), &sub.url(), only_ok, secs(30)))).await;
    let addr = h.ingest_addrs[0];
    let (_, failed) = callback(addr, r#"{"code":500,"data":{"task_id":"pf-1"}}"#).await;
    let (_, ok) = callback(addr, r#"{"code":200,"data":{"task_id":"pf-2"}}"#).await;
    let (failed, ok) = (failed["id"].as_str().unwrap(), ok["id"].as_str().unwrap());
    // Both reach the unfiltered push subscriber: both were stored.
    sub.wait_for(secs(5), "both to push", |r| r.len() == 2).await;
    let (s, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=2s&max=10", Some(TOKEN), Some("f1"), "").await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(ids(&got), vec![ok.to_string()], "{got}");
    let ack = format!(r#"{{"ids": ["{ok}"]}}"#);
    let (s, _, a) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f1"), &ack).await;
    assert_eq!((s, a["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{a}");
    let ev = admin_until(h.admin_addr, &format!("/api/events/{failed}"), secs(5), |v| {
        row(&v["subscribers"], "name", "laptop")["state"] == "skipped"
    })
    .await;
    assert_eq!(row(&ev["subscribers"], "name", "laptop")["state"], "skipped", "{ev}");
    let subs = admin_until(h.admin_addr, "/api/subscribers", secs(5), |v| {
        row(&v["subscribers"], "name", "laptop")["queue_depth"] == 0
    })
    .await;
    assert_eq!(row(&subs["subscribers"], "name", "laptop")["queue_depth"], 0, "{subs}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_keep_pullers_apart_and_expire_into_the_same_id() {
    let (_dir, _sub, h) = relay(secs(1)).await;
    let addr = h.ingest_addrs[0];
    let mut sent = Vec::new();
    for i in 0..6 {
        sent.push(send(&h, &format!("lease-{i}")).await);
    }
    let (_, _, a) = pull_call(addr, "GET", "/pull/laptop?wait=0&max=4", Some(TOKEN), Some("a"), "").await;
    let (_, _, b) = pull_call(addr, "GET", "/pull/laptop?wait=0&max=4", Some(TOKEN), Some("b"), "").await;
    let (a, b) = (ids(&a), ids(&b));
    assert_eq!((a.len(), b.len()), (4, 2), "b gets only what a does not hold");
    let all: HashSet<_> = a.iter().chain(&b).cloned().collect();
    assert_eq!(all, sent.iter().cloned().collect::<HashSet<_>>());
    // b cannot acknowledge a's lease; nothing changes.
    let theirs = format!(r#"{{"ids": ["{}", "{}"]}}"#, b[0], a[0]);
    let (s, _, v) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("b"), &theirs).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["not_leased"], serde_json::json!([a[0]]));
    let (_, subs) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    let row = row(&subs["subscribers"], "name", "laptop");
    assert_eq!(
        (row["kind"].as_str(), row["leased"].as_u64()),
        (Some("pull"), Some(6)),
        "{row}"
    );
    assert_eq!(row["last_pull_from"], "127.0.0.1");
    // No answer within the lease: offered again, same ids, next attempt.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The two holders' leases expire apart (a's first): an answer comes as
    // soon as there is work, so gather until both are back.
    let mut again_ids = HashSet::new();
    let until = tokio::time::Instant::now() + secs(5);
    while again_ids != all && tokio::time::Instant::now() < until {
        let (_, _, again) = pull_call(addr, "GET", "/pull/laptop?wait=5s&max=100", Some(TOKEN), Some("c"), "").await;
        assert!(
            again["messages"].as_array().unwrap().iter().all(|m| m["attempt"] == 2),
            "{again}"
        );
        again_ids.extend(ids(&again));
    }
    assert_eq!(again_ids, all, "every expired message offered again");
    // The first holder's late acknowledgement is refused: the lease is c's now.
    let late = format!(r#"{{"ids": ["{}"]}}"#, a[1]);
    let (s, _, _) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("a"), &late).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (_, m) = admin(h.admin_addr, "GET", "/metrics").await;
    let m = m.as_str().unwrap();
    assert!(m.contains("hookrelay_pull_leased{subscriber=\"laptop\"} 6"), "{m}");
    assert!(
        m.contains("hookrelay_deliveries_total{subscriber=\"laptop\",outcome=\"expired\"} 6"),
        "{m}"
    );
    assert!(
        m.contains("hookrelay_pull_last_seconds{subscriber=\"laptop\"} 0"),
        "{m}"
    );
    assert!(m.contains("hookrelay_pull_last_seconds{subscriber=\"other\"}"), "{m}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_back_messages_follow_the_retry_schedule_to_a_dead_letter() {
    // The common config's schedule: 100ms, 200ms, then dead letter.
    let (_dir, _sub, h) = relay(secs(30)).await;
    let addr = h.ingest_addrs[0];
    let id = send(&h, "hand-back").await;
    // The first hand-back says nothing of the local service (a client that
    // does not tell), the others its status.
    let retries = [
        format!(r#"{{"retry": ["{id}"]}}"#),
        format!(r#"{{"retry": ["{id}"], "local": {{"{id}": {{"status": 500, "error": "boom"}}}}}}"#),
        format!(r#"{{"retry": ["{id}"], "local": {{"{id}": {{"status": 503}}}}}}"#),
    ];
    for attempt in 1..=3u64 {
        let retry = &retries[attempt as usize - 1];
        let (_, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s", Some(TOKEN), None, "").await;
        assert_eq!(ids(&got), vec![id.clone()], "attempt {attempt}: {got}");
        assert_eq!(got["messages"][0]["attempt"].as_u64(), Some(attempt));
        let (s, _, a) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), None, retry).await;
        assert_eq!(s, StatusCode::OK, "{a}");
        let want = if attempt < 3 { (1, 0) } else { (0, 1) };
        assert_eq!(
            (a["retried"].as_u64(), a["dead"].as_u64()),
            (Some(want.0), Some(want.1)),
            "{a}"
        );
    }
    let (_, dead) = admin(h.admin_addr, "GET", "/api/dead-letters?subscriber=laptop").await;
    assert_eq!(dead["dead_letters"][0]["event"], id.as_str(), "{dead}");
    assert_eq!(dead["dead_letters"][0]["attempts"], 3);
    // What the local service answered (the last hand-back said 503) is in
    // the history: the attempt's status and the error.
    let d = laptop_delivery(&h, &id).await;
    let ev = &d;
    let tries = d["attempts"].as_array().unwrap();
    assert_eq!(
        tries.iter().map(|t| t["status"].as_u64()).collect::<Vec<_>>(),
        vec![None, Some(500), Some(503)],
        "{ev}"
    );
    assert_eq!(
        d["last_error"],
        "handed back by the pull client: the local service answered HTTP 503; retry schedule exhausted",
        "{ev}"
    );
    let (_, _, none) = pull_call(addr, "GET", "/pull/laptop?wait=300ms", Some(TOKEN), None, "").await;
    assert!(ids(&none).is_empty(), "a dead letter is not offered: {none}");
    // Replayed like any dead letter: offered again.
    let (s, _) = admin(h.admin_addr, "POST", "/api/dead-letters/replay?subscriber=laptop").await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, back) = pull_call(addr, "GET", "/pull/laptop?wait=5s", Some(TOKEN), None, "").await;
    assert_eq!(ids(&back), vec![id]);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_do_not_tell_which_subscribers_exist() {
    let (_dir, _sub, h) = relay(secs(30)).await;
    let addr = h.ingest_addrs[0];
    let id = send(&h, "secret-stuff").await;
    let cases = [
        ("/pull/laptop", Some("wrong-token")),
        ("/pull/laptop", None),
        ("/pull/laptop", Some("other-token")), // another subscriber's token
        ("/pull/nosuch", Some(TOKEN)),
        ("/pull/nosuch", None),
        ("/pull/push", Some(TOKEN)), // a push subscriber
        ("/pull/laptop/ack", Some("other-token")),
    ];
    let mut answers = HashSet::new();
    for (path, token) in cases {
        let method = if path.ends_with("/ack") { "POST" } else { "GET" };
        let body = format!(r#"{{"ids": ["{id}"]}}"#);
        let (s, headers, v) = pull_call(addr, method, &format!("{path}?wait=0"), token, None, &body).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path} {token:?}: {v}");
        assert_eq!(headers["www-authenticate"], "Bearer");
        answers.insert(v.to_string());
    }
    assert_eq!(answers.len(), 1, "one answer for every refusal: {answers:?}");
    // The token in the query string is not a way in (it would end up in logs).
    let (s, _, _) = pull_call(addr, "GET", &format!("/pull/laptop?token={TOKEN}"), None, None, "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Nothing was handed out by any of that.
    let (_, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=0", Some(TOKEN), None, "").await;
    assert_eq!(ids(&got), vec![id]);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_clearly_and_changes_nothing() {
    let (_dir, _sub, h) = relay(secs(30)).await;
    let addr = h.ingest_addrs[0];
    let id = send(&h, "bad-input").await;
    let (_, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=0", Some(TOKEN), Some("f"), "").await;
    assert_eq!(ids(&got), vec![id.clone()]);
    let get = |q: &'static str| async move { pull_call(addr, "GET", q, Some(TOKEN), Some("f"), "").await };
    for (q, needle) in [
        ("/pull/laptop?wait=forever", "invalid wait"),
        ("/pull/laptop?wait=10m", "too long"),
        ("/pull/laptop?max=0", "invalid max"),
        ("/pull/laptop?max=1000", "invalid max"),
        ("/pull/laptop?limit=5", "unknown parameter"),
    ] {
        let (s, _, v) = get(q).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{q}: {v}");
    }
    let never = "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let ack =
        |body: String| async move { pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f"), &body).await };
    for (body, status, needle) in [
        ("not json".to_string(), 400, "invalid acknowledgement"),
        (r#"{"ids": [1]}"#.into(), 400, "invalid acknowledgement"),
        (r#"{"acks": []}"#.into(), 400, "unknown field"),
        ("{}".into(), 400, "nothing to acknowledge"),
        (r#"{"ids": ["evt_nope"]}"#.into(), 400, "invalid id"),
        (format!(r#"{{"ids": ["{id}"], "retry": ["{id}"]}}"#), 400, "twice"),
        (format!(r#"{{"ids": ["{id}", "{never}"]}}"#), 409, "not leased"),
        // `local` is an object of answers (its entries are advisory: pull_attempts.rs).
        (
            format!(r#"{{"retry": ["{id}"], "local": []}}"#),
            400,
            "invalid acknowledgement",
        ),
        (format!(r#"{{"ids": ["{}"]}}"#, "x".repeat(70_000)), 413, "larger than"),
    ] {
        let (s, _, v) = ack(body.clone()).await;
        assert_eq!(s.as_u16(), status, "{body:.80}: {v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{body:.80}: {v}");
    }
    for (method, path, allow) in [("POST", "/pull/laptop", "GET"), ("GET", "/pull/laptop/ack", "POST")] {
        let (s, headers, _) = pull_call(addr, method, path, Some(TOKEN), None, "").await;
        assert_eq!(
            (s, headers["allow"].to_str().unwrap()),
            (StatusCode::METHOD_NOT_ALLOWED, allow)
        );
    }
    for path in ["/pull/", "/pull/laptop/nack", "/pull/laptop/ack/x"] {
        let (s, _, _) = pull_call(addr, "GET", path, Some(TOKEN), None, "").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let (s, _, _) = pull_call(addr, "GET", "/pull/laptop", Some(TOKEN), Some("bad id with spaces"), "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // After all that, the lease is intact and f acknowledges it.
    let (s, _, v) = ack(format!(r#"{{"ids": ["{id}"]}}"#)).await;
    assert_eq!((s, v["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    h.shutdown().await;
}

/// A refused acknowledgement is logged with its reason escaped: serde names
/// an unknown key raw, and a JSON key may hold `\n`, so the holder of the
/// pull token could otherwise write a line of its own into the text log.
/// From review 18, finding 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_acknowledgement_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let bin = Bin::start(
        &relay_config(dir.path(), DOWN, laptop(TOKEN, secs(30)), secs(30)).write(),
        &[],
    );
    const FORGED: &str = "2026-01-01T00:00:00.000000Z  WARN hookrelay::forged: admin token accepted";
    let body = serde_json::json!({ format!("x\n{FORGED}"): 1 }).to_string();
    let (s, _, v) = pull_call(bin.addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f"), &body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    log_until(|| bin.log_text(), "pull request refused", secs(10)).await;
    let log = bin.log_text();
    assert!(
        !log.lines().any(|l| l.starts_with(FORGED)),
        "the refused key wrote a line of its own:\n{log}"
    );
    let refusal = log.lines().find(|l| l.contains("pull request refused")).unwrap();
    assert!(
        refusal.contains("unknown field") && refusal.contains(r"x\n"),
        "{refusal}"
    );
}

/// Refused pull requests are logged as refused callbacks are: a stranger
/// sending many with a wrong token, or to a name that is no pull subscriber
/// (a token where the name goes), gets one line at info for each kind, the
/// rest at debug, not one line per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_pull_requests_do_not_flood_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let bin = Bin::start(
        &relay_config(dir.path(), DOWN, laptop(TOKEN, secs(30)), secs(30)).write(),
        &[],
    );
    for _ in 0..25 {
        for path in ["/pull/laptop?wait=0s", "/pull/0123456789abcdef0123"] {
            let (s, _, _) = pull_call(bin.addr, "GET", path, Some("not-the-token-0123456789"), None, "").await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        }
    }
    log_until(|| bin.log_text(), "/pull/laptop", secs(10)).await;
    log_until(|| bin.log_text(), "/pull/REDACTED", secs(10)).await;
    let log = bin.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("pull request refused")).collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(!log.contains("0123456789abcdef0123"), "{log}");
    // Each says why, as ingest's do (the answer is `401` either way).
    let reason = |path: &str| {
        lines
            .iter()
            .find(|l| l.contains(path))
            .map(|l| l.split("reason=").nth(1))
    };
    assert_eq!(reason("path=/pull/laptop"), Some(Some("wrong token")), "{log}");
    assert_eq!(
        reason("path=/pull/REDACTED"),
        Some(Some("no such pull subscriber")),
        "{log}"
    );
}

/// A request that reaches the relay after it let go of its pull lanes (on a
/// connection opened before the stop, as `hookrelay forward` keeps them) is
/// told the relay is stopping (503, try again), not that its token is wrong
/// (401: the forwarder exits on that). Its headers end only after the stop
/// began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_arriving_while_the_relay_stops_is_told_to_come_back() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, _sub, h) = relay(secs(30)).await;
    let mut conn = tokio::net::TcpStream::connect(h.ingest_addrs[0]).await.unwrap();
    conn.write_all(
        format!("GET /pull/laptop?wait=0s HTTP/1.1\r\nhost: relay\r\nauthorization: Bearer {TOKEN}\r\n").as_bytes(),
    )
    .await
    .unwrap();
    // The stop must find the connection reading its request's head: one it
    // has not accepted or read yet is closed (reset), not answered.
    read_by_server(&conn).await;
    let app = h.app.clone();
    let stopping = tokio::spawn(h.shutdown());
    // The head ends only once the stop has begun (the stopping task runs when
    // the machine lets it: wait for it to say so), and a little after.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.ready() {
        assert!(Instant::now() < deadline, "the stop did not begin within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.write_all(b"\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(secs(10), conn.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    stopping.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_waiting_long_polls_at_once() {
    let (_dir, _sub, h) = relay(secs(30)).await;
    let addr = h.ingest_addrs[0];
    let waiting =
        tokio::spawn(async move { pull_call(addr, "GET", "/pull/laptop?wait=50s", Some(TOKEN), None, "").await });
    let subs = admin_until(h.admin_addr, "/api/subscribers", secs(10), |v| {
        row(&v["subscribers"], "name", "laptop")["waiting_pulls"] == 1
    })
    .await;
    let row = row(&subs["subscribers"], "name", "laptop");
    assert_eq!(
        (row["state"].as_str(), row["waiting_pulls"].as_u64()),
        (Some("pulling"), Some(1)),
        "{row}"
    );
    // Timed to the long-poll's answer, not to the end of the stop (which
    // also closes the store, slow on a busy disk).
    let started = Instant::now();
    let stopping = tokio::spawn(h.shutdown());
    let (s, headers, _) = waiting.await.unwrap();
    let answered = started.elapsed();
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert!(answered < Duration::from_secs(3), "{answered:?}");
    stopping.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rotates_the_token_and_can_turn_a_pull_subscriber_into_a_push_one() {
    let (dir, sub, h) = relay(secs(30)).await;
    let addr = h.ingest_addrs[0];
    let id = send(&h, "reloaded").await;
    let rotated = relay_config(dir.path(), &sub.url(), laptop("rotated-token", secs(30)), secs(30));
    rotated.write();
    h.reload().await.unwrap();
    let (s, _, _) = pull_call(addr, "GET", "/pull/laptop?wait=0", Some(TOKEN), None, "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the old token no longer opens it");
    let (s, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=0", Some("rotated-token"), None, "").await;
    assert_eq!((s, ids(&got)), (StatusCode::OK, vec![id.clone()]));
    // Now pushed. The message leased above stays with its forwarder until
    // its 30 s lease is over (tests/pull_to_push.rs): the push lane sends
    // fresh work at once but not that one, and the forwarder's
    // acknowledgement, under the token the lease was issued with, is applied.
    let pushed = relay_config(dir.path(), &sub.url(), Subscriber::new("laptop", sub.url()), secs(30));
    assert_ne!(pushed.render(), rotated.render());
    pushed.write();
    h.reload().await.unwrap();
    // `push` shares the endpoint: every event reaches it once.
    let fresh = send(&h, "after-the-switch").await;
    sub.wait_for(
        Duration::from_secs(10),
        "the callback after the switch, for push and laptop",
        |r| r.iter().filter(|x| x.header("webhook-id") == fresh).count() == 2,
    )
    .await;
    let leased = sub.all().iter().filter(|x| x.header("webhook-id") == id).count();
    assert_eq!(
        leased, 1,
        "the leased message is its forwarder's until its lease is over (sent to push only)"
    );
    let ack = format!(r#"{{"ids": ["{id}"]}}"#);
    let (s, _, v) = pull_call(addr, "POST", "/pull/laptop/ack", Some("rotated-token"), None, &ack).await;
    assert_eq!((s, v["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    let (s, _, _) = pull_call(addr, "GET", "/pull/laptop?wait=0", Some("rotated-token"), None, "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "no pull API for a push subscriber");
    let (_, subs) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    let row = row(&subs["subscribers"], "name", "laptop");
    assert_eq!(row["kind"], "push", "{row}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_cut_short_by_a_reload_that_removes_its_subscriber_is_told_so() {
    let (dir, sub, h) = relay(secs(30)).await;
    let addr = h.ingest_addrs[0];
    let waiting = tokio::spawn(pull_call(addr, "GET", "/pull/laptop?wait=20s", Some(TOKEN), None, ""));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let without = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("push", sub.url()))
        .subscriber(Subscriber::pull("other", "other-token").lease(secs(30)).secret(SECRET));
    without.write();
    h.reload().await.unwrap();
    let (s, _, v) = tokio::time::timeout(secs(5), waiting).await.unwrap().unwrap();
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    let error = v["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("removed or changed by a configuration reload") && !error.contains("shutting down"),
        "{v}"
    );
    let (s, _, _) = pull_call(addr, "GET", "/pull/laptop?wait=0", Some(TOKEN), None, "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "gone");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_outlasts_the_read_timeout_and_ends_empty_after_wait() {
    // The common config's read_timeout is 2s: it bounds reading a request, not waiting for work.
    let (_dir, _sub, h) = relay(secs(30)).await;
    let started = Instant::now();
    let (s, _, v) = pull_call(h.ingest_addrs[0], "GET", "/pull/laptop?wait=3s", Some(TOKEN), None, "").await;
    let took = started.elapsed();
    assert_eq!((s, ids(&v).len()), (StatusCode::OK, 0), "{v}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(5),
        "{took:?}"
    );
    h.shutdown().await;
}

/// A reload that rotates a pull subscriber's token while its forwarder
/// leases a message: the old token opens nothing any more, except the
/// acknowledgement of the leases handed out under it (the forwarder still
/// has it until it is restarted with the new one); once those are over it
/// is refused like any wrong token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_still_acknowledges_the_leases_handed_out_under_it() {
    let (dir, sub, h) = relay(secs(30)).await;
    let addr = h.ingest_addrs[0];
    let first = send(&h, "leased-before").await;
    let (s, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s&max=1", Some(TOKEN), Some("old"), "").await;
    assert_eq!((s, ids(&got)), (StatusCode::OK, vec![first.clone()]));
    relay_config(dir.path(), &sub.url(), laptop("rotated-token", secs(30)), secs(30)).write();
    h.reload().await.unwrap();
    let second = send(&h, "leased-after").await;
    let (s, _, got) = pull_call(
        addr,
        "GET",
        "/pull/laptop?wait=5s&max=1",
        Some("rotated-token"),
        Some("old"),
        "",
    )
    .await;
    assert_eq!((s, ids(&got)), (StatusCode::OK, vec![second.clone()]));
    let (s, _, _) = pull_call(addr, "GET", "/pull/laptop?wait=0", Some(TOKEN), Some("old"), "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the old token pulls nothing");
    // Not a lease handed out under the old token: refused, nothing changes.
    let body = format!(r#"{{"ids": ["{second}"]}}"#);
    let (s, _, v) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("old"), &body).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let body = format!(r#"{{"ids": ["{first}"]}}"#);
    let (s, _, v) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("old"), &body).await;
    assert_eq!((s, v["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    assert_eq!(laptop_delivery(&h, &first).await["state"], "delivered");
    // No lease of the old token is left: it is a wrong token now.
    let body = format!(r#"{{"ids": ["{second}"]}}"#);
    let (s, _, _) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("old"), &body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, v) = pull_call(
        addr,
        "POST",
        "/pull/laptop/ack",
        Some("rotated-token"),
        Some("old"),
        &body,
    )
    .await;
    assert_eq!((s, v["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    h.shutdown().await;
}

/// A pull waiting when a reload rotates the token was presented with the
/// old token: what it is handed during its wait is leased under that token,
/// so its forwarder, which only knows the old token, acknowledges it (review
/// 20, finding 2: it was leased under the new token's generation and the old
/// token was forgotten at once, so the acknowledgement got 401, the
/// forwarder exited and the delivered message was sent again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_waiting_across_a_token_rotation_can_acknowledge_what_it_got() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |token: &str| TestConfig::new(dir.path()).subscriber(Subscriber::pull("laptop", token).lease(secs(30)));
    let h = start(&cfg("old-token")).await;
    let addr = h.ingest_addrs[0];
    let waiting = tokio::spawn(pull_call(
        addr,
        "GET",
        "/pull/laptop?wait=10s&max=1",
        Some("old-token"),
        Some("fwd"),
        "",
    ));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    cfg("new-token").write();
    h.reload().await.unwrap();
    let id = accepted(addr, &runway("during-the-wait")).await;
    let (s, _, got) = tokio::time::timeout(secs(15), waiting).await.unwrap().unwrap();
    assert_eq!(
        (s.as_u16(), got["messages"][0]["id"].as_str()),
        (200, Some(id.as_str())),
        "{got}"
    );
    // The forwarder delivered it and acknowledges with the token it pulled with.
    let body = format!(r#"{{"ids": ["{id}"]}}"#);
    let (s, _, v) = pull_call(addr, "POST", "/pull/laptop/ack", Some("old-token"), Some("fwd"), &body).await;
    h.shutdown().await;
    assert_eq!(
        (s.as_u16(), v["acknowledged"].as_u64()),
        (200, Some(1)),
        "handed out to a pull presented with the old token, yet that token cannot acknowledge it: {v}"
    );
}

/// The token is rotated A → B → A → C while the forwarder leases one
/// message handed out under A the first time (generation 0) and one handed
/// out under A the second time (generation 2). A, replaced, must still
/// acknowledge both (both were leased under it). Review 21: the lease of
/// generation 2 was refused with 409 (A matched only its first kept
/// generation), the forwarder dropped that acknowledgement and the
/// delivered message was offered again when its lease ran out; a token
/// rotated back to takes up its generation again now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rotated_back_and_away_again_acknowledges_all_it_leased() {
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new(dir.path());
    let with = |t: &str| base.clone().subscriber(Subscriber::pull("laptop", t).lease(secs(60)));
    let h = start(&with("token-a")).await;
    let addr = h.ingest_addrs[0];
    let first = accepted(addr, &runway("under-a-first")).await;
    assert_hands_out(addr, "/pull/laptop?wait=5s&max=1", "token-a", "fwd", &first).await;
    with("token-b").write();
    h.reload().await.expect("reload to b");
    with("token-a").write();
    h.reload().await.expect("reload back to a");
    let second = accepted(addr, &runway("under-a-again")).await;
    assert_hands_out(addr, "/pull/laptop?wait=5s&max=1", "token-a", "fwd", &second).await;
    with("token-c").write();
    h.reload().await.expect("reload to c");
    let body = format!(r#"{{"ids": ["{second}"]}}"#);
    let (s, _, v) = pull_call(addr, "POST", "/pull/laptop/ack", Some("token-a"), Some("fwd"), &body).await;
    let body = format!(r#"{{"ids": ["{first}"]}}"#);
    let (s0, _, v0) = pull_call(addr, "POST", "/pull/laptop/ack", Some("token-a"), Some("fwd"), &body).await;
    h.shutdown().await;
    assert_eq!((s0.as_u16(), v0["acknowledged"].as_u64()), (200, Some(1)), "{v0}");
    assert_eq!(
        (s.as_u16(), v["acknowledged"].as_u64()),
        (200, Some(1)),
        "leased under token-a (its second time), acknowledged with token-a after it was replaced: {v}"
    );
}
