//! The provider's limits are the API key's: routes that use the same key
//! share one client (its pacing and its pause after a 429), and a reload
//! that keeps the key keeps them. Observed through the submit proxy and the
//! account's documented create budget (20 per 10 s): a 21st create within
//! the window is refused here (429) instead of being sent.

use crate::common;

use common::provider::{FakeOptions, FakeProvider};
use common::tasks::{submit, submit_ok, task_route, tasks_config};
use common::*;
use hookrelay::Handle;
use http::StatusCode;

fn creates(fake: &FakeProvider) -> usize {
    fake.requests().into_iter().filter(|r| r.method == "POST").count()
}

/// The 21st create of the window, through `route`: refused without a call.
async fn refused_locally(h: &Handle, fake: &FakeProvider, route: &str, endpoint: &str) {
    let (s, _, b) = submit(h.admin_addr, route, endpoint, &serde_json::json!({"prompt": "a cat"})).await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "a 21st create within 10 s went out: {}",
        String::from_utf8_lossy(&b)
    );
    assert_eq!(
        creates(fake),
        20,
        "the provider got more than the account's 20 creates per 10 s"
    );
}

#[tokio::test]
async fn two_routes_with_one_key_share_its_create_budget() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = tasks_config(
        dir.path(),
        vec![
            task_route("runway", "kie-runway", &fake, &sub.url()),
            task_route("veo", "kie-veo", &fake, &sub.url()),
        ],
    );
    let h = start(&cfg).await;
    for _ in 0..20 {
        submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;
    }
    refused_locally(&h, &fake, "veo", "/api/v1/veo/generate").await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_reload_that_keeps_the_key_keeps_its_create_budget() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = tasks_config(dir.path(), vec![task_route("runway", "kie-runway", &fake, &sub.url())]);
    let h = start(&cfg).await;
    for _ in 0..20 {
        submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;
    }
    cfg.write();
    h.reload().await.expect("reload");
    refused_locally(&h, &fake, "runway", "/api/v1/runway/generate").await;
    h.shutdown().await;
}
