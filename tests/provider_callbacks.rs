//! The provider shapes end to end against the fake provider: records walked
//! through their states, terminal records mapped to the callbacks the fake
//! actually sends (same dedupe key), the callback sender's retries and knobs.

use crate::common;

use std::num::NonZeroU32;
use std::time::Duration;

use base64::Engine as _;
use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::{Behaviour, Received, Sub};
use hmac::Mac;
use hookrelay::dedupe::DedupeKey;
use hookrelay::provider::product::Rate;
use hookrelay::provider::{
    to_callback, verify, ApiKey, CallbackStage, ClientConfig, Product, ProviderClient, Stage, Verdict,
};
use serde_json::Value;

fn client(fake: &FakeProvider) -> ProviderClient {
    let mut cfg = ClientConfig::new(fake.url(), ApiKey::new(fake.api_key()).unwrap());
    // Pacing has its own tests; here many tasks are walked quickly.
    cfg.per_key = Rate::new(NonZeroU32::new(1000).unwrap(), Duration::from_secs(1));
    cfg.per_task_default = cfg.per_key;
    ProviderClient::new(cfg).unwrap()
}

/// Market callbacks carry credit fields the record cannot know.
fn comparable(product: Product, mut callback: Value) -> Value {
    if product == Product::Market {
        let data = callback["data"].as_object_mut().unwrap();
        data.remove("consumeCredits");
        data.remove("remainedCredits");
    }
    callback
}

fn assert_same_dedupe_key(product: Product, polled: &Value, real: &Value) {
    let key = DedupeKey::Preset(product.preset_name().parse().unwrap());
    let (a, fell_back) = key.hash(Some(polled), b"polled", None);
    assert!(
        !fell_back,
        "{product}: the polled shape {polled} has no task id or outcome"
    );
    assert_eq!(
        a,
        key.hash(Some(real), b"real", None).0,
        "{product}: dedupe keys differ"
    );
}

/// Stages before the end, as the client must classify them.
fn expected_stages(product: Product, failing: bool) -> Vec<Stage> {
    use Stage::*;
    match product {
        Product::Runway | Product::Market => vec![Waiting, Waiting, Running],
        Product::Suno if failing => vec![Waiting],
        Product::Suno => vec![Waiting, Running, Running],
        _ => vec![Running],
    }
}

fn failure_code(product: Product) -> i64 {
    match product {
        Product::Veo | Product::FluxKontext => 501,
        Product::FourOImage => 451,
        Product::Market => 500,
        _ => 400,
    }
}

#[tokio::test]
async fn every_product_walks_its_states_and_maps_to_its_callback() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let client = client(&fake);
    for product in Product::ALL {
        for alternate in [false, true] {
            for failing in [false, true] {
                let mut plan = if failing {
                    TaskPlan::failure(failure_code(product), "Your prompt was flagged.")
                } else {
                    TaskPlan::success()
                };
                plan = plan.manual();
                if alternate {
                    plan = plan.alternate();
                }
                let id = fake.create(product, plan, None);
                let case = format!("{product} alternate={alternate} failing={failing}");
                let stages = expected_stages(product, failing);
                assert_eq!(fake.stage_count(&id), stages.len(), "{case}");
                for (idx, want) in stages.iter().enumerate() {
                    fake.set_stage(&id, idx);
                    let record = client
                        .record(product, &id)
                        .await
                        .unwrap_or_else(|e| panic!("{case}: {e}"));
                    assert_eq!(record.stage(), *want, "{case}: stage {idx} ({})", record.state());
                    assert!(to_callback(&record).is_err(), "{case}: a running task has no callback");
                }
                fake.set_stage(&id, stages.len());
                let record = client.record(product, &id).await.unwrap();
                let want = if failing { Stage::Failed } else { Stage::Succeeded };
                assert_eq!(record.stage(), want, "{case}: final ({})", record.state());
                let polled = to_callback(&record).unwrap();
                let real = comparable(product, fake.final_callback(&id));
                assert_eq!(polled, real, "{case}: polled shape differs from the real callback");
                assert_same_dedupe_key(product, &polled, &real);
                assert_eq!(verify(&real, &record), Verdict::Agree, "{case}");
                assert_eq!(
                    product.callback_stage(&real),
                    if failing {
                        CallbackStage::Failed
                    } else {
                        CallbackStage::Succeeded
                    }
                );
            }
        }
    }
}

fn header_signature_ok(r: &Received, key: &str, task_id: &str) -> bool {
    let ts = r.header("x-webhook-timestamp");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{task_id}.{ts}").as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    !ts.is_empty() && r.header("x-webhook-signature") == want
}

fn body(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test]
async fn callbacks_the_fake_sends_equal_the_polled_shapes() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let client = client(&fake);
    let sub = Sub::ok().await;
    let creates = [
        (Product::Runway, "/api/v1/runway/generate", TaskPlan::success()),
        (
            Product::Aleph,
            "/api/v1/aleph/generate",
            TaskPlan::failure(400, "caught by the moderator"),
        ),
        (Product::Veo, "/api/v1/veo/generate", TaskPlan::success().alternate()),
        (Product::Suno, "/api/v1/generate", TaskPlan::success()),
        (Product::FourOImage, "/api/v1/gpt4o-image/generate", TaskPlan::success()),
        (
            Product::FluxKontext,
            "/api/v1/flux/kontext/generate",
            TaskPlan::failure(501, "generation failed"),
        ),
        (Product::Market, "/api/v1/jobs/createTask", TaskPlan::success()),
    ];
    let progress_url = format!("http://{}/progress", sub.addr);
    let mut tasks = Vec::new();
    for (product, endpoint, plan) in creates {
        fake.plan_next(plan);
        let body = serde_json::json!({"prompt": "a cat", "model": "m", "progressCallBackUrl": progress_url});
        let answer = client
            .submit(endpoint, body.to_string().as_bytes(), &sub.url())
            .await
            .unwrap();
        tasks.push((product, answer.task_id.expect("the create answer names a task")));
    }
    let finals = |all: &[Received], product: Product, id: &str| -> Vec<Value> {
        all.iter()
            .filter(|r| r.path == "/callbacks")
            .map(body)
            .filter(|b| product.callback_task_id(b) == Some(id) && product.callback_stage(b).is_terminal())
            .collect()
    };
    let all = sub
        .wait_for(Duration::from_secs(10), "a final callback per task", |all| {
            tasks.iter().all(|(p, id)| !finals(all, *p, id).is_empty())
        })
        .await;
    for (product, id) in &tasks {
        let real = finals(&all, *product, id).remove(0);
        let record = client.record(*product, id).await.unwrap();
        let polled = to_callback(&record).unwrap();
        assert_eq!(polled, comparable(*product, real.clone()), "{product}");
        assert_same_dedupe_key(*product, &polled, &real);
        assert_eq!(verify(&real, &record), Verdict::Agree, "{product}");
        let signed = all
            .iter()
            .filter(|r| r.path == "/callbacks" && product.callback_task_id(&body(r)) == Some(id.as_str()));
        for r in signed {
            assert!(header_signature_ok(r, "fake-hmac-key", id), "{product}: bad signature");
        }
    }
    // Suno: text, then first, then complete; only the last ends the task.
    let (_, suno) = &tasks[3];
    let types: Vec<String> = all
        .iter()
        .map(body)
        .filter(|b| Product::Suno.callback_task_id(b) == Some(suno.as_str()))
        .map(|b| b["data"]["callbackType"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["text", "first", "complete"]);
    // Market progress posts are not terminal.
    let progress: Vec<Value> = all.iter().filter(|r| r.path == "/progress").map(body).collect();
    assert!(!progress.is_empty());
    assert!(progress
        .iter()
        .all(|b| Product::Market.callback_stage(b) == CallbackStage::Progress));
}

#[tokio::test]
async fn callback_retries_after_one_five_fifteen_minutes_then_stop() {
    let minute = Duration::from_millis(40);
    let fake = FakeProvider::start(FakeOptions {
        minute,
        ..FakeOptions::default()
    })
    .await;
    let sub = Sub::start(std::sync::Arc::new(|_, _| Behaviour::Status(500))).await;
    let id = fake.create(Product::Runway, TaskPlan::success(), Some(&sub.url()));
    fake.wait_until("4 attempts", Duration::from_secs(10), |f| f.callbacks(&id).len() == 4)
        .await;
    let tries = fake.callbacks(&id);
    for (i, want) in [1u32, 5, 15].iter().enumerate() {
        let gap = tries[i + 1].at - tries[i].at;
        assert!(
            gap >= minute * *want,
            "retry {} after {gap:?}, want ≥ {want} minutes",
            i + 1
        );
    }
    assert!(tries.iter().all(|t| t.result == Ok(500)));
    // It gives up: no fifth attempt even after another 25 "minutes".
    tokio::time::sleep(minute * 25).await;
    assert_eq!(fake.callbacks(&id).len(), 4);
    assert_eq!(sub.count(), 4);
}

#[tokio::test]
async fn knobs_lose_delay_repeat_and_forge() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let client = client(&fake);
    let sub = Sub::ok().await;
    let late = Duration::from_millis(600);
    let lost = fake.create(Product::Runway, TaskPlan::success().lose(), Some(&sub.url()));
    let twice = fake.create(Product::Runway, TaskPlan::success().copies(2), Some(&sub.url()));
    let forged_id = fake.create(Product::Runway, TaskPlan::success().manual(), None);
    let mut forged_body = fake.final_callback(&forged_id);
    forged_body["data"]["video_url"] = "https://attacker.example/evil.mp4".into();
    // The forged body names another task's id but is signed for its own task.
    let forger = fake.create(
        Product::Runway,
        TaskPlan::success().forged(forged_body.clone()),
        Some(&sub.url()),
    );
    let delayed = fake.create(Product::Runway, TaskPlan::success().late(late), Some(&sub.url()));
    fake.wait_until("the late callback", Duration::from_secs(10), |f| {
        !f.callbacks(&delayed).is_empty()
    })
    .await;
    assert!(fake.is_finished(&lost));
    assert!(fake.callbacks(&lost).is_empty(), "a lost callback was sent");
    let first_late = &fake.callbacks(&delayed)[0];
    let task = fake.task(&delayed).unwrap();
    assert!(first_late.at >= task.created + task.step * 3 + late);
    fake.wait_until("two copies", Duration::from_secs(5), |f| f.callbacks(&twice).len() == 2)
        .await;
    let copies = fake.callbacks(&twice);
    assert_eq!((copies[0].copy, copies[1].copy), (0, 1));
    assert_eq!(copies[0].body, copies[1].body);
    // The forged body went out with a valid signature for the forger's task id.
    let sent = fake.callbacks(&forger);
    assert!(sent[0].forged && sent[0].body == forged_body);
    assert_eq!(sent[0].signature, fake.sign(&forger, sent[0].timestamp));
    let received = sub
        .wait_for(Duration::from_secs(5), "the forged body", |all| {
            all.iter().any(|r| body(r) == forged_body)
        })
        .await;
    assert!(received
        .iter()
        .any(|r| body(r) == forged_body && header_signature_ok(r, "fake-hmac-key", &forger)));
    // Verification by fetch catches it: the record of the task it names has other URLs.
    fake.set_stage(&forged_id, 3);
    let record = client.record(Product::Runway, &forged_id).await.unwrap();
    assert!(matches!(verify(&forged_body, &record), Verdict::Disagree(m) if m.contains("attacker.example")));
}
