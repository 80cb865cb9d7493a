//! The config file as written: serde structures (`deny_unknown_fields`), with
//! every default in one place — the `Default` impls below. Subscriber settings
//! that are left out inherit `[delivery]`, so they stay `Option` here.
//! [`super::validate`] turns these into the typed [`super::values`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::secret::{SecretList, SecretSource};
use super::units::{Cidr, Dur, Rate, Size};
use super::values::{Encoding, LogFormat};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub media: RawMedia,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub listen: Vec<Spanned<String>>,
    /// Not `Spanned`: TOML gives no position to a table only implied by a
    /// sub-table's header (`[server.tls.acme]`) or by dotted keys
    /// (`tls.cert = …`), and `Spanned` refuses such a table.
    pub tls: Option<RawTls>,
    pub max_body: Size,
    /// Memory of all bodies being received together; unset: the larger of
    /// 128 MiB and 4 × `max_body`.
    pub max_body_memory: Option<Size>,
    pub read_timeout: Dur,
    pub idle_timeout: Dur,
    pub trusted_proxies: Vec<Cidr>,
    pub max_connections: usize,
    pub http2_max_streams: u32,
    pub shutdown_grace: Dur,
    /// How providers reach this relay (`https://hooks.example.com`): the
    /// submit proxy builds `callBackUrl` from it.
    pub public_url: Option<Spanned<String>>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: Vec::new(),
            tls: None,
            max_body: Size(1 << 20),
            max_body_memory: None,
            read_timeout: Dur(Duration::from_secs(10)),
            idle_timeout: Dur(Duration::from_secs(60)),
            trusted_proxies: Vec::new(),
            max_connections: 4096,
            http2_max_streams: 32,
            shutdown_grace: Dur(Duration::from_secs(5)),
            public_url: None,
        }
    }
}

/// `{ cert, key }` (PEM files) or `{ acme = { … } }`; `validate/server.rs`
/// requires exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub cert: Option<Spanned<PathBuf>>,
    pub key: Option<Spanned<PathBuf>>,
    pub acme: Option<Spanned<RawAcme>>,
}

/// `server.tls.acme`: certificates from an ACME CA. No defaults: the CA and
/// the names are the operator's choice, and `ca_file` is only for private CAs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    pub domains: Vec<Spanned<String>>,
    pub email: Spanned<String>,
    pub directory: Spanned<String>,
    pub ca_file: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    pub path: PathBuf,
    pub retention: Dur,
    pub cache: Size,
    pub min_free: Size,
    pub compression: bool,
    /// `sled` (embedded, the default) or `nats` (cluster mode).
    pub backend: Spanned<String>,
    pub nats: Option<Spanned<RawNats>>,
}

/// `[store] nats = { … }`: the JetStream cluster of cluster mode.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNats {
    pub servers: Vec<Spanned<String>>,
    /// A `.creds` file's contents (any secret source; `{ file = "…" }` reads the file).
    pub credentials: Option<Spanned<SecretSource>>,
    pub token: Option<Spanned<SecretSource>>,
    pub user: Option<String>,
    pub password: Option<Spanned<SecretSource>>,
    /// PEM file of the CA that signed the servers' certificates (TLS to NATS).
    pub ca_file: Option<Spanned<PathBuf>>,
    #[serde(default = "three")]
    pub replicas: usize,
    /// How long after a relay stops (dies, loses NATS) the deliveries it
    /// held go to another relay.
    pub takeover: Option<Spanned<Dur>>,
}

fn three() -> usize {
    3
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            path: PathBuf::from("data"),
            retention: Dur(Duration::from_secs(14 * 86400)),
            cache: Size(16 << 20),
            min_free: Size(64 << 20),
            compression: false,
            backend: Spanned::new(0..0, "sled".to_string()),
            nats: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAdmin {
    pub listen: Spanned<String>,
    pub token: Option<Spanned<SecretSource>>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: Spanned::new(0..0, "127.0.0.1:9090".to_string()),
            token: None,
        }
    }
}

/// Defaults for every subscriber; each may override any of them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDelivery {
    pub timeout: Dur,
    pub retry: Vec<Dur>,
    pub concurrency: usize,
    pub rate: Option<Rate>,
    pub max_retry_after: Dur,
    pub circuit_threshold: u32,
}

impl Default for RawDelivery {
    fn default() -> Self {
        RawDelivery {
            timeout: Dur(Duration::from_secs(15)),
            // ~2.2 days in ten steps.
            retry: ["5s", "30s", "2m", "10m", "30m", "1h", "3h", "6h", "12h", "24h"]
                .into_iter()
                .map(Dur::from_str_const)
                .collect(),
            concurrency: 8,
            rate: None,
            max_retry_after: Dur(Duration::from_secs(3600)),
            circuit_threshold: 5,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    pub level: String,
    pub format: LogFormat,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: "info".into(),
            format: LogFormat::Auto,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub name: Spanned<String>,
    pub path: Spanned<String>,
    #[serde(default)]
    pub tokens: Vec<Spanned<SecretSource>>,
    /// None: every source; an empty list is refused.
    pub allow_ips: Option<Vec<Cidr>>,
    /// A route with no token, no signature and no narrower `allow_ips` is
    /// refused unless this says that anyone may post to it.
    #[serde(default)]
    pub allow_anyone: bool,
    /// A provider preset (`kie-…`): dedupe key, task id and media pointers
    /// for that product; the keys written here override it.
    pub preset: Option<Spanned<String>>,
    /// None: the preset's (or the body hash); `[]`: the body hash.
    pub dedupe_key: Option<Vec<Spanned<String>>>,
    pub signature: Option<Spanned<RawSignature>>,
    /// Media pointers; None: the preset's (or none); `[]`: no archiving.
    pub media: Option<Vec<Spanned<String>>>,
    pub provider: Option<Spanned<RawProvider>>,
    /// Poll the provider for expected tasks whose callback did not come.
    pub reconcile: Option<Spanned<RawReconcile>>,
    /// `"fetch"`: confirm each callback against the provider's record first.
    pub verify: Option<Spanned<String>>,
    #[serde(default = "yes")]
    pub json: bool,
    #[serde(default)]
    pub subscribers: Vec<RawSubscriber>,
}

fn yes() -> bool {
    true
}

// Secrets stay raw TOML here: serde loses the key path inside an internally
// tagged enum, so they are read in the validator, which names `.secret`.
#[derive(Debug, Deserialize)]
#[serde(tag = "scheme", rename_all = "kebab-case", deny_unknown_fields)]
pub(super) enum RawSignature {
    Kie {
        secret: Option<toml::Value>,
        task_id: Option<String>,
        tolerance: Option<Dur>,
    },
    StandardWebhooks {
        /// One secret, or a list during a rotation (any one may sign).
        secret: Option<toml::Value>,
        tolerance: Option<Dur>,
    },
    HmacSha256 {
        secret: Option<toml::Value>,
        header: String,
        #[serde(default)]
        encoding: Encoding,
        #[serde(default)]
        prefix: String,
    },
}

/// A subscriber; settings left out inherit `[delivery]`. Exactly one of
/// `url` (the relay pushes) and `pull` (the private side fetches) is given;
/// the validator says so when not, naming the key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubscriber {
    pub name: Spanned<String>,
    pub url: Option<Spanned<String>>,
    pub pull: Option<Spanned<RawPull>>,
    pub secret: Option<Spanned<SecretList>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<SecretSource>>,
    pub ca_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub filter: BTreeMap<String, serde_json::Value>,
    pub timeout: Option<Spanned<Dur>>,
    pub retry: Option<Vec<Dur>>,
    pub concurrency: Option<Spanned<usize>>,
    pub rate: Option<Spanned<Rate>>,
    pub max_retry_after: Option<Dur>,
    pub circuit_threshold: Option<Spanned<u32>>,
    /// Deliver only once every media URL of the event is stored or failed for good.
    #[serde(default)]
    pub after_archive: bool,
}

/// `pull = { token = …, lease = "60s" }`: the private side fetches over the
/// pull API. The token stays optional here so that a missing one gets our
/// message (naming `.pull.token`) rather than serde's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPull {
    pub token: Option<Spanned<SecretSource>>,
    pub lease: Spanned<Dur>,
}

impl Default for RawPull {
    fn default() -> Self {
        RawPull {
            token: None,
            // Long enough for a local service to answer a callback, short
            // enough that a forwarder that died is noticed within a minute.
            lease: Spanned::new(0..0, Dur(Duration::from_secs(60))),
        }
    }
}

/// `provider = { api_key = …, base_url = … }` on a route: the platform's API
/// key (secret stays raw TOML so its errors can name `.api_key`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub api_key: Option<toml::Value>,
    pub base_url: Option<String>,
}

/// `reconcile = { after, every, give_up }` on a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawReconcile {
    pub after: Dur,
    pub every: Dur,
    pub give_up: Dur,
}

impl Default for RawReconcile {
    fn default() -> Self {
        RawReconcile {
            // The provider retries a callback after 1, 5 and 15 minutes: by 10
            // minutes past the submit the first retries have had their chance.
            after: Dur(Duration::from_secs(600)),
            // The platform's own advice when callbacks cannot be used.
            every: Dur(Duration::from_secs(30)),
            give_up: Dur(Duration::from_secs(86400)),
        }
    }
}

/// `[media]`: where archived files go and how they are downloaded.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMedia {
    /// A directory (string) or `{ s3 = { … } }` ([`RawS3`]), read by the
    /// validator so that each shape gets its own clear error. None: `media`
    /// under the store's directory. Not `Spanned`: toml cannot read a span
    /// for a table declared only by a `[media.store.s3]` header (the
    /// validator finds the position itself).
    pub store: Option<toml::Value>,
    pub max_size: Size,
    pub timeout: Dur,
    pub concurrency: usize,
    pub retry: Vec<Dur>,
    pub allow_private: bool,
    pub allow_networks: Vec<Cidr>,
    pub retention: Dur,
    pub min_free: Size,
    pub ca_file: Option<Spanned<PathBuf>>,
}

impl Default for RawMedia {
    fn default() -> Self {
        RawMedia {
            store: None,
            max_size: Size(2 << 30),
            timeout: Dur(Duration::from_secs(600)),
            concurrency: 4,
            // ~2.7 hours in five steps: well inside the URLs' shortest lives (24 h).
            retry: ["10s", "1m", "5m", "30m", "2h"]
                .into_iter()
                .map(Dur::from_str_const)
                .collect(),
            allow_private: false,
            allow_networks: Vec::new(),
            retention: Dur(Duration::from_secs(90 * 86400)),
            min_free: Size(1 << 30),
            ca_file: None,
        }
    }
}

/// `store = { s3 = { … } }` (secrets stay raw TOML so errors can name them).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawS3 {
    pub bucket: String,
    pub endpoint: Option<String>,
    #[serde(default = "us_east_1")]
    pub region: String,
    pub access_key: Option<toml::Value>,
    pub secret_key: Option<toml::Value>,
    #[serde(default)]
    pub prefix: String,
}

fn us_east_1() -> String {
    "us-east-1".into()
}
