//! How a route and its subscribers are written in the config file, as typed
//! builders (`Route`, `Subscriber`, `Signature`, `Provider`, `Secret`) that `TestConfig`
//! serialises. Holds no defaults of its own: unset keys are left out, so the
//! daemon's defaults apply.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::config::dur;

/// A secret as the config file takes it: inline or from a file, an environment
/// variable or a systemd credential.
#[derive(Clone, Serialize)]
#[serde(untagged)]
pub enum Secret {
    Inline(String),
    File { file: PathBuf },
    Env { env: String },
    Credential { credential: String },
}

impl Secret {
    pub fn file(path: &Path) -> Secret {
        Secret::File { file: path.into() }
    }
    pub fn env(var: &str) -> Secret {
        Secret::Env { env: var.into() }
    }
    pub fn credential(name: &str) -> Secret {
        Secret::Credential {
            credential: name.into(),
        }
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret::Inline(s.into())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret::Inline(s)
    }
}

/// A route's provider signature (`signature = { scheme = … }`).
#[derive(Clone, Serialize)]
#[serde(tag = "scheme", rename_all = "kebab-case")]
pub enum Signature {
    Kie {
        secret: Secret,
        /// The route's own pointer to the task id.
        #[serde(skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
    },
    StandardWebhooks {
        secret: Secret,
    },
    HmacSha256 {
        secret: Secret,
        header: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
    },
}

impl Signature {
    pub fn kie(secret: impl Into<Secret>) -> Signature {
        Signature::Kie {
            secret: secret.into(),
            task_id: None,
        }
    }
    /// `kie` with the task id read at `pointer` (`signature.task_id`).
    pub fn kie_at(secret: impl Into<Secret>, pointer: &str) -> Signature {
        Signature::Kie {
            secret: secret.into(),
            task_id: Some(pointer.into()),
        }
    }
    pub fn standard_webhooks(secret: impl Into<Secret>) -> Signature {
        Signature::StandardWebhooks { secret: secret.into() }
    }
    /// HMAC-SHA256 of the raw body in `header`, hex, after `prefix`.
    pub fn hmac_sha256(secret: impl Into<Secret>, header: &str, prefix: Option<&str>) -> Signature {
        Signature::HmacSha256 {
            secret: secret.into(),
            header: header.into(),
            prefix: prefix.map(Into::into),
        }
    }
}

/// `pull = { token, lease }`: the subscriber's forwarder fetches its messages.
#[derive(Clone, Serialize)]
struct Pull {
    token: Secret,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease: Option<String>,
}

/// One `[[routes.subscribers]]` table; unset keys take the daemon's defaults.
#[derive(Clone, Serialize)]
pub struct Subscriber {
    name: String,
    /// Push: the daemon POSTs here. Exactly one of `url` and `pull` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pull: Option<Pull>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    secret: Vec<Secret>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, Secret>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    filter: BTreeMap<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    circuit_threshold: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_retry_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after_archive: Option<bool>,
}

impl Subscriber {
    /// A push subscriber: deliveries are POSTed to `url`.
    pub fn new(name: &str, url: impl Into<String>) -> Subscriber {
        Self::with_endpoint(name, Some(url.into()), None)
    }
    /// A pull subscriber: its forwarder fetches with `token` (lease: the daemon's default).
    pub fn pull(name: &str, token: impl Into<Secret>) -> Subscriber {
        let pull = Pull {
            token: token.into(),
            lease: None,
        };
        Self::with_endpoint(name, None, Some(pull))
    }
    fn with_endpoint(name: &str, url: Option<String>, pull: Option<Pull>) -> Subscriber {
        Subscriber {
            name: name.into(),
            url,
            pull,
            secret: vec![],
            headers: BTreeMap::new(),
            filter: BTreeMap::new(),
            retry: None,
            timeout: None,
            concurrency: None,
            rate: None,
            circuit_threshold: None,
            max_retry_after: None,
            ca_file: None,
            after_archive: None,
        }
    }
    /// `pull.lease`: how long a forwarder holds a message before it is offered again.
    pub fn lease(mut self, d: Duration) -> Self {
        self.pull
            .as_mut()
            .expect("lease is a pull subscriber's setting (Subscriber::pull)")
            .lease = Some(dur(d));
        self
    }
    /// The Standard Webhooks signing secret; call again to add a rotation key.
    pub fn secret(mut self, s: impl Into<Secret>) -> Self {
        self.secret.push(s.into());
        self
    }
    pub fn header(mut self, name: &str, value: impl Into<Secret>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
    /// Deliver only events whose JSON `pointer` equals `value`.
    pub fn filter(mut self, pointer: &str, value: serde_json::Value) -> Self {
        self.filter.insert(pointer.into(), value);
        self
    }
    pub fn retry(mut self, steps: impl IntoIterator<Item = Duration>) -> Self {
        self.retry = Some(steps.into_iter().map(dur).collect());
        self
    }
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(dur(d));
        self
    }
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n);
        self
    }
    /// At most `n` deliveries per second.
    pub fn rate_per_second(self, n: u32) -> Self {
        self.rate(&format!("{n}/s"))
    }
    /// `rate` as written (`"6/m"`, `"1/h"`).
    pub fn rate(mut self, rate: &str) -> Self {
        self.rate = Some(rate.to_string());
        self
    }
    pub fn circuit_threshold(mut self, n: u32) -> Self {
        self.circuit_threshold = Some(n);
        self
    }
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = Some(dur(d));
        self
    }
    pub fn ca_file(mut self, path: &Path) -> Self {
        self.ca_file = Some(path.into());
        self
    }
    /// `after_archive = true`: delivered once the event's media is archived.
    pub fn after_archive(mut self) -> Self {
        self.after_archive = Some(true);
        self
    }
}

/// `provider = { api_key, base_url }`: the platform's API key, to refresh
/// expired media URLs (the fake provider's `url()` as `base_url`).
#[derive(Clone, Serialize)]
pub struct Provider {
    api_key: Secret,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_url: Option<String>,
}

impl Provider {
    pub fn new(api_key: impl Into<Secret>, base_url: &str) -> Provider {
        Provider {
            api_key: api_key.into(),
            base_url: Some(base_url.into()),
        }
    }
}

/// `reconcile = { after, every, give_up }`: poll expected tasks whose callback did not come.
#[derive(Clone, Serialize)]
pub struct Reconcile {
    after: String,
    every: String,
    give_up: String,
}

impl Reconcile {
    pub fn new(after: Duration, every: Duration, give_up: Duration) -> Reconcile {
        Reconcile {
            after: dur(after),
            every: dur(every),
            give_up: dur(give_up),
        }
    }
}

/// One `[[routes]]` table.
#[derive(Clone, Serialize)]
pub struct Route {
    /// Read by `TestConfig::edit_route` to find the route to change.
    pub(super) name: String,
    path: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tokens: Vec<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_ips: Option<Vec<String>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    allow_anyone: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    dedupe_key: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<Signature>,
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    media: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<Provider>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reconcile: Option<Reconcile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify: Option<String>,
    subscribers: Vec<Subscriber>,
}

impl Route {
    /// A route with no token, allowlist or signature yet (the daemon refuses
    /// it as it is: add one, or [`Route::allow_anyone`]).
    pub fn new(name: &str, path: &str) -> Route {
        Route {
            name: name.into(),
            path: path.into(),
            tokens: vec![],
            allow_ips: None,
            allow_anyone: false,
            dedupe_key: None,
            signature: None,
            json: None,
            preset: None,
            media: None,
            provider: None,
            reconcile: None,
            verify: None,
            subscribers: vec![],
        }
    }
    pub fn path(mut self, path: &str) -> Self {
        self.path = path.into();
        self
    }
    /// `allow_anyone = true`: deliberately open to anyone.
    pub fn allow_anyone(mut self) -> Self {
        self.allow_anyone = true;
        self
    }
    /// Replaces the route's tokens (several during a rotation).
    pub fn tokens<S: Into<Secret>>(mut self, tokens: impl IntoIterator<Item = S>) -> Self {
        self.tokens = tokens.into_iter().map(Into::into).collect();
        self
    }
    /// CIDRs as written in the file (so a test can write a bad one).
    pub fn allow_ips<'a>(mut self, nets: impl IntoIterator<Item = &'a str>) -> Self {
        self.allow_ips = Some(nets.into_iter().map(Into::into).collect());
        self
    }
    pub fn dedupe_key<'a>(mut self, pointers: impl IntoIterator<Item = &'a str>) -> Self {
        self.dedupe_key = Some(pointers.into_iter().map(Into::into).collect());
        self
    }
    pub fn signature(mut self, s: Signature) -> Self {
        self.signature = Some(s);
        self
    }
    pub fn json(mut self, json: bool) -> Self {
        self.json = Some(json);
        self
    }
    /// `preset = "kie-runway"`, …: the product's dedupe key, task id and media pointers.
    pub fn preset(mut self, name: &str) -> Self {
        self.preset = Some(name.into());
        self
    }
    /// `media = [...]`: JSON pointers of the files to archive.
    pub fn media<'a>(mut self, pointers: impl IntoIterator<Item = &'a str>) -> Self {
        self.media = Some(pointers.into_iter().map(Into::into).collect());
        self
    }
    pub fn provider(mut self, p: Provider) -> Self {
        self.provider = Some(p);
        self
    }
    pub fn subscriber(mut self, s: Subscriber) -> Self {
        self.subscribers.push(s);
        self
    }
    pub fn reconcile(mut self, r: Reconcile) -> Self {
        self.reconcile = Some(r);
        self
    }
    pub fn without_reconcile(mut self) -> Self {
        self.reconcile = None;
        self
    }
    /// `verify = "fetch"` (or a bad value, to test its error).
    pub fn verify(mut self, mode: &str) -> Self {
        self.verify = Some(mode.into());
        self
    }
}
