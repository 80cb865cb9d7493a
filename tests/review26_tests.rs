//! Review 26 (hostile review of the merge 8c6e336..07f43f9): each test here
//! fails on the reviewed code because of the defect it names. See
//! /work/notes/review26.md.

use crate::common;

use common::*;

/// Finding 1. A relay whose served certificate file has expired (the renewal
/// failed, or under the unit the credential copy of the start is stale) is
/// refused every reload, also one that changes nothing about TLS: here the
/// operator locks down the admin API with a token (or revokes a leaked route
/// token) and the reload is refused "certificate … expired". The refusal
/// protects nothing: the expired certificate is the one being served either
/// way. (`not_valid_at` is applied to the file read again, not to a change of
/// the served certificate.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review26_a_reload_that_leaves_an_expired_certificate_alone_is_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    TestCert::write_until(dir.path(), "tls", 2025, 1);
    let cfg = TestConfig::new(dir.path())
        .tls(&dir.path().join("tls.crt"), &dir.path().join("tls.key"))
        .subscriber(Subscriber::new("s", DOWN));
    let h = start(&cfg).await;
    let before = h.app.certificate_problem();
    // Same certificate files; only the admin token is new.
    cfg.clone().admin_token("locked-down-now").write();
    let reloaded = h.reload().await.map_err(|e| e.to_string());
    let token_applied = h.app.live().config.admin.token.is_some();
    let still_served = h.app.certificate_problem();
    h.shutdown().await;
    assert!(before.is_some(), "the relay started serving the expired certificate");
    assert_eq!(before, still_served, "the served certificate is the same either way");
    assert!(
        reloaded.is_ok() && token_applied,
        "a reload that only sets admin.token was refused because the (unchanged, already served) \
         certificate is expired: {reloaded:?}; admin.token applied: {token_applied}"
    );
}

/// Finding 3. `hookrelay init --systemd` now suggests the TLS files as
/// credentials at the absolute path `/run/credentials/hookrelay.service/…`,
/// and its header (like systemd/README.md) says to check the file "as the
/// unit sees it" with `CREDENTIALS_DIRECTORY=DIR/secrets hookrelay
/// check-config`. That check cannot pass for the suggested TLS setting: the
/// path is not under `$CREDENTIALS_DIRECTORY` (the override does not apply)
/// and exists only while the unit runs with those credentials, so the
/// documented pre-restart check fails with "cannot read file" exactly when an
/// operator adds TLS (before the restart that would load the credentials).
#[test]
fn review26_the_documented_check_passes_for_the_suggested_tls_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("etc");
    let (ok, _, err) = cli(&["init", "--systemd", "--dir", dir.to_str().unwrap()]);
    assert!(ok, "init: {err}");
    let config = dir.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    // The operator's certificate files, placed where the unit's LoadCredential=
    // lines would read them from (as the secrets are in DIR/secrets).
    TestCert::write(&dir.join("secrets"), "tls");
    std::fs::rename(dir.join("secrets/tls.crt"), dir.join("secrets/tls-cert")).unwrap();
    std::fs::rename(dir.join("secrets/tls.key"), dir.join("secrets/tls-key")).unwrap();
    // Uncomment the suggested line, as the comment says to.
    let edited = text.replacen("# tls = { cert = \"/run/credentials", "tls = { cert = \"/run/credentials", 1);
    assert_ne!(edited, text, "init suggests the TLS files as credentials");
    std::fs::write(&config, edited).unwrap();
    // The check the header documents ("as the unit sees it").
    let check = text
        .lines()
        .find(|l| l.contains("CREDENTIALS_DIRECTORY=") && l.contains("check-config"))
        .expect("the header documents the check");
    assert!(check.contains(&format!("CREDENTIALS_DIRECTORY={}/secrets", dir.display())), "{check}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .env("CREDENTIALS_DIRECTORY", dir.join("secrets"))
        .args(["check-config", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the documented check of the suggested TLS credentials fails:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Finding 2. `replay` releases only deliveries that are final (dead,
/// delivered, skipped) before it queues, yet it also queues a delivery that
/// waits for a later retry ("sent at once"). A delivery of a `verify =
/// "fetch"` route waits so when the provider's record had not caught up (or
/// the provider could not be asked) at its check. If the verdict is settled
/// meanwhile through another subscriber, the operator's replay answers
/// `queued: [that subscriber]` but does not release it: it is held again as
/// unverified at once. The README says an unverified callback "is released to
/// the subscribers the replay queued it for"; before this merge (a release
/// per event) it was delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review26_a_replay_that_queues_a_delivery_waiting_on_the_provider_releases_it() {
    use common::provider::{FakeOptions, FakeProvider, TaskPlan};
    use common::tasks::{task_route, tasks_config};
    use hookrelay::provider::Product;
    const TOKEN: &str = "review26-pull-token";
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let a = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("runway", "kie-runway", &fake, &a.url())
        .without_reconcile()
        .subscriber(Subscriber::pull("b", TOKEN))
        .signature(Signature::kie("fake-hmac-key"))
        .verify("fetch");
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let url = format!("http://{addr}/hooks/runway");
    // A task still running at the provider; its callback forged ahead of it.
    let target = fake.create(Product::Runway, TaskPlan::success().manual().lose(), Some(&url));
    let mut forged = fake.final_callback(&target);
    forged["data"]["video_url"] = "https://evil.example/x.mp4".into();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sig = fake.sign(&target, ts).unwrap();
    let (s, _, b) = post(
        addr,
        "/hooks/runway",
        &[
            ("content-type", "application/json"),
            ("x-webhook-timestamp", &ts.to_string()),
            ("x-webhook-signature", &sig),
        ],
        forged.to_string(),
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let id = serde_json::from_slice::<serde_json::Value>(&b).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The push subscriber's check finds the record behind: it waits (10 s).
    let t0 = std::time::Instant::now();
    while fake.status_requests(&target) < 1 {
        assert!(t0.elapsed() < secs(10), "the push delivery was never checked");
        tokio::time::sleep(ms(20)).await;
    }
    tokio::time::sleep(ms(200)).await;
    // The task ends; the pull subscriber's check settles the verdict: held.
    fake.set_stage(&target, fake.stage_count(&target));
    let (s, _, got) = pull_call(addr, "GET", "/pull/b?wait=1s", Some(TOKEN), Some("f1"), "").await;
    assert_eq!(s, 200, "{got}");
    let state = |v: &serde_json::Value, name: &str| {
        v["subscribers"]
            .as_array()
            .and_then(|l| l.iter().find(|s| s["name"] == name || s["subscriber"] == name).cloned())
            .unwrap_or_default()
    };
    let view = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(5), |v| {
        state(v, "b")["state"] == "dead"
    })
    .await;
    assert_eq!(state(&view, "b")["state"], "dead", "{view}");
    assert_ne!(state(&view, "runway-sub")["state"], "dead", "still waiting on the provider: {view}");
    // The operator has looked at it and replays the event to everyone.
    let (s, replay) = admin(h.admin_addr, "POST", &format!("/api/events/{id}/replay")).await;
    assert_eq!(s, 200, "{replay}");
    let queued: Vec<&str> = replay["queued"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(queued.contains(&"runway-sub"), "{replay}");
    let delivered = tokio::time::timeout(secs(5), async {
        while a.count() == 0 {
            tokio::time::sleep(ms(50)).await;
        }
    })
    .await
    .is_ok();
    let (_, after) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    h.shutdown().await;
    assert!(
        delivered,
        "the replay answered {replay} (queued to runway-sub) but did not release it: held again: {}",
        state(&after, "runway-sub")
    );
}

/// Finding 5 (low; the same class as 7837996, left open). A duration with an
/// unknown unit is now refused without quoting it, because "the value may be
/// a secret written under the wrong key". A string key next to it,
/// `log.level`, still quotes the whole value in the error (which
/// `check-config`, ExecStartPre and the journal print).
#[test]
fn review26_a_mistyped_log_level_is_refused_without_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = TestConfig::new(dir.path())
        .log_level("sk-7d41e6a8c0")
        .subscriber(Subscriber::new("s", DOWN))
        .write();
    let shown = match hookrelay::Config::load(&path) {
        Ok(_) => panic!("the config should be refused"),
        Err(e) => e.to_string(),
    };
    assert!(shown.contains("log.level"), "{shown}");
    assert!(!shown.contains("sk-7d41"), "the value is quoted: {shown}");
}


/// Finding 4 (low). The new `server.shutdown_grace` warning adds the 3 s
/// margin with `Duration + Duration`, which panics on overflow: a grace near
/// the largest duration (`"18446744073709551615s"`, which humantime accepts)
/// makes `Config::parse` panic instead of answering a located error, against
/// the fuzz target's contract (fuzz/fuzz_targets/config.rs: "a Config or a
/// located error, never a panic"); `check-config` and ExecStartPre crash.
/// supervise.rs's `grace + SHUTDOWN_MARGIN` has the same overflow at SIGTERM.
#[test]
fn review26_a_huge_shutdown_grace_is_refused_or_accepted_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let text = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", DOWN))
        .render()
        .replacen("[server]", "[server]\nshutdown_grace = \"18446744073709551615s\"", 1);
    let parsed = std::panic::catch_unwind(|| {
        hookrelay::Config::parse(std::path::Path::new("fuzz.toml"), &text).map(|_| ()).map_err(|e| e.to_string())
    });
    match parsed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => assert!(e.starts_with("fuzz.toml"), "{e}"),
        Err(p) => panic!(
            "Config::parse panicked: {:?}",
            p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        ),
    }
}
