//! The provider's HTTP API, as one client per API key: status records,
//! create calls (for the submit proxy) and the generic download-url refresh.
//!
//! Owns: the key (a bearer header, never in logs, errors or `Debug`), the TLS
//! client (rustls with ring, system roots plus an optional CA), timeouts, the
//! answer envelope, the per-key pause after 429/455 and request pacing.
//! Does not own: what a record means ([`super::product`], [`super::record`]),
//! retry scheduling (callers get an [`Action`] with a back-off hint).

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;

use super::limits::Limits;
use super::loose::{first_str, int_at};
use super::outcome::{clip, read_answer, Action, BackoffPolicy, ErrorKind, Fault, ProviderError};
use super::product::{Product, Rate, ACCOUNT_CREATE_LIMIT, MARKET_PER_KEY, PER_TASK_3_PER_S};
use super::record::Record;
pub use super::transport::ApiKey;
use super::transport::{retry_after, Answer, NoAnswer, Transport};

pub const DEFAULT_BASE_URL: &str = "https://api.kie.ai";

/// How to reach the provider and how hard to push it.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://api.kie.ai` unless a route overrides it (tests: a loopback fake).
    pub base_url: String,
    pub api_key: ApiKey,
    /// Whole request, connect to last body byte.
    pub timeout: Duration,
    /// Connection set-up alone, so an unreachable host fails fast.
    pub connect_timeout: Duration,
    /// Extra trust anchors (PEM) for a provider or proxy with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Status and download-url calls per key (Market documents 10/s; the others
    /// document nothing, so the same ceiling is applied to all).
    pub per_key: Rate,
    /// Status calls per task where the product documents none (Suno and 4o
    /// document 3/s; the same is assumed elsewhere).
    pub per_task_default: Rate,
    /// Create calls per account (20 per 10 s).
    pub create: Rate,
    /// How long a call may wait for its turn before it returns `LocalLimit`.
    pub max_pacing_wait: Duration,
    pub backoff: BackoffPolicy,
}

impl ClientConfig {
    pub fn new(base_url: impl Into<String>, api_key: ApiKey) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into(),
            api_key,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            ca_file: None,
            per_key: MARKET_PER_KEY,
            per_task_default: PER_TASK_3_PER_S,
            create: ACCOUNT_CREATE_LIMIT,
            max_pacing_wait: Duration::from_secs(5),
            backoff: BackoffPolicy::default(),
        }
    }
}

/// The provider's answer to a create call, untouched, plus the task id in it.
#[derive(Debug, Clone)]
pub struct SubmitAnswer {
    pub http_status: StatusCode,
    pub content_type: Option<HeaderValue>,
    /// The answer bytes exactly as the provider sent them.
    pub body: Bytes,
    /// The body `code`, when the answer is the provider's envelope.
    pub code: Option<i64>,
    /// `data.taskId` (or `data.task_id`) of an accepted (code 200) create.
    pub task_id: Option<String>,
}

/// A create call ready to go: its body with `callBackUrl`, its turn in the
/// key's create pacing taken.
#[derive(Debug)]
pub struct CreateCall {
    endpoint_path: String,
    body: Bytes,
}

/// Back-off state shared by every call made with the key.
#[derive(Debug, Default)]
struct Health {
    /// Consecutive retryable failures: the exponent of the next back-off.
    consecutive: u32,
    /// After a 429 or 455 no status call is sent before this instant.
    paused_until: Option<(Instant, ErrorKind)>,
}

struct Inner {
    transport: Transport,
    cfg: ClientConfig,
    limits: Limits,
    health: Mutex<Health>,
    /// The calls the provider refused for the key or account (401, 402,
    /// 505): which of them the reconciler logs at `error`.
    refused: crate::failure_log::FailureLog,
}

/// A client for one API key; cheap to clone, safe to share.
#[derive(Clone)]
pub struct ProviderClient {
    inner: Arc<Inner>,
}

impl ProviderClient {
    /// The calls refused for the key or account (see [`crate::failure_log`]):
    /// shared by every route and task that uses the key.
    pub fn refusals(&self) -> &crate::failure_log::FailureLog {
        &self.inner.refused
    }
}

impl fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderClient")
            .field("base_url", &self.inner.transport.base)
            .field("api_key", &"<redacted>")
            .field("timeout", &self.inner.cfg.timeout)
            .finish()
    }
}

impl ProviderClient {
    pub fn new(cfg: ClientConfig) -> anyhow::Result<ProviderClient> {
        let transport = Transport::new(
            &cfg.base_url,
            &cfg.api_key,
            cfg.timeout,
            cfg.connect_timeout,
            cfg.ca_file.as_deref(),
        )?;
        let limits = Limits::new(cfg.per_key, cfg.create, cfg.per_task_default);
        Ok(ProviderClient {
            inner: Arc::new(Inner {
                transport,
                cfg,
                limits,
                health: Mutex::new(Health::default()),
                refused: Default::default(),
            }),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.inner.transport.base
    }

    /// Whether this is the client for `key` at `base_url` (as configured).
    pub fn serves(&self, base_url: &str, key: &ApiKey) -> bool {
        self.inner.cfg.base_url == base_url && self.inner.cfg.api_key.same(key)
    }

    /// The task's status record (`GET <status endpoint>?taskId=`).
    pub async fn record(&self, product: Product, task_id: &str) -> Result<Record, ProviderError> {
        let call = format!("GET {}", product.status_path());
        if !super::create::usable_task_id(task_id) {
            return Err(invalid(
                call,
                "task id is empty, over 256 bytes or holds control characters",
            ));
        }
        self.check_pause(&call)?;
        let budget = self.inner.cfg.max_pacing_wait;
        if let Err(wait) = self.inner.limits.status(product, task_id, budget).await {
            return Err(local_limit(call, wait));
        }
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("taskId", task_id)
            .finish();
        let path = format!("{}?{query}", product.status_path());
        let answer = self.inner.transport.send(Method::GET, &path, None).await;
        let data = self.envelope(&call, answer)?;
        let record = Record::from_data(product, task_id, data)
            .map_err(|e| self.failed(&call, Fault::new(ErrorKind::BadAnswer, e.to_string())))?;
        tracing::debug!(product = %product, task_id, state = record.state(), stage = record.stage().as_str(), "provider record");
        Ok(record)
    }

    /// Ready a create call: `body` (a JSON object) gets `callBackUrl` set,
    /// and the key's create pacing gives it its turn (waited for here, so a
    /// caller that goes away meanwhile sends nothing). [`Self::send_create`]
    /// sends it.
    pub async fn create_call(
        &self,
        endpoint_path: &str,
        body: &[u8],
        callback_url: &str,
    ) -> Result<CreateCall, ProviderError> {
        let call = format!("POST {endpoint_path}");
        check_endpoint_path(endpoint_path).map_err(|m| invalid(call.clone(), m))?;
        let bytes = super::create::with_callback(body, callback_url).map_err(|m| invalid(call.clone(), &m))?;
        if let Err(wait) = self.inner.limits.create(self.inner.cfg.max_pacing_wait).await {
            return Err(local_limit(call, wait));
        }
        Ok(CreateCall {
            endpoint_path: endpoint_path.to_string(),
            body: Bytes::from(bytes),
        })
    }

    /// [`Self::create_call`], then [`Self::send_create`]: one create call.
    pub async fn submit(
        &self,
        endpoint_path: &str,
        body: &[u8],
        callback_url: &str,
    ) -> Result<SubmitAnswer, ProviderError> {
        let call = self.create_call(endpoint_path, body, callback_url).await?;
        self.send_create(call).await
    }

    /// POST a create call readied by [`Self::create_call`]; the answer comes
    /// back unchanged.
    pub async fn send_create(&self, c: CreateCall) -> Result<SubmitAnswer, ProviderError> {
        let (endpoint_path, bytes) = (c.endpoint_path.as_str(), c.body);
        let call = format!("POST {endpoint_path}");
        let answer = match self
            .inner
            .transport
            .send(Method::POST, endpoint_path, Some(bytes))
            .await
        {
            Ok(a) => a,
            Err(NoAnswer::Connect(m)) => return Err(self.failed(&call, Fault::new(ErrorKind::Network, m))),
            // The request may have reached the provider and started a task.
            Err(NoAnswer::Failed(m)) => return Err(self.failed(&call, Fault::new(ErrorKind::OutcomeUnknown, m))),
            Err(NoAnswer::Timeout) => return Err(self.failed(&call, self.timeout_fault(ErrorKind::OutcomeUnknown))),
        };
        let parsed: Option<Value> = serde_json::from_slice(&answer.body).ok();
        let code = parsed.as_ref().and_then(|v| int_at(v, "/code"));
        let task_id = parsed
            .as_ref()
            .filter(|_| code == Some(200))
            .and_then(super::create::created_task_id);
        tracing::debug!(call, status = answer.status.as_u16(), code, task_id, "provider create");
        Ok(SubmitAnswer {
            http_status: answer.status,
            content_type: answer.headers.get(CONTENT_TYPE).cloned(),
            body: self.inner.cfg.api_key.redact_bytes(answer.body),
            code,
            task_id,
        })
    }

    /// A fresh temporary URL (valid ~20 min) for a kie-generated file URL.
    pub async fn download_url(&self, url: &str) -> Result<String, ProviderError> {
        let call = "POST /api/v1/common/download-url".to_string();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(invalid(call, "the URL to refresh is not an http(s) URL"));
        }
        self.check_pause(&call)?;
        if let Err(wait) = self.inner.limits.key(self.inner.cfg.max_pacing_wait).await {
            return Err(local_limit(call, wait));
        }
        let body = Bytes::from(serde_json::to_vec(&serde_json::json!({ "url": url })).expect("serialises"));
        let answer = self
            .inner
            .transport
            .send(Method::POST, "/api/v1/common/download-url", Some(body))
            .await;
        let data = self.envelope(&call, answer)?;
        let fresh = match &data {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            // The 4o quickstart reads `data.downloadUrl`; accept an object too.
            _ => first_str(&data, &["/downloadUrl", "/url"]).map(str::to_string),
        };
        fresh.ok_or_else(|| self.failed(&call, Fault::new(ErrorKind::BadAnswer, "no URL in the answer's data")))
    }

    /// The envelope's `data` for a body code of 200; otherwise the error.
    fn envelope(&self, call: &str, answer: Result<Answer, NoAnswer>) -> Result<Value, ProviderError> {
        let answer = match answer {
            Ok(a) => a,
            Err(NoAnswer::Connect(m) | NoAnswer::Failed(m)) => {
                return Err(self.failed(call, Fault::new(ErrorKind::Network, m)))
            }
            Err(NoAnswer::Timeout) => return Err(self.failed(call, self.timeout_fault(ErrorKind::Timeout))),
        };
        match read_answer(answer.status.as_u16(), retry_after(&answer.headers), &answer.body) {
            Ok(data) => {
                self.succeeded();
                Ok(data)
            }
            Err(fault) => Err(self.failed(call, fault)),
        }
    }

    fn timeout_fault(&self, kind: ErrorKind) -> Fault {
        let limit = humantime::format_duration(self.inner.transport.timeout());
        Fault::new(kind, format!("no answer within {limit}"))
    }

    fn succeeded(&self) {
        self.inner.health.lock().unwrap_or_else(|e| e.into_inner()).consecutive = 0;
    }

    /// Build the error for a failed call and update the key's back-off state.
    fn failed(&self, call: &str, fault: Fault) -> ProviderError {
        let Fault {
            kind,
            code,
            http_status,
            message,
            hint,
        } = fault;
        let policy = &self.inner.cfg.backoff;
        let mut health = self.inner.health.lock().unwrap_or_else(|e| e.into_inner());
        let action = if kind == ErrorKind::NotReady {
            // An answer about one task (its record is not a success yet), not
            // of the provider's health: it ends the key's run of failures,
            // and is asked again at the usual pace, not later each time.
            health.consecutive = 0;
            Action::RetryLater {
                after: policy.transient.base,
            }
        } else if kind.is_retryable() {
            health.consecutive = health.consecutive.saturating_add(1);
            let mut after = policy.delay(kind, health.consecutive).unwrap_or(policy.transient.base);
            if let Some(hint) = hint {
                after = after.max(hint.min(policy.max_retry_after));
            }
            if matches!(kind, ErrorKind::RateLimited | ErrorKind::Maintenance) {
                let until = Instant::now() + after;
                if health.paused_until.is_none_or(|(u, _)| u < until) {
                    health.paused_until = Some((until, kind));
                }
            }
            Action::RetryLater { after }
        } else {
            // A definite answer: the provider itself is fine.
            health.consecutive = 0;
            Action::GiveUp
        };
        drop(health);
        let err = ProviderError {
            kind,
            action,
            code,
            http_status,
            call: call.to_string(),
            message: clip(&self.hidden(&message)),
        };
        tracing::debug!(error = %err, "provider call failed");
        err
    }

    /// A provider's error text as a task's `last_error`, a log line and an
    /// admin API answer show it: a URL it quotes (a signed one: its query is
    /// a credential) without its query; then the key, as sent or encoded (a
    /// `<redacted>` would end a URL early); then a route token it quotes in
    /// the callback URL the submit proxy gave it, percent-encoded in a page
    /// (`%3Ftoken%3D…`: shown whole before; observability review, stop 62).
    fn hidden(&self, message: &str) -> String {
        let key = &self.inner.cfg.api_key;
        let text = key.redact(&crate::media::shown::urls_shown(message));
        let text = crate::auth::hide_token_params(key.redact_bytes(Bytes::from(text)));
        String::from_utf8_lossy(&text).into_owned()
    }

    /// Refuse, without sending, while the key is paused after a 429 or 455.
    fn check_pause(&self, call: &str) -> Result<(), ProviderError> {
        let health = self.inner.health.lock().unwrap_or_else(|e| e.into_inner());
        match health.paused_until {
            Some((until, kind)) if until > Instant::now() => Err(ProviderError {
                kind,
                action: Action::RetryLater {
                    after: until - Instant::now(),
                },
                code: None,
                http_status: None,
                call: call.to_string(),
                message: "the key is paused after the provider's last answer".into(),
            }),
            _ => Ok(()),
        }
    }
}

fn invalid(call: String, message: &str) -> ProviderError {
    ProviderError {
        kind: ErrorKind::InvalidInput,
        action: Action::GiveUp,
        code: None,
        http_status: None,
        call,
        message: message.into(),
    }
}

fn local_limit(call: String, wait: Duration) -> ProviderError {
    ProviderError {
        kind: ErrorKind::LocalLimit,
        action: Action::RetryLater { after: wait },
        code: None,
        http_status: None,
        call,
        message: "pacing for this key or task".into(),
    }
}

/// A create endpoint is a plain path under `/api/`: it is appended to the
/// base URL, so it must not be able to point anywhere else.
fn check_endpoint_path(path: &str) -> Result<(), &'static str> {
    let ok_chars = path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-.".contains(&b));
    if !path.starts_with("/api/") || !ok_chars || path.contains("//") || path.split('/').any(|s| s == ".." || s == ".")
    {
        return Err("endpoint must be a plain path under /api/ (letters, digits, / _ - .)");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
