//! Cluster mode: the settings every relay shares (`store.retention`: the
//! streams' and buckets' max_age; `store.nats.replicas`; `store.nats.takeover`:
//! the consumers' ack_wait) belong to the cluster. A relay whose values differ
//! refuses to start and changes nothing; `hookrelay apply-cluster-settings`
//! changes them on purpose; a reload neither rewrites them nor drops
//! readiness; a retention under the two-minute duplicate window works.

use crate::common;

use std::time::Duration;

use async_nats::jetstream;
use common::nats::{read_retrying, NatsCluster};
use common::*;
use http::StatusCode;

/// The stream `name` as the cluster has it.
async fn stream_config(nats: &NatsCluster, name: &str) -> jetstream::stream::Config {
    let js = jetstream::new(async_nats::connect(nats.url(0)).await.unwrap());
    let read = || async { js.get_stream(name).await.map(|s| s.cached_info().config.clone()) };
    read_retrying(&format!("stream {name}"), read).await
}

/// The consumer `name` of stream `stream` as the cluster has it.
async fn consumer_ack_wait(nats: &NatsCluster, stream: &str, name: &str) -> Duration {
    let js = jetstream::new(async_nats::connect(nats.url(0)).await.unwrap());
    let read = || async {
        let s = js.get_stream(stream).await.map_err(|e| e.to_string())?;
        s.consumer_info(name)
            .await
            .map(|i| i.config.ack_wait)
            .map_err(|e| e.to_string())
    };
    read_retrying(&format!("consumer {stream}/{name}"), read).await
}

/// A relay on this cluster with subscriber `s` at `url` (its own directory).
fn relay(dir: &std::path::Path, nats: &NatsCluster, url: &str, replicas: usize, retention: Duration) -> TestConfig {
    TestConfig::new(dir)
        .subscriber(Subscriber::new("s", url))
        .nats(nats.urls(), replicas)
        .retention(retention)
}

/// Start a relay that must be refused; the error it names.
async fn refused(cfg: &TestConfig) -> String {
    let loaded = hookrelay::Config::load(&cfg.write()).expect("valid config");
    match hookrelay::start(loaded).await {
        Ok(h) => {
            h.shutdown().await;
            panic!("a relay whose settings differ from the cluster's started");
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_relay_does_not_change_the_clusters_settings() {
    let nats = NatsCluster::start(3).await;
    let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sub = Sub::ok().await;
    let hour = secs(3600);
    let h = start(&relay(dir.path(), &nats, &sub.url(), 3, hour)).await;
    let id = accepted_retrying(h.ingest_addrs[0], &runway("kept")).await;
    sub.wait_for(secs(10), "the first event", |r| r.len() == 1).await;

    // Another relay with a shorter retention, one copy, another takeover:
    // refused with the setting, both values and the way to change it.
    let cases = [
        (
            relay(other.path(), &nats, &sub.url(), 3, secs(60)),
            "store.retention is \"1m\" in this relay's config but \"1h\" in the cluster",
        ),
        (
            relay(other.path(), &nats, &sub.url(), 1, hour),
            "store.nats.replicas is 1 in this relay's config but 3 in the cluster",
        ),
        (
            relay(other.path(), &nats, &sub.url(), 3, hour).nats_takeover("10s"),
            "store.nats.takeover is \"10s\" in this relay's config but \"5s\" in the cluster",
        ),
    ];
    for (cfg, says) in cases {
        let e = refused(&cfg).await;
        assert!(e.contains(says), "{e}");
        assert!(e.contains("hookrelay apply-cluster-settings"), "{e}");
    }
    // `hookrelay run` names the config file the keys are in.
    let path = relay(other.path(), &nats, &sub.url(), 3, secs(60)).write();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(["run", "--config"])
            .arg(&path)
            .output()
            .map(|o| (o.status, String::from_utf8_lossy(&o.stderr).into_owned(), path))
    })
    .await
    .unwrap()
    .unwrap();
    let (status, err, path) = out;
    // Exit 2: no restart mends it (the unit does not restart it; it exited 1).
    assert_eq!(status.code(), Some(2), "{err}");
    let refusal = err
        .lines()
        .find(|l| l.contains("in this relay's config but"))
        .unwrap_or_else(|| panic!("no refusal: {err}"));
    assert!(refusal.contains(&format!("{}: ", path.display())), "{refusal}");
    // Nothing changed: the event, its stream and consumer keep the cluster's settings.
    let ev = stream_config(&nats, "HR_EV_t").await;
    assert_eq!((ev.max_age, ev.num_replicas), (hour, 3));
    for name in ["HR_DL", "KV_hr_results", "KV_hr_tasks", "HR_TASKS"] {
        let c = stream_config(&nats, name).await;
        assert_eq!((c.max_age, c.num_replicas), (hour, 3), "{name}");
    }
    assert_eq!(consumer_ack_wait(&nats, "HR_EV_t", "sub_s").await, secs(5));
    let (s, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{ev}");
    accepted(h.ingest_addrs[0], &runway("still-served")).await;

    // The operator changes the retention for the whole cluster on purpose.
    let two_hours = relay(other.path(), &nats, &sub.url(), 3, secs(7200));
    let path = two_hours.write();
    let (ok, out, err) = apply_cluster_settings(&path).await;
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.matches("stream HR_EV_t: store.retention \"1h\" -> \"2h\"").count(),
        1,
        "listed once (a route's stream was listed twice): {out}"
    );
    assert_eq!(stream_config(&nats, "HR_EV_t").await.max_age, secs(7200));
    assert_eq!(stream_config(&nats, "HR_DL").await.max_age, secs(7200));
    // Now a relay with the new value starts, and one with the old is refused.
    let h2 = start(&two_hours).await;
    accepted(h2.ingest_addrs[0], &runway("on-the-new-relay")).await;
    let third = tempfile::tempdir().unwrap();
    let e = refused(&relay(third.path(), &nats, &sub.url(), 3, hour)).await;
    assert!(
        e.contains("store.retention is \"1h\" in this relay's config but \"2h\""),
        "{e}"
    );
    h2.shutdown().await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_reload_keeps_readiness_and_the_clusters_settings() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = relay(dir.path(), &nats, &sub.url(), 1, secs(3600));
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    accepted(addr, &runway("before")).await;
    // An unchanged reload asks NATS nothing: with the node frozen it still
    // completes, and the relay is ready and serving the moment NATS answers.
    nats.signal(0, "STOP");
    let reloaded = h.reload().await;
    nats.signal(0, "CONT");
    reloaded.expect("reload");
    let (s, v) = callback(addr, &runway("after-reload")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(admin(h.admin_addr, "GET", "/readyz").await.0, StatusCode::OK);
    // A reload with another retention does not touch the cluster's.
    relay(dir.path(), &nats, &sub.url(), 1, secs(60)).write();
    h.reload().await.expect("reload");
    assert_eq!(stream_config(&nats, "HR_EV_t").await.max_age, secs(3600));
    accepted(addr, &runway("after-second-reload")).await;
    sub.wait_for(secs(10), "every event", |r| r.len() == 3).await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_retention_under_two_minutes_works_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(&relay(dir.path(), &nats, &sub.url(), 1, secs(60))).await;
    accepted(h.ingest_addrs[0], &runway("short")).await;
    sub.wait_for(secs(10), "the event", |r| r.len() == 1).await;
    let work = stream_config(&nats, "HR_TASKS").await;
    assert_eq!((work.max_age, work.duplicate_window), (secs(60), secs(60)));
    h.shutdown().await;
}

/// `apply-cluster-settings` lowers `store.nats.takeover` (30 s -> 5 s) under
/// running relays: they renew what they hold by the consumer's new ack wait
/// (read every second), not every 6 s (a fifth of the takeover they started
/// with), which let NATS hand a delivery still in flight to the other relay:
/// sent twice, until every relay restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_takeover_applies_to_running_relays_at_once() {
    let nats = NatsCluster::start(1).await;
    // Every delivery takes 12 s: more than twice the new takeover.
    let sub = Sub::start(std::sync::Arc::new(|_, _| Behaviour::Slow(secs(12)))).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let cfg = |dir: &std::path::Path, t: &'static str| {
        TestConfig::new(dir)
            .subscriber(Subscriber::new("s", sub.url()).timeout(secs(30)))
            .nats(nats.urls(), 1)
            .retention(secs(3600))
            .nats_takeover(t)
    };
    let a = start(&cfg(dirs[0].path(), "30s")).await;
    let b = start(&cfg(dirs[1].path(), "30s")).await;
    let path = cfg(dirs[2].path(), "5s").write();
    let (ok, out, err) = apply_cluster_settings(&path).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("store.nats.takeover \"30s\" -> \"5s\""), "{out}");
    assert_eq!(consumer_ack_wait(&nats, "HR_EV_t", "sub_s").await, secs(5));
    // The relays read the consumer's ack wait every second.
    tokio::time::sleep(secs(2)).await;

    let mut ids = Vec::new();
    for (i, h) in [&a, &b, &a, &b].into_iter().enumerate() {
        ids.push(accepted(h.ingest_addrs[0], &runway(&format!("slow-{i}"))).await);
    }
    for id in &ids {
        let ev = admin_until(a.admin_addr, &format!("/api/events/{id}"), secs(30), |v| {
            v["subscribers"][0]["state"] == "delivered"
        })
        .await;
        assert_eq!(ev["subscribers"][0]["state"], "delivered", "{ev}");
    }
    let seen = seen_ids(&sub);
    assert_eq!(seen.len(), ids.len(), "{seen:?}");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "sent more than once (NATS handed them to the other relay while in flight): {twice:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// `apply-cluster-settings` changes every object of the cluster whose value
/// differs, also those the given config does not name: the stream of a
/// route it does not have (and that stream's consumers) and the consumer of
/// a subscriber it does not have. They used to keep the old values.
#[tokio::test]
async fn applying_settings_changes_the_objects_of_routes_and_subscribers_not_in_the_config() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let hour = secs(3600);
    // A relay with an extra subscriber on `t` and an extra route `other`
    // creates their objects.
    let other_route = Route::new("other", "/hooks/other")
        .allow_anyone()
        .subscriber(Subscriber::new("o", sub.url()));
    let wide = relay(dir.path(), &nats, &sub.url(), 1, hour)
        .subscriber(Subscriber::new("old", sub.url()))
        .route(other_route);
    let h = start(&wide).await;
    h.shutdown().await;
    // The new settings, from a config with `t` and `s` only.
    let narrow = relay(dir.path(), &nats, &sub.url(), 1, secs(7200)).nats_takeover("10s");
    let (ok, out, err) = apply_cluster_settings(&narrow.write()).await;
    assert!(ok, "{out}{err}");
    for line in [
        "stream HR_EV_t: store.retention \"1h\" -> \"2h\"",
        "stream HR_EV_other: store.retention \"1h\" -> \"2h\"",
        "consumer sub_s of stream HR_EV_t: store.nats.takeover \"5s\" -> \"10s\"",
        "consumer sub_old of stream HR_EV_t: store.nats.takeover \"5s\" -> \"10s\"",
        "consumer sub_o of stream HR_EV_other: store.nats.takeover \"5s\" -> \"10s\"",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    assert_eq!(stream_config(&nats, "HR_EV_other").await.max_age, secs(7200));
    assert_eq!(consumer_ack_wait(&nats, "HR_EV_t", "sub_old").await, secs(10));
    assert_eq!(consumer_ack_wait(&nats, "HR_EV_other", "sub_o").await, secs(10));
    // Applied again: nothing left to change.
    let (ok, out, err) = apply_cluster_settings(&narrow.write()).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("nothing changed"), "{out}");
}

/// A command against a cluster that does not answer prints its own error
/// and nothing else: not the NATS client library's line for every
/// connection attempt (target `async_nats`), nor a warning about
/// acknowledgements only a relay holds. The daemon keeps the library's lines.
#[tokio::test]
async fn a_command_against_an_unreachable_cluster_prints_only_its_error() {
    let mut nats = NatsCluster::start(1).await;
    nats.kill9(0);
    let dir = tempfile::tempdir().unwrap();
    let path = relay(
        dir.path(),
        &nats,
        "http://127.0.0.1:9/",
        1,
        Duration::from_secs(14 * 86400),
    )
    .write();
    let (ok, out, err) = apply_cluster_settings(&path).await;
    assert!(!ok, "{out}{err}");
    assert!(!err.contains("async_nats"), "the client library's lines:\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "only the error:\n{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(
        lines[0].contains("not reachable") && lines[0].contains(&nats.url(0)),
        "says what and where: {err}"
    );
    // The daemon on the same config still logs them.
    let bin = Bin::start(&path, &[]);
    log_until(|| bin.log_text(), "async_nats", secs(10)).await;
}

/// `hookrelay apply-cluster-settings -c PATH`: (success, stdout, stderr).
async fn apply_cluster_settings(path: &std::path::Path) -> (bool, String, String) {
    cli_async(vec![
        "apply-cluster-settings".into(),
        "-c".into(),
        path.to_str().unwrap().into(),
    ])
    .await
}

/// Two relays with different settings started at the same moment on an
/// empty cluster: each object found absent is created strictly, so the one
/// that loses a create compares with what the other created and is refused;
/// before, the later create-or-update rewrote the first relay's settings
/// under it (both served, the cluster had the later one's retention) or the
/// loser waited at 503 for ever. Several rounds, each on a fresh server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_starting_together_on_an_empty_cluster_do_not_rewrite_each_other() {
    // Even rounds: the retentions differ (the streams race); odd rounds: the
    // takeovers (the streams agree, the consumers race).
    for round in 0..6 {
        let nats = NatsCluster::start(1).await;
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let url = "http://127.0.0.1:9/unused";
        let streams_race = round % 2 == 0;
        let cfg = |dir: &std::path::Path, n: u64| {
            let hours = if streams_race { n } else { 1 };
            let t = relay(dir, &nats, url, 1, secs(3600 * hours)).nats_takeover(if n == 1 { "5s" } else { "7s" });
            hookrelay::Config::load(&t.write()).expect("valid config")
        };
        let (ra, rb) = tokio::join!(hookrelay::start(cfg(a.path(), 1)), hookrelay::start(cfg(b.path(), 2)));
        let mut served = Vec::new();
        for (n, r) in [(1, ra), (2, rb)] {
            match r {
                Ok(h) => served.push((n, h)),
                Err(e) => assert!(
                    e.to_string().contains("store.retention is") || e.to_string().contains("store.nats.takeover is"),
                    "round {round}: {e}"
                ),
            }
        }
        assert_eq!(served.len(), 1, "round {round}: exactly one of the two relays serves");
        let n = served[0].0;
        accepted(served[0].1.ingest_addrs[0], &runway("served")).await;
        let hours = if streams_race { n } else { 1 };
        for name in ["HR_DL", "KV_hr_results", "KV_hr_tasks", "HR_TASKS", "HR_EV_t"] {
            let c = stream_config(&nats, name).await;
            assert_eq!(c.max_age, secs(3600 * hours), "round {round}: {name}");
        }
        let wait = consumer_ack_wait(&nats, "HR_EV_t", "sub_s").await;
        assert_eq!(
            wait,
            secs(if n == 1 { 5 } else { 7 }),
            "round {round}: the consumer's takeover"
        );
        for (_, h) in served {
            h.shutdown().await;
        }
    }
}

/// A set-up NATS refuses (three copies on a single server) is said by
/// readiness, not only logged: it said "the streams are not set up yet",
/// the reason in the log at `error` every few seconds (cluster review,
/// stop 65).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_says_why_the_set_up_fails() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(
        &TestConfig::new(dir.path())
            .subscriber(Subscriber::new("s", sub.url()))
            .nats(nats.urls(), 3),
    )
    .await;
    let status = admin_until(h.admin_addr, "/api/status", secs(20), |v| {
        v["not_ready_because"]
            .as_str()
            .is_some_and(|w| w.contains("the last try"))
    })
    .await;
    let why = status["not_ready_because"].as_str().unwrap_or_default();
    assert!(
        why.contains("the last try") && why.to_lowercase().contains("replicas"),
        "{status}"
    );
    h.shutdown().await;
}

/// More copies than the cluster has nodes: `apply-cluster-settings` says
/// which setting NATS refused, not only "store cannot persist" (cluster
/// review, stop 65), and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_replicas_than_nodes_is_refused_naming_the_setting() {
    let nats = NatsCluster::start(3).await;
    let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sub = Sub::ok().await;
    let hour = secs(3600);
    let h = start(&relay(dir.path(), &nats, &sub.url(), 3, hour)).await;
    let path = relay(other.path(), &nats, &sub.url(), 5, hour).write();
    let (ok, out, err) = apply_cluster_settings(&path).await;
    assert!(!ok, "{out}{err}");
    assert!(err.contains("store.nats.replicas = 5 needs at least 5"), "{err}");
    let ev = stream_config(&nats, "HR_EV_t").await;
    assert_eq!(ev.num_replicas, 3);
    h.shutdown().await;
}
