//! The admin API under bad input and racing requests: every malformed or
//! out-of-range parameter (`limit`, `before`, `status`, a repeated key, an
//! id that is no ULID or does not decode) gets a `400` that says what is
//! wrong (a body past 1 MiB `413`), without the token and without stopping the daemon; many replays of
//! one dead letter at once, alongside replays of all dead letters, send it
//! once per replay that says it queued it, never more.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::StatusCode;
use serde_json::Value;

const TOKEN: &str = "adm-bad-input-token-5d2c";

async fn call(addr: std::net::SocketAddr, method: &str, path: &str) -> (StatusCode, Value, String) {
    let auth = format!("Bearer {TOKEN}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let (s, _, b) = request(addr, None, method, path, &headers, Bytes::new()).await;
    let text = String::from_utf8_lossy(&b).into_owned();
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null), text)
}

/// POST to `path` with the token, declaring a 2 MiB body and sending none
/// of it: the relay's whole answer.
async fn declare_big_body(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        2 << 20
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "{path}: no answer nor close in 10 s: {:?}",
        String::from_utf8_lossy(&got)
    );
    String::from_utf8_lossy(&got).into_owned()
}

/// A relay with the admin token, its subscriber `s` answering `410` (every
/// event a dead letter at once).
async fn relay(dir: &std::path::Path) -> (Sub, hookrelay::Handle) {
    let sub = Sub::always(Behaviour::Status(410)).await;
    let cfg = TestConfig::new(dir)
        .admin_token(TOKEN)
        .subscriber(Subscriber::new("s", sub.url()));
    (sub, start(&cfg).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_parameters_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_sub, h) = relay(dir.path()).await;
    let id = accepted(h.ingest_addrs[0], &runway("bad-params")).await;
    let a = h.admin_addr;
    for (path, needle) in [
        ("/api/events?limit=0", "invalid limit"),
        ("/api/events?limit=-1", "invalid limit"),
        ("/api/events?limit=10001", "invalid limit"),
        ("/api/events?limit=99999999999999999999999999", "invalid limit"),
        ("/api/events?limit=1e3", "invalid limit"),
        ("/api/events?limit=%FF", "invalid limit"),
        ("/api/events?before=nope", "invalid event id"),
        ("/api/events?before=evt_8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "invalid event id"),
        ("/api/events?before=%FF%FE", "invalid event id"),
        ("/api/events?status=lost", "invalid status"),
        ("/api/events?limit=5&limit=10000", "\"limit\" is given more than once"),
        ("/api/events?route=t&route=other", "\"route\" is given more than once"),
        (
            "/api/events?status=dead&status=pending",
            "\"status\" is given more than once",
        ),
        (
            "/api/dead-letters?subscriber=s&subscriber=t",
            "\"subscriber\" is given more than once",
        ),
        ("/api/tasks?state=open&state=done", "\"state\" is given more than once"),
        ("/api/dead-letters?limit=0", "invalid limit"),
        ("/api/media?limit=-5", "invalid limit"),
        ("/api/tasks?limit=abc", "invalid limit"),
        ("/api/events/not-an-id", "invalid event id"),
        ("/api/events/%FF", "not percent-encoded UTF-8"),
        ("/api/events?Limit=5", "unknown parameter"),
    ] {
        let (s, v, text) = call(a, "GET", path).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {text}");
        let e = v["error"].as_str().unwrap_or_else(|| panic!("{path}: {text}"));
        assert!(e.contains(needle), "{path}: {e}");
        assert!(!text.contains(TOKEN), "{path}: {text}");
    }
    for path in [
        "/api/events/nope/replay",
        "/api/events/evt_8ZZZZZZZZZZZZZZZZZZZZZZZZZ/replay",
        "/api/events/%C3%28/replay",
    ] {
        let (s, _, text) = call(a, "POST", path).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {text}");
    }
    // A `before` past either end is no error: the page before it.
    let (s, v, _) = call(a, "GET", "/api/events?before=evt_00000000000000000000000000").await;
    assert_eq!(
        (s, v["events"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0)),
        "{v}"
    );
    let (s, v, _) = call(
        a,
        "GET",
        "/api/events?before=evt_7ZZZZZZZZZZZZZZZZZZZZZZZZZ&limit=10000",
    )
    .await;
    assert_eq!(
        (s, v["events"][0]["id"].as_str()),
        (StatusCode::OK, Some(id.as_str())),
        "{v}"
    );
    // A replay of an id that is no event: 404 saying so.
    let (s, v, _) = call(a, "POST", "/api/events/evt_01ARZ3NDEKTSV4RRFFQ69G5FAV/replay").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    // A body past the 1 MiB the API reads: 413, not a malformed request.
    // Answered before the body is read: to a client that waits, and (the
    // close lingers while the rest comes) to one that writes it whole.
    for path in ["/api/tasks", "/api/routes/t/submit?endpoint=/x"] {
        let text = declare_big_body(a, path).await;
        assert!(text.starts_with("HTTP/1.1 413"), "{path}: {text}");
        assert!(text.contains("larger than 1 MiB"), "{path}: {text}");
        // And a client that writes its body whole sees the answer too.
        let auth = format!("Bearer {TOKEN}");
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        let big = Bytes::from(vec![b' '; 2 << 20]);
        let (s, _, b) = request(a, None, "POST", path, &headers, big).await;
        assert_eq!(
            s,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{path}: {}",
            String::from_utf8_lossy(&b)
        );
    }
    // The daemon still answers.
    let (s, _, _) = call(a, "GET", "/api/status").await;
    assert_eq!(s, StatusCode::OK);
    h.shutdown().await;
}

/// Ten replays of one dead letter and two replays of every dead letter, all
/// at once (twelve connections: one client may hold 16), three rounds: each answer
/// that says it queued the delivery (`queued`, `requeued`) is one attempt
/// more, and no answer that does not say so is one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_replays_of_one_dead_letter_send_it_once_per_queued_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (sub, h) = relay(dir.path()).await;
    let a = h.admin_addr;
    let id = accepted(h.ingest_addrs[0], &runway("racing-replays")).await;
    let dead = |v: &Value| v["subscribers"][0]["state"] == "dead";
    let wait_dead = || async {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, v, _) = call(a, "GET", &format!("/api/events/{id}")).await;
            if dead(&v) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "not dead: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    wait_dead().await;
    let mut expected = 1;
    for _round in 0..3 {
        let mut tasks = Vec::new();
        for i in 0..12 {
            let path = match i {
                0 | 6 => "/api/dead-letters/replay".to_string(),
                _ => format!("/api/events/{id}/replay"),
            };
            tasks.push(tokio::spawn(async move { call(a, "POST", &path).await }));
        }
        for t in tasks {
            let (s, v, text) = t.await.unwrap();
            assert_eq!(s, StatusCode::OK, "{text}");
            expected += match v.get("requeued") {
                Some(n) => n.as_u64().unwrap() as usize,
                None => v["queued"].as_array().unwrap().len(),
            };
        }
        sub.wait_for(Duration::from_secs(10), "the replayed attempts", |r| {
            r.len() >= expected
        })
        .await;
        wait_dead().await;
    }
    // Settled (dead again): nothing more is on its way.
    let (_, v, _) = call(a, "GET", &format!("/api/events/{id}")).await;
    assert_eq!(sub.count(), expected, "{v}");
    assert_eq!(
        v["subscribers"][0]["attempts_total"].as_u64(),
        Some(expected as u64),
        "{v}"
    );
    assert!(expected > 1, "no replay queued anything");
    h.shutdown().await;
}
