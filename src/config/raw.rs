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
    pub read_timeout: Dur,
    pub idle_timeout: Dur,
    pub trusted_proxies: Vec<Cidr>,
    pub max_connections: usize,
    pub http2_max_streams: u32,
    pub shutdown_grace: Dur,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: Vec::new(),
            tls: None,
            max_body: Size(1 << 20),
            read_timeout: Dur(Duration::from_secs(10)),
            idle_timeout: Dur(Duration::from_secs(60)),
            trusted_proxies: Vec::new(),
            max_connections: 4096,
            http2_max_streams: 128,
            shutdown_grace: Dur(Duration::from_secs(5)),
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
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            path: PathBuf::from("data"),
            retention: Dur(Duration::from_secs(14 * 86400)),
            cache: Size(16 << 20),
            min_free: Size(64 << 20),
            compression: false,
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
    #[serde(default)]
    pub dedupe_key: Vec<Spanned<String>>,
    pub signature: Option<Spanned<RawSignature>>,
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
