//! The pull API under racing requests: many long-polls waiting on one
//! subscriber share what arrives (each message leased to one of them);
//! many acknowledgements of one lease at once apply once (one `200`, the
//! others `409`), and once more after that is `409` too; an acknowledgement
//! body streamed without a length past the limit is `413`, the daemon
//! answering on; an acknowledgement that came while its lease was live
//! applies when the lane, busy meanwhile, gets to it after the deadline.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::pull::{ids, relay, send, TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_pulls_and_acknowledgements_apply_once() {
    let (_dir, _sub, h) = relay(Duration::from_secs(30)).await;
    let addr = h.ingest_addrs[0];
    let mut polls = Vec::new();
    for i in 0..10 {
        polls.push(tokio::spawn(async move {
            let f = format!("f{i}");
            let (s, _, v) = pull_call(addr, "GET", "/pull/laptop?wait=8s&max=1", Some(TOKEN), Some(&f), "").await;
            assert_eq!(s, StatusCode::OK, "{v}");
            (f, ids(&v))
        }));
    }
    let all_waiting = |v: &serde_json::Value| {
        v["subscribers"]
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s["name"] == "laptop" && s["waiting_pulls"] == 10))
    };
    // At most 5 s: the polls (8 s) still wait for the sends below.
    let v = admin_until(h.admin_addr, "/api/subscribers", Duration::from_secs(5), all_waiting).await;
    assert!(all_waiting(&v), "the 10 long-polls are not all waiting: {v}");
    let mut sent = HashSet::new();
    for i in 0..3 {
        sent.insert(send(&h, &format!("race-{i}")).await);
    }
    let mut got = Vec::new();
    for p in polls {
        let (f, ids) = p.await.unwrap();
        got.extend(ids.into_iter().map(|id| (f.clone(), id)));
    }
    let handed: HashSet<_> = got.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(
        (got.len(), &handed),
        (3, &sent),
        "each message to one long-poll: {got:?}"
    );
    // Eight acknowledgements of one lease at once, by its holder: one applies.
    let (holder, id) = got[0].clone();
    let body = format!(r#"{{"ids": ["{id}"]}}"#);
    let mut acks = Vec::new();
    for _ in 0..8 {
        let (holder, body) = (holder.clone(), body.clone());
        acks.push(tokio::spawn(async move {
            pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some(&holder), &body).await
        }));
    }
    let mut statuses = Vec::new();
    for a in acks {
        let (s, _, v) = a.await.unwrap();
        if s == StatusCode::OK {
            assert_eq!(v["acknowledged"], 1, "{v}");
        }
        statuses.push(s.as_u16());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409]);
    let (s, _, _) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some(&holder), &body).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let d = crate::pull::laptop_delivery(&h, &id).await;
    assert_eq!(
        (d["state"].as_str(), d["attempts_total"].as_u64()),
        (Some("delivered"), Some(1)),
        "{d}"
    );
    // Another holder's lease, acknowledged by someone else: 409, the lease kept.
    let (other, theirs) = got[1].clone();
    let body = format!(r#"{{"ids": ["{theirs}"]}}"#);
    let (s, _, v) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("intruder"), &body).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, _, v) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some(&other), &body).await;
    assert_eq!((s, v["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    h.shutdown().await;
}

/// A chunked acknowledgement body (no Content-Length) longer than the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_chunked_acknowledgement_is_cut_with_413() {
    let (_dir, _sub, h) = relay(Duration::from_secs(30)).await;
    let addr = h.ingest_addrs[0];
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /pull/laptop/ack HTTP/1.1\r\nhost: relay\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: \
         application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 8192, " ".repeat(8192));
    let writer = tokio::spawn(async move {
        let (mut r, mut w) = c.into_split();
        let reader = tokio::spawn(async move {
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut answer)).await;
            answer
        });
        for _ in 0..1024 {
            if w.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        reader.await.unwrap()
    });
    let answer = String::from_utf8_lossy(&writer.await.unwrap()).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains(TOKEN), "{answer}");
    // The daemon answers on.
    let (s, _, v) = pull_call(addr, "GET", "/pull/laptop?wait=0", Some(TOKEN), Some("f"), "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    h.shutdown().await;
}

/// A forwarder releases a message on its last retry step in time (it is
/// stopping), while the lane is busy asking a slow provider about another
/// callback (a `verify = "fetch"` route); the lane gets to the release
/// after the lease's deadline. It applies as a release (offered again, no
/// step used): before, the lease expired first, and the release of an
/// expired lease on the last step made the message a dead letter (an
/// acknowledgement got `409`; since the last step's lapse it is taken as a
/// late one, which a release is not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_queued_behind_a_slow_fill_applies() {
    use common::provider::{FakeOptions, FakeProvider, TaskPlan};
    use common::route::{Signature, Subscriber};
    use hookrelay::provider::Product;

    const PULL: &str = "late-ack-pull-token";
    // Long enough for the steps before the acknowledgement on a loaded
    // machine (at 1 s, 600 ms of stalls made the guard below fail).
    const LEASE: Duration = Duration::from_secs(3);
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let route = common::route::Route::new("runway", "/hooks/runway")
        .allow_anyone()
        .preset("kie-runway")
        .provider(common::route::Provider::new(fake.api_key(), &fake.url()))
        .subscriber(Subscriber::pull("b", PULL).lease(LEASE).retry([secs(1)]))
        .signature(Signature::kie("fake-hmac-key"))
        .verify("fetch");
    let (cfg, addr) = common::tasks::tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let url = format!("http://{addr}/hooks/runway");
    let callback = |fake: &FakeProvider| {
        let task = fake.create(Product::Runway, TaskPlan::success().manual().lose(), Some(&url));
        fake.set_stage(&task, fake.stage_count(&task));
        (task.clone(), fake.final_callback(&task))
    };
    let (a, body) = callback(&fake);
    fake.post_signed(addr, "/hooks/runway", &a, &body).await;
    let pull = |who: &'static str, wait: &'static str| async move {
        let (s, _, got) = pull_call(addr, "GET", &format!("/pull/b?wait={wait}"), Some(PULL), Some(who), "").await;
        assert_eq!(s, StatusCode::OK, "{got}");
        got
    };
    // Its first attempt is handed back: the next one is the last.
    let got = pull("f1", "10s").await;
    let id = got["messages"][0]["id"].as_str().expect("a message").to_string();
    let (s, _, got) = pull_call(
        addr,
        "POST",
        "/pull/b/ack",
        Some(PULL),
        Some("f1"),
        &format!(r#"{{"retry":["{id}"]}}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    let got = pull("f1", "10s").await;
    assert_eq!(got["messages"][0]["id"], id.as_str(), "{got}");
    assert_eq!(got["messages"][0]["attempt"], 2, "{got}");
    let leased = std::time::Instant::now();

    // Another callback comes; a second forwarder's pull makes the lane ask
    // the provider about it, and the provider holds the answer.
    fake.hold_status();
    let (b, body) = callback(&fake);
    fake.post_signed(addr, "/hooks/runway", &b, &body).await;
    let other = tokio::spawn(pull("f2", "20s"));
    while fake.status_held() < 1 {
        assert!(leased.elapsed() < secs(5), "the lane never asked the provider");
        tokio::time::sleep(ms(10)).await;
    }
    // The first forwarder releases it in time, the lane busy.
    let ack = format!(r#"{{"release":["{id}"]}}"#);
    let acking =
        tokio::spawn(async move { pull_call(addr, "POST", "/pull/b/ack", Some(PULL), Some("f1"), &ack).await });
    tokio::time::sleep(ms(100)).await;
    assert!(
        leased.elapsed() < LEASE - ms(500),
        "the acknowledgement was late already: the test proves nothing"
    );
    assert!(
        !acking.is_finished(),
        "answered while the lane was busy: the test proves nothing"
    );
    tokio::time::sleep(LEASE.saturating_sub(leased.elapsed()) + ms(500)).await;
    fake.release_status();
    let (s, _, got) = tokio::time::timeout(secs(10), acking).await.expect("answered").unwrap();
    assert_eq!(s, StatusCode::OK, "came in time, refused: {got}");
    assert_eq!((&got["retried"], &got["dead"]), (&1.into(), &0.into()), "{got}");
    let got = other.await.unwrap();
    assert_eq!(got["messages"].as_array().map(Vec::len), Some(1), "{got}");
    // Offered again at once, with the same attempt number.
    let got = pull("f1", "10s").await;
    assert_eq!(got["messages"][0]["id"], id.as_str(), "{got}");
    assert_eq!(got["messages"][0]["attempt"], 2, "{got}");
    h.shutdown().await;
}
