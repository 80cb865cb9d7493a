//! The validated configuration the daemon runs with: typed values (addresses,
//! durations, networks, secrets, retry schedules), every one checked. A
//! route's subscribers are in `values/subscriber.rs`.

mod subscriber;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use serde::Deserialize;

use crate::auth::Secret;
use crate::delivery::retry::RetrySchedule;
use crate::media::MediaPointer;
use crate::preset::Preset;
use crate::tls::TlsFiles;

pub use subscriber::*;

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from (for messages and reloads).
    pub file: PathBuf,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub media: MediaConfig,
    pub routes: Vec<Route>,
    /// Settings that work but are probably not what was meant (shown by
    /// `check-config`, logged at start and reload), each naming file and key.
    pub warnings: Vec<String>,
}

impl Config {
    /// Every configured subscriber, route by route.
    pub fn subscribers(&self) -> impl Iterator<Item = &Subscriber> {
        self.routes.iter().flat_map(|r| r.subscribers.iter())
    }

    /// Whether any route archives media (names result URLs to keep).
    pub fn archives_media(&self) -> bool {
        self.routes.iter().any(|r| !r.media.is_empty())
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    /// Where the public listeners' certificate comes from; `None`: plain HTTP.
    pub tls: Option<TlsSource>,
    pub max_body: usize,
    /// The memory all request bodies being received may hold together.
    pub max_body_memory: usize,
    /// Bounds every phase that waits for the client: TLS handshake, protocol
    /// detection, a request's header, its body.
    pub read_timeout: Duration,
    /// How long a keep-alive connection (HTTP/1.1 or HTTP/2) may sit with no
    /// request in flight before it is closed.
    pub idle_timeout: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub max_connections: usize,
    pub http2_max_streams: u32,
    /// How long a shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// How providers reach this relay, without a trailing `/`: the submit
    /// proxy's `callBackUrl` is this plus the route's path.
    pub public_url: Option<String>,
}

/// The public listeners' certificate: files (reloaded on SIGHUP) or ACME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    Files(TlsFiles),
    Acme(AcmeSettings),
}

impl TlsSource {
    /// `file` or `acme`: the metric label and the status API's `tls` field.
    pub fn kind(&self) -> &'static str {
        match self {
            TlsSource::Files(_) => "file",
            TlsSource::Acme(_) => "acme",
        }
    }
}

/// Certificates from an ACME CA instead of files (see `crate::acme`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// DNS names of the certificate, lowercase, each validated by TLS-ALPN-01.
    pub domains: Vec<String>,
    /// Account contact (the CA's expiry and policy mail), without `mailto:`.
    pub email: String,
    /// The CA's directory URL (https): which CA, and which account there.
    pub directory: String,
    /// Extra trust anchors for the directory's own HTTPS (a private or test CA).
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub retention: Duration,
    pub cache_bytes: u64,
    /// Ingest answers 503 while the store's disk has less free space than this.
    pub min_free: u64,
    /// zstd compression of stored rows; fixed when the store is created.
    pub compression: bool,
    /// Where events live: the embedded store, or a NATS JetStream cluster.
    pub backend: StoreBackend,
}

/// The store's engine.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreBackend {
    /// sled in `store.path` (one host).
    Sled,
    /// NATS JetStream (several relays share it).
    Nats(NatsConfig),
}

/// How to reach the JetStream cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsConfig {
    /// `nats://host:port` or `tls://host:port`, every node.
    pub servers: Vec<String>,
    pub auth: NatsAuth,
    /// Trust this CA for TLS to NATS (TLS is then required).
    pub ca_file: Option<PathBuf>,
    /// Copies of every stream and bucket (1, 3 or 5).
    pub replicas: usize,
    /// How long after a relay stops (dies, loses NATS) the deliveries it
    /// held go to another relay (JetStream's ack wait; a live relay renews it).
    pub takeover: std::time::Duration,
}

/// How the relay authenticates to NATS.
#[derive(Debug, Clone, PartialEq)]
pub enum NatsAuth {
    None,
    /// The contents of a `.creds` file (JWT and nkey seed).
    Credentials(Secret),
    Token(Secret),
    UserPassword {
        user: String,
        password: Secret,
    },
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human format on a terminal, journald-friendly (no timestamps, no colour) otherwise.
    #[default]
    Auto,
    Human,
    Json,
}

/// One public callback path.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path: String,
    /// Accepted tokens (several during a rotation). Empty: no token needed.
    pub tokens: Vec<Secret>,
    /// The tokens' SHA-256 digests, computed when the config is loaded (a
    /// reload loads it again), compared with a request's in constant time.
    pub token_digests: Vec<crate::auth::TokenDigest>,
    /// Empty: every source allowed.
    pub allow_ips: Vec<IpNet>,
    /// Deliberately open to anyone (`allow_anyone = true`): no token,
    /// signature or narrower `allow_ips`.
    pub allow_anyone: bool,
    /// How callbacks are keyed for dedupe: the route's JSON pointers, its
    /// preset's task id and outcome, or SHA-256 of the body.
    pub dedupe_key: crate::dedupe::DedupeKey,
    pub signature: Option<Signature>,
    /// The provider preset the route started from, if any.
    pub preset: Option<Preset>,
    /// What the preset set and what explicit keys replaced, one line each,
    /// for `check-config` (empty without a preset).
    pub preset_report: Vec<String>,
    /// Where the task id is, tried in order (the `kie` signature, expected
    /// tasks); empty: the platform's usual places.
    pub task_id: Vec<String>,
    /// Where the callback names result files to archive; empty: no archiving.
    pub media: Vec<MediaPointer>,
    /// The platform's API key: refreshes expired media URLs (and, later,
    /// reconciles tasks).
    pub provider: Option<ProviderKey>,
    /// The body must be JSON (400 otherwise).
    pub json: bool,
    /// Poll expected tasks whose terminal callback did not come in time.
    pub reconcile: Option<Reconcile>,
    /// Confirm callbacks against the provider's record before fan-out.
    pub verify: Verify,
    pub subscribers: Vec<Subscriber>,
}

impl Route {
    /// Whether a callback `other` took would be taken and stored the same
    /// way by this route, whatever its name, path and subscribers: the same
    /// checks (tokens, sources, signature, JSON), dedupe key, task marks,
    /// media and verification. Ingest stores a callback on the route that
    /// replaced its own during a reload only then.
    pub fn takes_callbacks_like(&self, other: &Route) -> bool {
        self.token_digests == other.token_digests
            && self.allow_ips == other.allow_ips
            && self.allow_anyone == other.allow_anyone
            && self.signature == other.signature
            && self.json == other.json
            && self.dedupe_key == other.dedupe_key
            && self.preset == other.preset
            && self.task_id == other.task_id
            && self.media == other.media
            && self.verify == other.verify
            && self.reconcile == other.reconcile
    }

    /// The provider product the route's preset names (status endpoint, poll
    /// mapping); None without a preset.
    pub fn product(&self) -> Option<crate::provider::Product> {
        self.preset
            .and_then(|p| crate::provider::Product::from_preset_name(p.name))
    }
}

/// `reconcile = { after, every, give_up }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconcile {
    /// How long after registration a task without a terminal callback is
    /// first polled (the provider's own callback retries get their chance).
    pub after: Duration,
    /// Between polls of one task (jittered ±20 %, and longer after 429/5xx).
    pub every: Duration,
    /// Counted from registration: a task still unfinished then is given up.
    pub give_up: Duration,
}

/// `verify`: whether a callback is checked against the provider's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// Trust the callback (after its token and signature checks).
    #[default]
    Off,
    /// Look the task up at the provider before fan-out; a disagreement is held.
    Fetch,
}

/// A route's key for the provider platform's API.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderKey {
    pub api_key: Secret,
    /// `https://api.kie.ai` unless the route says otherwise (http only to loopback).
    pub base_url: String,
}

impl fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderKey")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// `[media]`: where archived files go and how they are downloaded.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub store: MediaStoreConfig,
    /// `media.store` was written (not the default under `store.path`).
    pub store_given: bool,
    /// Per file; a larger download is cut off and marked failed.
    pub max_size: u64,
    /// Per download: every redirect hop, headers and body.
    pub timeout: Duration,
    /// Downloads in flight.
    pub concurrency: usize,
    pub retry: RetrySchedule,
    /// Fetch URLs that resolve to loopback, private, link-local or multicast addresses.
    pub allow_private: bool,
    /// Non-public networks reachable even without `allow_private` (one
    /// internal file server, say); every other non-public address stays refused.
    pub allow_networks: Vec<IpNet>,
    /// Stored files (and the records of failed ones) are removed this long after they were archived.
    pub retention: Duration,
    /// Downloads stop before the media disk has less free space than this.
    pub min_free: u64,
    /// Extra trust anchors for https media servers and the S3 endpoint.
    pub ca_file: Option<PathBuf>,
}

/// Where archived files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaStoreConfig {
    /// A directory (absolute once validated).
    Local(PathBuf),
    S3(S3Config),
}

/// An S3-compatible bucket. `Debug` shows no key: `Secret` redacts itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket must exist; the relay never creates buckets.
    pub bucket: String,
    /// `http(s)://host:port` of an S3-compatible server; AWS when unset.
    pub endpoint: Option<String>,
    /// Signing region (SigV4 signs with it even on non-AWS servers).
    pub region: String,
    /// Key id; a secret like the key itself (read from any secret source).
    pub access_key: Secret,
    pub secret_key: Secret,
    /// Key prefix, e.g. `hookrelay/`, so one bucket can hold other data.
    pub prefix: String,
}

/// A provider signature the route requires.
#[derive(Debug, Clone, PartialEq)]
pub enum Signature {
    /// HMAC-SHA256(secret, taskId + "." + timestamp), base64, in `X-Webhook-Signature`.
    Kie {
        secret: Secret,
        /// Where the task id is, tried in order; empty: the platform's usual places.
        task_id: Vec<String>,
        tolerance: Duration,
    },
    /// Standard Webhooks: HMAC-SHA256(base64-decoded whsec_ key, id.ts.body);
    /// several keys during a rotation, any one may sign.
    StandardWebhooks { keys: Vec<Secret>, tolerance: Duration },
    /// HMAC-SHA256 over the raw body in a configurable header.
    HmacSha256 {
        secret: Secret,
        header: HeaderName,
        encoding: Encoding,
        prefix: String,
    },
}

impl Signature {
    pub fn scheme_name(&self) -> &'static str {
        match self {
            Signature::Kie { .. } => "kie",
            Signature::StandardWebhooks { .. } => "standard-webhooks",
            Signature::HmacSha256 { .. } => "hmac-sha256",
        }
    }
}

/// How a raw-body HMAC is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}
