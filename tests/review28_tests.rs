//! Review 28: hostile review of the core path (ingest, auth, server,
//! delivery). Each test here fails on the code it was written against
//! (branch r28 at 5784ddc) and names the defect it proves.

use crate::common;

use common::*;
use http::StatusCode;

/// Finding 1. `verify = "fetch"` is documented as the defence against "a
/// forged body under a replayed valid signature" (the `kie` signature covers
/// only `taskId.timestamp`), and promises "never a silent drop". But the
/// forged event is stored (and its dedupe key taken) before it is verified:
/// a forged final callback that arrives before the genuine one makes the
/// genuine one a duplicate (`200`, `"duplicate": true`, dropped); then the
/// forged one is held as unverified. The subscriber never gets the result.
///
/// Suno sends several signed callbacks per task (`text`, `first`, then
/// `complete`), so the signature of its `text` callback, replayed within the
/// tolerance with a `complete` body, pre-empts the real `complete`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_final_callback_sent_first_makes_the_genuine_one_a_duplicate_and_nothing_is_delivered() {
    use common::provider::{FakeOptions, FakeProvider, TaskPlan};
    use common::tasks::{task_route, tasks_config};
    use hookrelay::provider::Product;

    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("suno", "kie-suno", &fake, &sub.url())
        .signature(Signature::kie("fake-hmac-key"))
        .verify("fetch");
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let url = format!("http://{addr}/hooks/suno");
    // Stages of 2 s: `text` at ~2 s, `first` at ~4 s, `complete` at ~6 s.
    let task = fake.create(Product::Suno, TaskPlan::success().step(secs(2)), Some(&url));
    fake.wait_until("the text callback", secs(10), |f| {
        f.callbacks(&task).iter().any(|c| c.kind == "text" && c.delivered())
    })
    .await;
    // The attacker replays the `text` callback's timestamp and signature
    // with a `complete` body naming their own file.
    let text = fake.callbacks(&task).into_iter().find(|c| c.kind == "text").unwrap();
    let mut forged = fake.final_callback(&task);
    forged["data"]["data"][0]["audio_url"] = "https://evil.example/a.mp3".into();
    let ts = text.timestamp.to_string();
    let sig = text.signature.clone().expect("signed");
    let (s, _, b) = post(
        addr,
        "/hooks/suno",
        &[
            ("content-type", "application/json"),
            ("x-webhook-timestamp", &ts),
            ("x-webhook-signature", &sig),
        ],
        forged.to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    // The genuine `complete` callback arrives and is answered 200.
    fake.wait_until("the genuine complete callback", secs(20), |f| {
        f.callbacks(&task).iter().any(|c| c.kind == "final" && c.delivered())
    })
    .await;
    // It must reach the subscriber (the forged one must not).
    let deadline = tokio::time::Instant::now() + secs(25);
    let genuine = loop {
        let got = sub.all().into_iter().find(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            v["data"]["callbackType"] == "complete"
        });
        if got.is_some() || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(ms(200)).await;
    };
    let (_, dead) = admin(h.admin_addr, "GET", "/api/dead-letters").await;
    h.shutdown().await;
    let genuine = genuine.unwrap_or_else(|| {
        panic!(
            "the genuine `complete` callback was answered 200 (a duplicate of the forged one) and never \
             delivered; dead letters: {dead}"
        )
    });
    assert!(!String::from_utf8_lossy(&genuine.body).contains("evil.example"));
}

/// Finding 2. The bearer scheme is matched as `Bearer ` or `bearer ` only.
/// An auth scheme is case-insensitive (RFC 9110 §11.1, RFC 6750 §2.1 uses
/// the same rule), so `BEARER tok` from a proxy or client library that
/// upper-cases it is answered `401 "missing token"` (the token was there).
/// README: "`?token=…` or `Authorization: Bearer …`".
#[tokio::test]
async fn a_bearer_scheme_in_another_case_is_still_a_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    let mut got = Vec::new();
    for (n, scheme) in ["Bearer", "bearer", "BEARER", "BeArEr"].iter().enumerate() {
        let value = format!("{scheme} tok");
        let (s, _, b) = post(
            addr,
            "/hooks/t",
            &[("authorization", value.as_str())],
            runway(&format!("case-{n}")),
        )
        .await;
        got.push((scheme.to_string(), s, String::from_utf8_lossy(&b).to_string()));
    }
    h.shutdown().await;
    for (scheme, s, body) in got {
        assert_eq!(s, StatusCode::OK, "Authorization: {scheme} tok -> {s} {body}");
    }
}

/// Finding 3. Verification (`verify = "fetch"`) reads the result URLs a
/// callback claims with `push_unique` (src/provider/loose.rs), which checks
/// each new URL against every one kept so far: quadratic in the number of
/// URLs, on a runtime worker, with no bound. A Market callback naming 60,000
/// distinct short strings in `resultJson.resultUrls` (about 600 KB, well
/// inside the default `max_body` of 1 MiB) keeps a worker busy for that
/// long before the callback is held. The attacker needs only a task id the
/// provider knows (the threat `verify = "fetch"` is there for); a few such
/// posts occupy every worker of the runtime, ingest included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifying_a_callback_with_many_urls_is_not_quadratic() {
    use common::provider::{FakeOptions, FakeProvider, TaskPlan};
    use common::tasks::{task_route, tasks_config};
    use hookrelay::provider::Product;

    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("market", "kie-market", &fake, &sub.url()).verify("fetch");
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let task = fake.create(Product::Market, TaskPlan::success().lose(), None);
    fake.wait_until("the task to finish", secs(5), |f| f.is_finished(&task))
        .await;
    let urls: Vec<String> = (0..60_000u32).map(|i| format!("{i:x}")).collect();
    let mut body = fake.final_callback(&task);
    body["data"]["resultJson"] = serde_json::json!({ "resultUrls": urls });
    let body = body.to_string();
    assert!(body.len() < 1 << 20, "{} bytes", body.len());
    let t0 = tokio::time::Instant::now();
    let (s, _, b) = post(addr, "/hooks/market", &[("content-type", "application/json")], body).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let id = serde_json::from_slice::<serde_json::Value>(&b).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Held (or delivered) within a few seconds, as any other callback is.
    let mut settled = None;
    while t0.elapsed() < secs(60) {
        let (_, v) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
        let state = v["subscribers"][0]["state"].as_str().unwrap_or("").to_string();
        if state == "dead" || state == "delivered" {
            settled = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(ms(200)).await;
    }
    h.shutdown().await;
    let took = settled.expect("not verified within 60 s");
    eprintln!("verified after {took:?}");
    assert!(took < secs(5), "verifying one 600 KB callback took {took:?}");
}

/// Finding 4. The verifier treats every provider error other than
/// `NotFound`/`Rejected` as "cannot ask now", and a `GiveUp` action as "ask
/// again in 10 s" (src/delivery/verify_gate.rs, `Action::GiveUp =>
/// later(LAGGING)`). `ProviderClient::record` refuses, without asking the
/// provider, a task id over 256 characters or holding a control character
/// (`InvalidInput`, `GiveUp`): such a callback — which no genuine callback
/// is — is never held as unverified, it stays pending for ever, re-checked
/// every 10 s with a `warn` line each time. A stranger's posts to a
/// `verify = "fetch"` route without a signature (`allow_anyone`, or
/// `allow_ips` when the stranger is inside them) each add one such
/// everlasting loop and log line every 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_whose_task_id_cannot_be_asked_about_is_held_not_rechecked_for_ever() {
    use common::provider::{FakeOptions, FakeProvider};
    use common::tasks::{task_route, tasks_config};

    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("runway", "kie-runway", &fake, &sub.url()).verify("fetch");
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let task = "t".repeat(300);
    let body = serde_json::json!({"code": 200, "msg": "All generated successfully.",
        "data": {"task_id": task, "video_id": "v", "video_url": "https://evil.example/v.mp4", "image_url": ""}});
    let (s, _, b) = post(
        addr,
        "/hooks/runway",
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let id = serde_json::from_slice::<serde_json::Value>(&b).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A callback the provider cannot vouch for is held (dead, `unverified:`)
    // at once, like one naming a task the provider does not know.
    let t0 = tokio::time::Instant::now();
    let mut last = serde_json::Value::Null;
    let mut held = false;
    while t0.elapsed() < secs(25) {
        let (_, v) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
        if v["subscribers"][0]["state"] == "dead" {
            held = true;
            break;
        }
        last = v;
        tokio::time::sleep(ms(250)).await;
    }
    h.shutdown().await;
    assert_eq!(sub.count(), 0, "not delivered");
    assert!(
        held,
        "still not held 25 s after it was accepted (re-checked every 10 s for ever): {}",
        last["subscribers"]
    );
}

/// An `LD_PRELOAD` library that shifts `CLOCK_REALTIME` (only) by the number
/// of seconds in the file `$R28_OFFSET_FILE`, read on every call: the wall
/// clock of one process can be stepped, as NTP steps a machine's, without
/// touching the machine's.
fn realtime_shift_library(dir: &std::path::Path) -> std::path::PathBuf {
    let src = dir.join("shift.c");
    std::fs::write(
        &src,
        r#"
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
int clock_gettime(clockid_t id, struct timespec *ts) {
    int r = syscall(SYS_clock_gettime, id, ts);
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        const char *f = getenv("R28_OFFSET_FILE");
        FILE *fp = f ? fopen(f, "r") : NULL;
        if (fp) {
            long off = 0;
            if (fscanf(fp, "%ld", &off) == 1) ts->tv_sec += off;
            fclose(fp);
        }
    }
    return r;
}
"#,
    )
    .unwrap();
    let lib = dir.join("libshift.so");
    let out = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .expect("a C compiler (cc)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lib
}

/// Finding 5. `clock::now()` is the wall time read once (the first call)
/// advanced by the monotonic clock: a wall clock that is stepped while the
/// daemon runs is never seen. A host whose clock is wrong at boot (no RTC,
/// a drifted one, a restored VM) and that NTP corrects after the daemon
/// started (`hookrelay.service` is ordered after `network-online.target`,
/// not `time-sync.target`) keeps the wrong time until a restart: every
/// signed callback is refused as stale (`401`) once the error passes the
/// tolerance (5 min by default) — the provider retries three times over
/// ~20 min and gives up: the callbacks are lost — and every delivery's
/// `webhook-timestamp` is that far off, which Standard Webhooks receivers
/// refuse. (Likewise after a suspend: the monotonic clock stops meanwhile.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_corrected_while_running_is_followed() {
    use common::oracle::standard_webhooks_sign;
    const SW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let dir = tempfile::tempdir().unwrap();
    let lib = realtime_shift_library(dir.path());
    let offset = dir.path().join("offset");
    // At boot the clock is an hour behind.
    std::fs::write(&offset, "-3600").unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .route(
            Route::new("sw", "/hooks/sw")
                .signature(Signature::standard_webhooks(SW))
                .subscriber(Subscriber::new("w", sub.url())),
        );
    let bin = Bin::start(
        &cfg.write(),
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("R28_OFFSET_FILE", offset.to_str().unwrap()),
        ],
    );
    let real_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let signed = |ts: u64, n: u32| {
        let body = format!(r#"{{"type":"done","n":{n}}}"#);
        let ts = ts.to_string();
        let sig = standard_webhooks_sign(SW, &format!("msg_{n}"), &ts, body.as_bytes());
        (body, ts, sig, format!("msg_{n}"))
    };
    // The daemon believes the clock: a callback signed an hour ago is fresh to it.
    let (body, ts, sig, id) = signed(real_now() - 3600, 1);
    let h = [
        ("webhook-id", id.as_str()),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    assert_eq!(
        post(bin.addr, "/hooks/sw", &h, body).await.0,
        StatusCode::OK,
        "the shift took effect"
    );
    // NTP corrects the clock.
    std::fs::write(&offset, "0").unwrap();
    tokio::time::sleep(ms(500)).await;
    // The provider signs with the right time.
    let (body, ts, sig, id) = signed(real_now(), 2);
    let h = [
        ("webhook-id", id.as_str()),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    let (s, _, b) = post(bin.addr, "/hooks/sw", &h, body).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "a callback signed now, after the host's clock was corrected, is refused: {}",
        String::from_utf8_lossy(&b)
    );
}
