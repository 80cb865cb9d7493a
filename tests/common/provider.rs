//! A fake of the provider platform on loopback, for tests: create endpoints
//! that answer a task id, status endpoints in each product's shape with tasks
//! moving through their states over compressed time, the generic download-url
//! endpoint, bearer-key checks, 429 storms, and a callback sender with the
//! documented behaviour (retries after 1, 5 and 15 "minutes", then it gives
//! up) and per-task knobs: lose the final callback, send it late, several
//! times, or a forged body carrying a valid `kie` signature.
//!
//! Use: `FakeProvider::start(FakeOptions::default())`, point the client (or the
//! relay's route) at `fake.url()` with `fake.api_key()`, create tasks through
//! the API (plans queued with `plan_next`) or directly with `create`, then
//! inspect `callbacks(task)` and `status_requests(task)`. Used as
//! `common::provider::…` (its `Outcome` and `Task` are the fake's own).

mod bodies;
mod plan;
mod sender;
mod server;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use hookrelay::provider::Product;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::watch;
use tokio::time::Instant;

pub use plan::{Knobs, Outcome, TaskPlan};
pub use sender::SentCallback;

/// The fake's settings.
#[derive(Clone)]
pub struct FakeOptions {
    pub api_key: String,
    /// The account's webhook HMAC key; callbacks are signed when set.
    pub hmac_key: Option<String>,
    /// One provider "minute" (callback retries wait 1, 5, 15 of them).
    pub minute: Duration,
    /// Default time per stage.
    pub step: Duration,
    /// The provider waits 15 s for a callback answer; compressed here.
    pub callback_timeout: Duration,
    /// Serve HTTPS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Trust for HTTPS callback URLs (default: the system's roots).
    pub callback_tls: Option<rustls::ClientConfig>,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            api_key: "fake-provider-key".into(),
            hmac_key: Some("fake-hmac-key".into()),
            minute: Duration::from_millis(50),
            step: Duration::from_millis(40),
            callback_timeout: Duration::from_secs(2),
            tls: None,
            callback_tls: None,
        }
    }
}

/// One task the fake knows.
#[derive(Debug, Clone)]
pub struct Task {
    pub product: Product,
    pub id: String,
    pub plan: TaskPlan,
    /// The fake's base URL, for result file URLs.
    pub base: String,
    /// The create body as received (Market's `param`, others' `paramJson`).
    pub param: String,
    pub callback_url: Option<String>,
    pub progress_url: Option<String>,
    pub created: Instant,
    pub step: Duration,
    /// Answer 422 "older than 14 days" for its record.
    pub expired: bool,
    /// The stage set by hand, for manual plans.
    pub manual_stage: Option<usize>,
}

impl Task {
    /// The stage index now (`stages.len()` = finished).
    pub fn stage_index(&self, now: Instant) -> usize {
        let n = bodies::stages(self).len();
        if let Some(idx) = self.manual_stage {
            return idx.min(n);
        }
        let elapsed = now.saturating_duration_since(self.created);
        ((elapsed.as_nanos() / self.step.as_nanos().max(1)) as usize).min(n)
    }
}

/// A request the fake's API received.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub task_id: Option<String>,
    /// The HTTP status it was answered with.
    pub status: u16,
    /// The body `code` it was answered with.
    pub code: i64,
    /// The request body (creates, download-url).
    pub body: Option<Value>,
}

#[derive(Default)]
pub(crate) struct State {
    tasks: HashMap<String, Task>,
    order: Vec<String>,
    plans: VecDeque<TaskPlan>,
    default_plan: Option<TaskPlan>,
    storm: u32,
    requests: Vec<ApiRequest>,
    callbacks: Vec<SentCallback>,
    next: u64,
    /// Names under `/files/` whose plain URL answers 403 (expired); the URL
    /// download-url hands out for them (with `fresh=`) still works.
    expired_files: std::collections::HashSet<String>,
    creates_received: usize,
    /// Status lookups held now ([`FakeProvider::hold_status`]).
    status_held: usize,
    /// Records set by hand ([`FakeProvider::set_record`]): task id → product and `data`.
    records: HashMap<String, (Product, Value)>,
}

pub(crate) struct Shared {
    opts: FakeOptions,
    base: String,
    state: Mutex<State>,
    stop: watch::Receiver<bool>,
    /// False while the test holds create requests back ([`FakeProvider::hold_creates`]).
    creates_open: watch::Sender<bool>,
    /// False while the test holds status lookups back ([`FakeProvider::hold_status`]).
    status_open: watch::Sender<bool>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running fake; stops (server and callback senders) when dropped.
pub struct FakeProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl FakeProvider {
    pub async fn start(opts: FakeOptions) -> FakeProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let host = if opts.tls.is_some() { "localhost" } else { "127.0.0.1" };
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            base: format!("{scheme}://{host}:{}", addr.port()),
            opts,
            state: Mutex::new(State::default()),
            stop: stop_rx,
            creates_open: watch::channel(true).0,
            status_open: watch::channel(true).0,
        });
        tokio::spawn(server::serve(listener, shared.clone()));
        FakeProvider { addr, shared, stop }
    }

    /// The base URL to give the client (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.shared.base.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn api_key(&self) -> &str {
        &self.shared.opts.api_key
    }

    /// The plan for the next task created through the API (first in, first out).
    pub fn plan_next(&self, plan: TaskPlan) {
        self.shared.lock().plans.push_back(plan);
    }

    /// Hold create requests (`POST …/generate`) unanswered until
    /// [`release_creates`](Self::release_creates): a provider that is slow to
    /// create a task.
    pub fn hold_creates(&self) {
        self.shared.creates_open.send_replace(false);
    }

    pub fn release_creates(&self) {
        self.shared.creates_open.send_replace(true);
    }

    /// Hold status lookups (`GET …/record-info`) unanswered until
    /// [`release_status`](Self::release_status): a provider slow to answer.
    pub fn hold_status(&self) {
        self.shared.status_open.send_replace(false);
    }

    pub fn release_status(&self) {
        self.shared.status_open.send_replace(true);
    }

    /// Status lookups waiting now (held).
    pub fn status_held(&self) -> usize {
        self.shared.lock().status_held
    }

    /// Create requests received so far (answered or held).
    pub fn create_requests(&self) -> usize {
        self.shared.lock().creates_received
    }

    /// The plan for API-created tasks when none is queued (default: success).
    pub fn set_default_plan(&self, plan: TaskPlan) {
        self.shared.lock().default_plan = Some(plan);
    }

    /// Create a task directly (no HTTP); its callbacks go to `callback_url`.
    pub fn create(&self, product: Product, plan: TaskPlan, callback_url: Option<&str>) -> String {
        let body = serde_json::json!({"prompt": "fake", "callBackUrl": callback_url});
        create_task(&self.shared, product, Some(plan), &body)
    }

    /// Answer the next `n` API requests with HTTP 429.
    pub fn rate_limit(&self, n: u32) {
        self.shared.lock().storm = n;
    }

    /// Make `/files/NAME` answer 403 like an expired signed URL, unless asked
    /// with the query the download-url endpoint adds; the URL to it.
    pub fn expire_file(&self, name: &str) -> String {
        self.shared.lock().expired_files.insert(name.to_string());
        format!("{}/files/{name}", self.shared.base)
    }

    /// Answer the status endpoint of `product` for `task_id` with `data` (a
    /// record set by hand, for a task the fake did not create; set it again
    /// to change it). No callback is sent for it: the test sends its own.
    pub fn set_record(&self, product: Product, task_id: &str, data: Value) {
        self.shared.lock().records.insert(task_id.to_string(), (product, data));
    }

    /// Make the task's record answer 422 "older than 14 days".
    pub fn expire(&self, task_id: &str) {
        if let Some(t) = self.shared.lock().tasks.get_mut(task_id) {
            t.expired = true;
        }
    }

    /// Move a manual task to stage `idx` (`stage_count` = finished).
    pub fn set_stage(&self, task_id: &str, idx: usize) {
        let mut s = self.shared.lock();
        let t = s.tasks.get_mut(task_id).expect("known task");
        assert!(t.manual_stage.is_some(), "set_stage needs a manual plan");
        t.manual_stage = Some(idx);
    }

    /// How many stages the task has before its end.
    pub fn stage_count(&self, task_id: &str) -> usize {
        bodies::stages(&self.task(task_id).expect("known task")).len()
    }

    pub fn task(&self, task_id: &str) -> Option<Task> {
        self.shared.lock().tasks.get(task_id).cloned()
    }

    pub fn task_ids(&self) -> Vec<String> {
        self.shared.lock().order.clone()
    }

    /// Whether the task has reached its end.
    pub fn is_finished(&self, task_id: &str) -> bool {
        let t = self.task(task_id).expect("known task");
        t.stage_index(Instant::now()) >= bodies::stages(&t).len()
    }

    /// The record's `data` as the status endpoint would answer now.
    pub fn record_data(&self, task_id: &str) -> Value {
        let t = self.task(task_id).expect("known task");
        bodies::record(&t, t.stage_index(Instant::now()))
    }

    /// The genuine final callback body for the task.
    pub fn final_callback(&self, task_id: &str) -> Value {
        bodies::final_callback(&self.task(task_id).expect("known task"))
    }

    /// Every callback attempt made so far for the task, in order.
    pub fn callbacks(&self, task_id: &str) -> Vec<SentCallback> {
        self.shared
            .lock()
            .callbacks
            .iter()
            .filter(|c| c.task_id == task_id)
            .cloned()
            .collect()
    }

    pub fn all_callbacks(&self) -> Vec<SentCallback> {
        self.shared.lock().callbacks.clone()
    }

    /// Every API request received, in order.
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many status requests named the task.
    pub fn status_requests(&self, task_id: &str) -> usize {
        let s = self.shared.lock();
        s.requests
            .iter()
            .filter(|r| r.method == "GET" && r.task_id.as_deref() == Some(task_id))
            .count()
    }

    /// The `kie` signature for `task_id` at `timestamp`.
    pub fn sign(&self, task_id: &str, timestamp: u64) -> Option<String> {
        self.shared
            .opts
            .hmac_key
            .as_deref()
            .map(|k| signature(k, task_id, timestamp))
    }

    /// POST `body` to `path` at `addr` with a valid `kie` signature for
    /// `task_id` (made now, as anyone who saw one genuine callback of the
    /// task can replay it: the signature covers only `taskId.timestamp`);
    /// asserts a 200; the event's id.
    pub async fn post_signed(&self, addr: SocketAddr, path: &str, task_id: &str, body: &Value) -> String {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let sig = self.sign(task_id, ts).unwrap();
        let (s, _, b) = super::client::post(
            addr,
            path,
            &[
                ("content-type", "application/json"),
                ("x-webhook-timestamp", &ts.to_string()),
                ("x-webhook-signature", &sig),
            ],
            body.to_string(),
        )
        .await;
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        serde_json::from_slice::<Value>(&b).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Wait until `cond` holds, polling; panics with `what` after `deadline`.
    pub async fn wait_until(&self, what: &str, deadline: Duration, cond: impl Fn(&FakeProvider) -> bool) {
        let end = Instant::now() + deadline;
        while !cond(self) {
            assert!(
                Instant::now() < end,
                "fake provider: timed out after {deadline:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub(crate) fn signature(key: &str, task_id: &str, timestamp: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(format!("{task_id}.{timestamp}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Register a task (plan from the argument, the queue, or the default) and
/// start its callback sender.
pub(crate) fn create_task(shared: &Arc<Shared>, product: Product, plan: Option<TaskPlan>, body: &Value) -> String {
    let str_field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let task = {
        let mut s = shared.lock();
        let plan = plan
            .or_else(|| s.plans.pop_front())
            .or_else(|| s.default_plan.clone())
            .unwrap_or_else(TaskPlan::success);
        s.next += 1;
        let plan_manual = plan.manual;
        let id = format!(
            "{}-{:04}-{:08x}",
            product.preset_name().trim_start_matches("kie-"),
            s.next,
            fastrand::u32(..)
        );
        let task = Task {
            product,
            id: id.clone(),
            step: plan.step.unwrap_or(shared.opts.step),
            plan,
            base: shared.base.clone(),
            param: body.to_string(),
            callback_url: str_field("callBackUrl"),
            progress_url: str_field("progressCallBackUrl"),
            created: Instant::now(),
            expired: false,
            manual_stage: plan_manual.then_some(0),
        };
        s.tasks.insert(id.clone(), task.clone());
        s.order.push(id);
        task
    };
    let id = task.id.clone();
    if task.manual_stage.is_none() {
        tokio::spawn(sender::run(shared.clone(), task));
    }
    id
}
