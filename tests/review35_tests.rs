//! Review 35: operator surfaces (reload, TLS, ACME, config, CLI).
//! Each test is a defect found by the review and fails until it is fixed.

use crate::common;

use std::sync::Arc;

use common::*;

/// Finding 3 (report /work/notes/review35.md): the dedupe memory is keyed by the route's *name*. A reload that
/// renames a route (same path, token, dedupe key; README documents the
/// rename as a supported reload, its subscribers move with it) forgets every
/// dedupe key stored before it: the provider's retry of a callback that was
/// answered 200 before the reload becomes a second event, and the subscriber
/// gets the same callback twice under two `webhook-id`s (it cannot dedupe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r35_a_provider_retry_after_a_route_rename_is_still_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let a = Sub::start(Arc::new(|_, _| Behaviour::Status(200))).await;
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("a", a.url()));
    base.write();
    let h = start(&base).await;

    let body = runway("r35-rename");
    let first = accepted(h.ingest_addrs[0], &body).await;
    a.wait_for(secs(10), "the first delivery", |r| r.len() == 1).await;

    // Same path, token, dedupe key and subscriber; only the route's name changes.
    let renamed = renamed(&base, "t_renamed");
    renamed.write();
    h.reload().await.expect("reload");

    // The provider did not see our 200 (timeout on its side) and retries.
    let (s, v) = callback(h.ingest_addrs[0], &body).await;
    assert_eq!(s, http::StatusCode::OK, "{v}");
    tokio::time::sleep(secs(3)).await;
    let ids: Vec<String> = a.all().iter().map(|r| r.header("webhook-id").to_string()).collect();
    assert_eq!(
        (v["duplicate"].as_bool(), v["id"].as_str(), ids.len()),
        (Some(true), Some(first.as_str()), 1),
        "a retry of a callback acknowledged before the rename was taken as a new event: answer {v}, \
         deliveries to a: {ids:?}"
    );
    h.shutdown().await;
}

/// `routes[0]` renamed to `name`: same path, token, dedupe key, subscribers.
fn renamed(base: &TestConfig, name: &'static str) -> TestConfig {
    base.clone().raw(move |t| {
        let routes = t.get_mut("routes").and_then(|r| r.as_array_mut()).expect("routes");
        routes[0]
            .as_table_mut()
            .expect("route table")
            .insert("name".into(), toml::Value::String(name.into()));
    })
}
