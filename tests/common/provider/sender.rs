//! The fake provider's callback sender: POSTs each callback to the task's
//! URL, signs it when the account has an HMAC key, and on a non-2xx answer,
//! an error or a timeout retries after 1, 5 and 15 (compressed) minutes, then
//! gives up, as the provider documents.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::time::Instant;

use super::{bodies, signature, Shared, Task};

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One callback attempt, as the fake made it.
#[derive(Debug, Clone)]
pub struct SentCallback {
    pub task_id: String,
    /// `text`, `first` (Suno stages), `final`, or `progress` (market).
    pub kind: &'static str,
    /// Which copy of the final callback (0 unless the task sends several).
    pub copy: u32,
    /// 1 for the first try, 2 to 4 for the retries.
    pub attempt: u32,
    pub body: Value,
    /// The body was the plan's forged one, not the genuine callback.
    pub forged: bool,
    pub timestamp: u64,
    pub signature: Option<String>,
    /// The receiver's HTTP status, or why there was none.
    pub result: Result<u16, String>,
    pub at: Instant,
}

impl SentCallback {
    pub fn delivered(&self) -> bool {
        matches!(self.result, Ok(s) if (200..300).contains(&s))
    }
}

fn client(shared: &Shared) -> HttpClient {
    let tls = match &shared.opts.callback_tls {
        Some(cfg) => cfg.clone(),
        None => hookrelay::tls::client_config(None).expect("system roots"),
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}

/// Schedule every callback of `task`.
pub async fn run(shared: Arc<Shared>, task: Task) {
    let client = client(&shared);
    let finish = task.created + task.step * bodies::stages(&task).len() as u32;
    if let Some(url) = task.callback_url.clone() {
        for (idx, kind, body) in bodies::stage_callbacks(&task) {
            let at = task.created + task.step * idx as u32;
            spawn(&shared, &client, &task, url.clone(), kind, body, at, 0, false);
        }
        if !task.plan.knobs.lose {
            let (body, forged) = match &task.plan.knobs.forged {
                Some(f) => (f.clone(), true),
                None => (bodies::final_callback(&task), false),
            };
            let at = finish + task.plan.knobs.delay;
            let copies = task.plan.knobs.copies.max(1);
            let (shared, client, task) = (shared.clone(), client.clone(), task.clone());
            let mut stop = shared.stop.clone();
            tokio::spawn(async move {
                let all = async {
                    for copy in 0..copies {
                        deliver(&shared, &client, &task, &url, "final", &body, at, copy, forged).await;
                    }
                };
                tokio::select! { _ = stop.wait_for(|s| *s) => {}, _ = all => {} }
            });
        }
    }
    if let (Some(url), true) = (
        task.progress_url.clone(),
        task.product == hookrelay::provider::Product::Market,
    ) {
        let at = task.created + task.step * 2;
        spawn(
            &shared,
            &client,
            &task,
            url,
            "progress",
            bodies::progress_callback(&task),
            at,
            0,
            false,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn spawn(
    shared: &Arc<Shared>,
    client: &HttpClient,
    task: &Task,
    url: String,
    kind: &'static str,
    body: Value,
    at: Instant,
    copy: u32,
    forged: bool,
) {
    let (shared, client, task) = (shared.clone(), client.clone(), task.clone());
    let mut stop = shared.stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {}
            _ = deliver(&shared, &client, &task, &url, kind, &body, at, copy, forged) => {}
        }
    });
}

/// Send one callback with the documented retries; stop at the first 2xx.
#[allow(clippy::too_many_arguments)]
async fn deliver(
    shared: &Shared,
    client: &HttpClient,
    task: &Task,
    url: &str,
    kind: &'static str,
    body: &Value,
    at: Instant,
    copy: u32,
    forged: bool,
) {
    tokio::time::sleep_until(at).await;
    let minute = shared.opts.minute;
    let retries = [minute, minute * 5, minute * 15];
    for attempt in 1..=4u32 {
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let signature = shared
            .opts
            .hmac_key
            .as_deref()
            .map(|k| signature(k, &task.id, timestamp));
        let mut req = Request::post(url)
            .header("content-type", "application/json")
            .header("user-agent", "fake-kie-callback/1");
        if let Some(sig) = &signature {
            req = req
                .header("X-Webhook-Timestamp", timestamp.to_string())
                .header("X-Webhook-Signature", sig);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("valid callback request");
        let result = match tokio::time::timeout(shared.opts.callback_timeout, client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp.status().as_u16()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", shared.opts.callback_timeout)),
        };
        let sent = SentCallback {
            task_id: task.id.clone(),
            kind,
            copy,
            attempt,
            body: body.clone(),
            forged,
            timestamp,
            signature,
            result,
            at: Instant::now(),
        };
        let delivered = sent.delivered();
        shared.lock().callbacks.push(sent);
        if delivered {
            return;
        }
        if let Some(wait) = retries.get(attempt as usize - 1) {
            tokio::time::sleep(*wait).await;
        }
    }
}
