//! `verify = "fetch"`: a provider that refuses to look a callback's task
//! up for now (a `400`, a bad key) is asked again with back-off, and held as
//! `unverified` when it still refuses an hour on; only a task id our own
//! client cannot send holds the callback at once.

use crate::common;

use common::*;
use serde_json::{json, Value};

/// A provider API stand-in: answers the n-th request (0-based) with
/// `answer(n)` as a JSON body (HTTP 200), one request per connection.
async fn scripted_provider(
    answer: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = count.clone();
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = answer(i).to_string();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => got.extend_from_slice(&buf[..k]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (base, count)
}

/// A record query answered `code: 400` (in Veo's documented poll code enum:
/// "1080P is processing", a transient state) is asked again, not held as
/// `unverified` (review 33, finding 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_callback_checked_while_the_provider_answers_400_is_asked_again_not_held() {
    let task = "veo-400-1";
    let video = "https://files.invalid/veo-400-1/video.mp4";
    let (base, asked) = scripted_provider(move |n| {
        if n == 0 {
            json!({"code": 400, "msg": "1080P is processing. It should be ready in 1-2 minutes.", "data": null})
        } else {
            json!({"code": 200, "msg": "success", "data": {"taskId": task, "successFlag": 1,
                "response": {"taskId": task, "resultUrls": [video], "resolution": "1080p"}}})
        }
    })
    .await;
    let sub = Sub::ok().await;
    let other = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = veo_verify_config(dir.path(), &base, &sub, &other);
    let h = start(&cfg).await;
    let genuine = json!({"code": 200, "msg": "Veo3.1 video generated successfully.",
        "data": {"taskId": task, "fallbackFlag": false, "info": {"resultUrls": [video], "resolution": "1080p"}}});
    let a = callback_ok(h.ingest_addrs[0], "/hooks/veo", &genuine).await;
    let id = a["id"].as_str().unwrap().to_string();
    let t0 = std::time::Instant::now();
    while t0.elapsed() < secs(25) && sub.count() == 0 {
        tokio::time::sleep(ms(250)).await;
    }
    let (_, v) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    let state = v["subscribers"].clone();
    let asked = asked.load(std::sync::atomic::Ordering::SeqCst);
    h.shutdown().await;
    assert_eq!(
        sub.count(),
        1,
        "the genuine callback was not delivered (record asked {asked} times): {state}"
    );
}

/// A provider that answers `400` for ever is not asked for ever: an hour
/// after the callback was received it is held as `unverified` (a dead letter
/// saying so, which an event replay delivers), not left waiting out of sight
/// with a look-up every 5 minutes (review 34, finding 5). On tokio's paused
/// clock, moved by the test.
#[tokio::test(start_paused = true)]
async fn a_callback_whose_look_up_is_refused_for_an_hour_is_held_as_unverified() {
    let (base, asked) = scripted_provider(|_| json!({"code": 400, "msg": "1080P is processing.", "data": null})).await;
    let sub = Sub::ok().await;
    let other = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = veo_verify_config(dir.path(), &base, &sub, &other);
    let h = start(&cfg).await;
    let t0 = tokio::time::Instant::now();
    let callback = json!({"code": 200, "msg": "Veo3.1 video generated successfully.",
        "data": {"taskId": "veo-400-forever", "info": {"resultUrls": ["https://files.invalid/v.mp4"]}}});
    callback_ok(h.ingest_addrs[0], "/hooks/veo", &callback).await;
    let held = |v: &Value| v.to_string().contains("kept refusing");
    let mut dead = Value::Null;
    while t0.elapsed() < secs(70 * 60) && !held(&dead) {
        tokio::time::advance(secs(10)).await;
        settle(&h).await;
        if t0.elapsed().as_secs() % 300 < 10 {
            dead = admin(h.admin_addr, "GET", "/api/dead-letters").await.1;
        }
    }
    let elapsed = t0.elapsed();
    let asked = asked.load(std::sync::atomic::Ordering::SeqCst);
    h.shutdown().await;
    assert!(
        held(&dead),
        "still not held after {elapsed:?} (the provider asked {asked} times): {dead}"
    );
    assert!(elapsed >= secs(55 * 60), "held after {elapsed:?}, before the hour");
    assert!(dead.to_string().contains("unverified"), "{dead}");
    assert_eq!(sub.count(), 0);
}

/// A `kie-veo` route `veo` with `verify = "fetch"` against the provider at
/// `base`, its subscriber `w` at `sub` (`other`: the config's default
/// subscriber `s`, on no route of interest).
fn veo_verify_config(dir: &std::path::Path, base: &str, sub: &Sub, other: &Sub) -> TestConfig {
    TestConfig::new(dir)
        .subscriber(Subscriber::new("s", other.url()))
        .route(
            Route::new("veo", "/hooks/veo")
                .allow_anyone()
                .preset("kie-veo")
                .provider(common::route::Provider::new("k", base))
                .verify("fetch")
                .subscriber(Subscriber::new("w", sub.url())),
        )
}
