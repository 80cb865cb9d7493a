//! Recovered results in each product's callback shape: for Runway, Veo,
//! Suno and the market, a task whose final callback is lost is polled, and
//! what the subscriber receives is the callback the provider would have
//! sent (same dedupe key, so the late real one is a duplicate). Suno's
//! `text` and `first` callbacks arrive and are not terminal.

use crate::common;

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{submit_ok, task, task_route, tasks_config};
use common::*;
use serde_json::Value;

#[tokio::test]
async fn each_product_maps_to_its_callback_shape() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let subs = [Sub::ok().await, Sub::ok().await, Sub::ok().await, Sub::ok().await];
    let products = [
        (
            "runway",
            "kie-runway",
            "/api/v1/runway/generate",
            vec!["/data/task_id", "/code"],
        ),
        ("veo", "kie-veo", "/api/v1/veo/generate", vec!["/data/taskId", "/code"]),
        (
            "suno",
            "kie-suno",
            "/api/v1/generate",
            vec!["/data/task_id", "/data/callbackType"],
        ),
        (
            "market",
            "kie-market",
            "/api/v1/jobs/createTask",
            vec!["/data/taskId", "/data/state"],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let routes = products
        .iter()
        .zip(&subs)
        .map(|((name, preset, _, _), sub)| task_route(name, preset, &fake, &sub.url()))
        .collect();
    let (cfg, _) = tasks_config(dir.path(), routes);
    let h = start(&cfg).await;
    for ((name, _, endpoint, dedupe), sub) in products.iter().zip(&subs) {
        fake.plan_next(TaskPlan::success().lose());
        let id = submit_ok(h.admin_addr, name, endpoint).await;
        let got = sub
            .wait_for(secs(15), "the recovered result", |all| {
                all.iter().any(|r| r.header("hookrelay-source") == "poll")
            })
            .await;
        let polled: Vec<_> = got.iter().filter(|r| r.header("hookrelay-source") == "poll").collect();
        assert_eq!(polled.len(), 1, "{name}");
        let body: Value = serde_json::from_slice(&polled[0].body).unwrap();
        let genuine = fake.final_callback(&id);
        for p in dedupe {
            assert_eq!(
                body.pointer(p),
                genuine.pointer(p),
                "{name}: {p} in {body} vs {genuine}"
            );
            assert!(body.pointer(p).is_some(), "{name}: {p}");
        }
        let t = task(h.admin_addr, &id).await;
        assert_eq!(t["state"], "recovered", "{name}: {t}");
        if *name == "suno" {
            // text and first came as callbacks, did not settle the task, and were delivered.
            let stages: Vec<String> = got
                .iter()
                .filter(|r| r.header("hookrelay-source").is_empty())
                .map(|r| {
                    let v: Value = serde_json::from_slice(&r.body).unwrap();
                    v["data"]["callbackType"].as_str().unwrap_or_default().to_string()
                })
                .collect();
            assert_eq!(stages, ["text", "first"], "{name}");
            assert_eq!(body["data"]["callbackType"], "complete");
        }
    }
    h.shutdown().await;
}
