//! The web console in a real headless Chromium (Debian `chromium`, npm
//! `playwright-core`): the daemon runs in-process with three real subscribers
//! on loopback (`ok`; `flaky`, whose deliveries die and are then replayed from
//! the page; `down`, where nothing listens), the test sends callbacks, and
//! `tests/console/console.mjs` drives the page: it asks for the token, lists
//! the events, searches a task id, shows an event's attempts, replays a dead
//! letter and all of a subscriber's, and shows the backlog of `down` growing
//! without a reload. The test then checks that `flaky` received the replays.
//! With HOOKRELAY_SCREENSHOTS=1 the script saves docs/console-*.png.

mod common;

#[path = "common/browser.rs"]
mod browser;

use std::time::Duration;

use common::*;

const TOKEN: &str = "console-admin-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_events_attempts_replays_and_backlog() {
    // Fail first, with what to install, when the browser kit is missing.
    let _ = browser::chromium();
    let dir = tempfile::tempdir().unwrap();
    let ok = Sub::ok().await;
    let (flaky, healthy) = Sub::broken(Behaviour::Status(500)).await;
    let cfg = TestConfig::new(dir.path())
        .admin_token(TOKEN)
        .subscriber(Subscriber::new("ok", ok.url()))
        .subscriber(
            Subscriber::new("flaky", flaky.url())
                .retry([ms(50)])
                .circuit_threshold(1000),
        )
        .subscriber(Subscriber::new("down", DOWN).retry([secs(3600)]));
    let h = start(&cfg).await;
    let (ingest, admin_addr) = (h.ingest_addrs[0], h.admin_addr);
    let tasks = ["console-run-1", "console-run-2", "console-run-3"];
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(accepted(ingest, &runway(t)).await);
    }
    ok.wait_for(Duration::from_secs(10), "ok's deliveries", |r| r.len() == 3)
        .await;
    let auth = [("authorization", format!("Bearer {TOKEN}"))];
    let dead_letters = || async {
        let headers: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (_, _, b) = request(
            admin_addr,
            None,
            "GET",
            "/api/dead-letters",
            &headers,
            Default::default(),
        )
        .await;
        serde_json::from_slice::<serde_json::Value>(&b).unwrap()["dead_letters"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while dead_letters().await < 3 {
        assert!(std::time::Instant::now() < deadline, "flaky's deliveries did not die");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // From now on flaky answers 200: what the page replays must arrive.
    let failed_before = flaky.count();
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);

    let shots = std::env::var("HOOKRELAY_SCREENSHOTS").is_ok_and(|v| v == "1");
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    if shots {
        std::fs::create_dir_all(&docs).unwrap();
    }
    let env = [
        ("ADMIN_URL", format!("http://{admin_addr}")),
        ("ADMIN_TOKEN", TOKEN.to_string()),
        ("INGEST_URL", format!("http://{ingest}/hooks/t?token=tok")),
        ("EVENT_IDS", ids.join(",")),
        ("TASK", "run-2".to_string()),
        ("TASK_EVENT", ids[1].clone()),
        ("DEAD_SUB", "flaky".to_string()),
        ("DOWN_SUB", "down".to_string()),
        (
            "SCREENSHOTS",
            if shots {
                docs.display().to_string()
            } else {
                String::new()
            },
        ),
    ];
    let run = browser::run_script("console.mjs", &env, Duration::from_secs(180)).await;
    assert!(
        run.ok && run.stdout.contains("CONSOLE OK"),
        "the console test failed:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    // The replays clicked on the page reached the subscriber: the one event
    // first, then the other two (replay all), each answered 200 this time.
    // (flaky also gets the callbacks the script sent to grow down's backlog.)
    let is_ours = |id: &str| ids.iter().any(|i| i == id);
    let got = flaky
        .wait_for(Duration::from_secs(10), "the replays", |r| {
            r[failed_before..]
                .iter()
                .filter(|x| is_ours(x.header("webhook-id")))
                .count()
                >= 3
        })
        .await;
    let replayed: Vec<&str> = got[failed_before..]
        .iter()
        .map(|r| r.header("webhook-id"))
        .filter(|id| is_ours(id))
        .collect();
    assert_eq!(replayed[0], ids[1], "the single replay came first: {replayed:?}");
    let mut all = replayed.clone();
    all.sort_unstable();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(all, want, "each dead letter replayed once");
    h.shutdown().await;
}
