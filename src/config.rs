//! Configuration: the only module that knows TOML.
//!
//! Parsing happens in two stages. Serde structs (`Raw*`, `deny_unknown_fields`)
//! take human-friendly values ("64KiB", "15s", CIDRs, secrets from files or the
//! environment); [`Config::validate`] turns them into typed values and checks
//! what serde cannot (duplicates, missing files, empty routes). Every error
//! names the file, the key path, its line and column, and what is wrong.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// A configuration problem, located as precisely as the source allows.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key path, e.g. `routes[0].allow_ips[1]`; empty for syntax errors.
    pub key: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        if let Some((line, col)) = self.position {
            write!(f, " (line {line}, column {col})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------
// Human-friendly value types
// ---------------------------------------------------------------------------

/// A duration written as "15s", "2m", "14d" (humantime syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?}: {e} (use e.g. \"15s\", \"2m\", \"14d\")"
            ))
        })
    }
}

/// A size written as "1MiB", "64KiB", "500kB" or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            N(u64),
            S(String),
        }
        match Either::deserialize(d)? {
            Either::N(n) => Ok(Size(n)),
            Either::S(s) => parse_size::parse_size(s.trim()).map(Size).map_err(|e| {
                serde::de::Error::custom(format!("invalid size {s:?}: {e} (use e.g. \"1MiB\", \"64KiB\")"))
            }),
        }
    }
}

/// An IPv4 or IPv6 network ("10.0.0.0/8", "::1/128"); a bare address means one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_cidr(&s).map(Cidr).map_err(serde::de::Error::custom)
    }
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Ok(net);
    }
    t.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("invalid CIDR {s:?} (use e.g. \"10.0.0.0/8\", \"2001:db8::/32\" or a single address)"))
}

/// A rate such as "50/s", "600/m" or "1000/h".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_rate(&s).map_err(serde::de::Error::custom)
    }
}

fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad = || format!("invalid rate {s:?} (use e.g. \"50/s\", \"600/m\", \"1000/h\")");
    let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = n.trim().parse().map_err(|_| bad())?;
    let count = NonZeroU32::new(count).ok_or_else(bad)?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    Ok(Rate { count, per })
}

/// A secret: inline, or read from a file, an environment variable or a systemd
/// credential (`$CREDENTIALS_DIRECTORY/NAME`), so it need not sit in the file.
#[derive(Clone)]
pub enum SecretSource {
    Inline(String),
    File { file: PathBuf },
    Env { env: String },
    Credential { credential: String },
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            SecretSource::File { file } => write!(f, "File({})", file.display()),
            SecretSource::Env { env } => write!(f, "Env({env})"),
            SecretSource::Credential { credential } => write!(f, "Credential({credential})"),
        }
    }
}

impl SecretSource {
    fn from_value(v: toml::Value) -> Result<SecretSource, String> {
        const EXPECTED: &str =
            "expected a string, or one of { file = \"/path\" }, { env = \"VAR\" }, { credential = \"name\" }";
        match v {
            toml::Value::String(s) => Ok(SecretSource::Inline(s)),
            toml::Value::Table(t) if t.len() == 1 => {
                let (k, v) = t.into_iter().next().expect("one entry");
                let toml::Value::String(v) = v else {
                    return Err(EXPECTED.into());
                };
                match k.as_str() {
                    "file" => Ok(SecretSource::File { file: PathBuf::from(v) }),
                    "env" => Ok(SecretSource::Env { env: v }),
                    "credential" => Ok(SecretSource::Credential { credential: v }),
                    _ => Err(format!("unknown secret source `{k}`: {EXPECTED}")),
                }
            }
            _ => Err(EXPECTED.into()),
        }
    }

    fn resolve(&self) -> Result<String, String> {
        let trimmed = |s: String| s.trim_end_matches(['\n', '\r']).to_string();
        let value = match self {
            SecretSource::Inline(s) => s.clone(),
            SecretSource::File { file } => std::fs::read_to_string(file)
                .map(trimmed)
                .map_err(|e| format!("cannot read secret file {}: {e}", file.display()))?,
            SecretSource::Env { env } => std::env::var(env)
                .map(trimmed)
                .map_err(|_| format!("environment variable {env} is not set"))?,
            SecretSource::Credential { credential } => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
                    .ok_or_else(|| format!("credential {credential:?} requested but CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)"))?;
                let path = Path::new(&dir).join(credential);
                std::fs::read_to_string(&path)
                    .map(trimmed)
                    .map_err(|e| format!("cannot read credential {}: {e}", path.display()))?
            }
        };
        if value.is_empty() {
            return Err("secret is empty".into());
        }
        Ok(value)
    }
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SecretSource::from_value(toml::Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// One secret or a list of them (several during a rotation).
#[derive(Debug)]
struct SecretList(Vec<SecretSource>);

impl<'de> Deserialize<'de> for SecretList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::Array(items) => items
                .into_iter()
                .map(SecretSource::from_value)
                .collect::<Result<Vec<_>, _>>()
                .map(SecretList)
                .map_err(serde::de::Error::custom),
            v => SecretSource::from_value(v)
                .map(|s| SecretList(vec![s]))
                .map_err(serde::de::Error::custom),
        }
    }
}

// ---------------------------------------------------------------------------
// Raw (serde) structure
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Vec<Spanned<String>>,
    tls: Option<Spanned<RawTls>>,
    #[serde(default = "default_max_body")]
    max_body: Size,
    #[serde(default = "default_read_timeout")]
    read_timeout: Dur,
    #[serde(default = "default_idle_timeout")]
    idle_timeout: Dur,
    #[serde(default)]
    trusted_proxies: Vec<Cidr>,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_h2_streams")]
    http2_max_streams: u32,
    #[serde(default = "default_shutdown_grace")]
    shutdown_grace: Dur,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<PathBuf>,
    key: Spanned<PathBuf>,
}

fn default_max_body() -> Size {
    Size(1 << 20)
}
fn default_read_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_idle_timeout() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_max_connections() -> usize {
    4096
}
fn default_h2_streams() -> u32 {
    128
}
fn default_shutdown_grace() -> Dur {
    Dur(Duration::from_secs(5))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default = "default_store_path")]
    path: PathBuf,
    #[serde(default = "default_retention")]
    retention: Dur,
    #[serde(default = "default_cache")]
    cache: Size,
    #[serde(default = "default_min_free")]
    min_free: Size,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            path: default_store_path(),
            retention: default_retention(),
            cache: default_cache(),
            min_free: default_min_free(),
        }
    }
}
fn default_min_free() -> Size {
    Size(64 << 20)
}
fn default_store_path() -> PathBuf {
    PathBuf::from("data")
}
fn default_retention() -> Dur {
    Dur(Duration::from_secs(14 * 86400))
}
fn default_cache() -> Size {
    Size(16 << 20)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    #[serde(default = "default_admin_listen")]
    listen: Spanned<String>,
    token: Option<Spanned<SecretSource>>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: Spanned::new(0..0, default_admin_listen().into_inner()),
            token: None,
        }
    }
}
fn default_admin_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:9090".to_string())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    timeout: Option<Dur>,
    retry: Option<Vec<Dur>>,
    concurrency: Option<usize>,
    rate: Option<Rate>,
    max_retry_after: Option<Dur>,
    circuit_threshold: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<LogFormat>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Spanned<String>,
    path: Spanned<String>,
    #[serde(default)]
    tokens: Vec<Spanned<SecretSource>>,
    allow_ips: Option<Vec<Cidr>>,
    dedupe_key: Option<Vec<Spanned<String>>>,
    signature: Option<Spanned<RawSignature>>,
    #[serde(default = "yes")]
    json: bool,
    #[serde(default)]
    subscribers: Vec<RawSubscriber>,
}

fn yes() -> bool {
    true
}

// Secrets stay raw TOML here: serde loses the key path inside an internally
// tagged enum, so they are read in `Validator::signature`, which names `.secret`.
#[derive(Debug, Deserialize)]
#[serde(tag = "scheme", rename_all = "kebab-case", deny_unknown_fields)]
enum RawSignature {
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

/// How a raw-body HMAC is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscriber {
    name: Spanned<String>,
    url: Spanned<String>,
    secret: Option<Spanned<SecretList>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<SecretSource>>,
    ca_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    filter: BTreeMap<String, serde_json::Value>,
    timeout: Option<Dur>,
    retry: Option<Vec<Dur>>,
    concurrency: Option<usize>,
    rate: Option<Rate>,
    max_retry_after: Option<Dur>,
    circuit_threshold: Option<u32>,
}

// ---------------------------------------------------------------------------
// Validated configuration
// ---------------------------------------------------------------------------

/// The validated configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from (for messages and reloads).
    pub file: PathBuf,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub routes: Vec<Route>,
    /// Settings that work but are probably not what was meant (shown by
    /// `check-config`, logged at start and reload), each naming file and key.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub tls: Option<TlsFiles>,
    pub max_body: usize,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub retention: Duration,
    pub cache_bytes: u64,
    /// Ingest answers 503 while the store's disk has less free space than this.
    pub min_free: u64,
}

#[derive(Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token: Option<String>,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

/// One public callback path.
#[derive(Clone)]
pub struct Route {
    pub name: String,
    pub path: String,
    /// Accepted tokens (several during a rotation). Empty: no token needed.
    pub tokens: Vec<String>,
    /// Empty: every source allowed.
    pub allow_ips: Vec<IpNet>,
    /// JSON pointers whose values form the dedupe key; empty: SHA-256 of the body.
    pub dedupe_key: Vec<String>,
    pub signature: Option<Signature>,
    /// The body must be JSON (400 otherwise).
    pub json: bool,
    pub subscribers: Vec<Subscriber>,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("tokens", &self.tokens.len())
            .field("allow_ips", &self.allow_ips)
            .field("dedupe_key", &self.dedupe_key)
            .field("signature", &self.signature.as_ref().map(|s| s.scheme_name()))
            .field("json", &self.json)
            .field("subscribers", &self.subscribers)
            .finish()
    }
}

/// A provider signature the route requires.
#[derive(Clone)]
pub enum Signature {
    /// HMAC-SHA256(secret, taskId + "." + timestamp), base64, in `X-Webhook-Signature`.
    Kie {
        secret: Vec<u8>,
        task_id: Option<String>,
        tolerance: Duration,
    },
    /// Standard Webhooks: HMAC-SHA256(base64-decoded whsec_ key, id.ts.body);
    /// several keys during a rotation, any one may sign.
    StandardWebhooks { keys: Vec<Vec<u8>>, tolerance: Duration },
    /// HMAC-SHA256 over the raw body in a configurable header.
    HmacSha256 {
        secret: Vec<u8>,
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

/// A private service that receives every callback of its route.
#[derive(Clone)]
pub struct Subscriber {
    /// Unique across the whole configuration; names its delivery lane and stored jobs.
    pub name: String,
    pub route: String,
    pub url: Uri,
    /// Decoded Standard Webhooks keys; each one signs (rotation).
    pub keys: Vec<Vec<u8>>,
    /// Sent with every delivery, replacing a header of ours of the same name;
    /// never a reserved one (see `is_reserved_header`). Secret values are
    /// marked sensitive.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub ca_file: Option<PathBuf>,
    /// JSON pointer -> value that must be equal for the callback to be delivered.
    pub filter: Vec<(String, serde_json::Value)>,
    pub timeout: Duration,
    pub retry: Vec<Duration>,
    pub concurrency: usize,
    pub rate: Option<Rate>,
    pub max_retry_after: Duration,
    /// Consecutive failures that open the circuit.
    pub circuit_threshold: u32,
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("keys", &self.keys.len())
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// The default retry schedule: ~2.2 days in ten steps.
pub fn default_retry() -> Vec<Duration> {
    ["5s", "30s", "2m", "10m", "30m", "1h", "3h", "6h", "12h", "24h"]
        .iter()
        .map(|s| humantime::parse_duration(s).expect("valid default"))
        .collect()
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            key: String::new(),
            position: None,
            message: format!("cannot read file: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Parse and validate config text; `file` is used in messages and to resolve
    /// relative paths (TLS files, CA files, the store) against its directory.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = deserialize(file, text)?;
        Validator { file, text }.validate(raw)
    }
}

/// What the admin CLI takes from a config file: `admin.listen` and
/// `admin.token`, each only when asked for. Nothing else is validated or
/// resolved, so the CLI works where the daemon's other secrets (systemd
/// credentials) are not readable.
pub fn admin_client(
    path: &Path,
    want_listen: bool,
    want_token: bool,
) -> Result<(Option<SocketAddr>, Option<String>), ConfigError> {
    #[derive(Deserialize)]
    struct AdminOnly {
        #[serde(default)]
        admin: RawAdmin,
    }
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        key: String::new(),
        position: None,
        message: format!("cannot read file: {e}"),
    })?;
    let raw: AdminOnly = deserialize(path, &text)?;
    let v = Validator {
        file: path,
        text: &text,
    };
    let listen = if want_listen {
        Some(v.admin_listen(&raw.admin)?)
    } else {
        None
    };
    let token = match &raw.admin.token {
        Some(t) if want_token => Some(v.admin_token(t)?),
        _ => None,
    };
    Ok((listen, token))
}

fn deserialize<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        // Spanned<T> shows up in serde's path as a private field: hide it.
        let key = e.path().to_string().replace(".$__serde_spanned_private_value", "");
        let inner = e.into_inner();
        ConfigError {
            file: file.to_path_buf(),
            key: if key == "." { String::new() } else { key },
            position: inner.span().map(|s| line_col(text, s.start)),
            message: inner.message().trim().to_string(),
        }
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

struct Validator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    fn err(&self, key: impl Into<String>, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            key: key.into(),
            position: span.filter(|s| s.end > 0).map(|s| line_col(self.text, s.start)),
            message: message.into(),
        }
    }

    /// Paths in the config are relative to the config file's directory.
    fn resolve_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    fn existing_file(&self, key: &str, p: &Spanned<PathBuf>) -> Result<PathBuf, ConfigError> {
        let path = self.resolve_path(p.get_ref());
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(path),
            Ok(_) => Err(self.err(key, Some(p.span()), format!("{} is not a file", path.display()))),
            Err(e) => Err(self.err(key, Some(p.span()), format!("cannot open {}: {e}", path.display()))),
        }
    }

    fn secret(&self, key: &str, s: &Spanned<SecretSource>) -> Result<String, ConfigError> {
        s.get_ref().resolve().map_err(|m| self.err(key, Some(s.span()), m))
    }

    fn admin_listen(&self, admin: &RawAdmin) -> Result<SocketAddr, ConfigError> {
        admin.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
            self.err(
                "admin.listen",
                Some(admin.listen.span()),
                format!(
                    "invalid address {:?} (use e.g. \"127.0.0.1:9090\")",
                    admin.listen.get_ref()
                ),
            )
        })
    }

    fn admin_token(&self, t: &Spanned<SecretSource>) -> Result<String, ConfigError> {
        let token = self.secret("admin.token", t)?;
        self.usable_token("admin.token", t, &token)?;
        Ok(token)
    }

    /// A token a client can present: not blank, no surrounding whitespace
    /// (a bearer token is trimmed, so it could never match).
    fn usable_token(&self, key: &str, src: &Spanned<SecretSource>, token: &str) -> Result<(), ConfigError> {
        if token.trim().is_empty() {
            return Err(self.err(key, Some(src.span()), "the token is blank"));
        }
        if token.trim() != token {
            return Err(self.err(
                key,
                Some(src.span()),
                "the token has leading or trailing spaces: remove them",
            ));
        }
        Ok(())
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let server = self.server(raw.server)?;
        let store = StoreConfig {
            path: self.resolve_path(&raw.store.path),
            retention: raw.store.retention.0,
            cache_bytes: raw.store.cache.0,
            min_free: raw.store.min_free.0,
        };
        if store.retention < Duration::from_secs(60) {
            return Err(self.err("store.retention", None, "retention must be at least 1m"));
        }
        let admin_listen = self.admin_listen(&raw.admin)?;
        let admin_token = match &raw.admin.token {
            Some(t) => Some(self.admin_token(t)?),
            None => None,
        };
        if admin_token.is_none() && !admin_listen.ip().is_loopback() {
            return Err(self.err(
                "admin.token",
                Some(raw.admin.listen.span()),
                "the admin listener is not on a loopback address, so admin.token is required",
            ));
        }
        let log = LogConfig {
            level: raw.log.level.unwrap_or_else(|| "info".into()),
            format: raw.log.format.unwrap_or_default(),
        };
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log.level) {
            return Err(self.err("log.level", None, format!("invalid log level {:?}: {e}", log.level)));
        }
        let d = &raw.delivery;
        let defaults = SubscriberDefaults {
            timeout: d.timeout.map_or(Duration::from_secs(15), |d| d.0),
            retry: d
                .retry
                .as_ref()
                .map_or_else(default_retry, |v| v.iter().map(|d| d.0).collect()),
            concurrency: d.concurrency.unwrap_or(8),
            rate: d.rate,
            max_retry_after: d.max_retry_after.map_or(Duration::from_secs(3600), |d| d.0),
            circuit_threshold: d.circuit_threshold.unwrap_or(5),
        };
        if defaults.concurrency == 0 {
            return Err(self.err("delivery.concurrency", None, "must be at least 1"));
        }
        if defaults.timeout.is_zero() {
            return Err(self.err("delivery.timeout", None, "must be greater than 0"));
        }

        let mut routes = Vec::with_capacity(raw.routes.len());
        let mut paths: HashMap<String, usize> = HashMap::new();
        let mut route_names: HashMap<String, usize> = HashMap::new();
        let mut sub_names: HashMap<String, String> = HashMap::new();
        for (i, r) in raw.routes.into_iter().enumerate() {
            let key = format!("routes[{i}]");
            if let Some(prev) = paths.insert(r.path.get_ref().clone(), i) {
                return Err(self.err(
                    format!("{key}.path"),
                    Some(r.path.span()),
                    format!("duplicate route path {:?} (also routes[{prev}].path)", r.path.get_ref()),
                ));
            }
            if let Some(prev) = route_names.insert(r.name.get_ref().clone(), i) {
                return Err(self.err(
                    format!("{key}.name"),
                    Some(r.name.span()),
                    format!("duplicate route name {:?} (also routes[{prev}].name)", r.name.get_ref()),
                ));
            }
            let route = self.route(&key, r, &defaults, &mut sub_names)?;
            routes.push(route);
        }
        if routes.is_empty() {
            return Err(self.err(
                "routes",
                None,
                "no routes configured: add at least one [[routes]] with a [[routes.subscribers]]",
            ));
        }
        let warnings = self.retention_warnings(&store, &routes);
        Ok(Config {
            file: self.file.to_path_buf(),
            server,
            store,
            admin: AdminConfig {
                listen: admin_listen,
                token: admin_token,
            },
            log,
            routes,
            warnings,
        })
    }

    /// Subscribers whose retry schedule (with the most jitter) outlasts the
    /// retention: their deliveries outlive the retention of their events.
    fn retention_warnings(&self, store: &StoreConfig, routes: &[Route]) -> Vec<String> {
        let mut long: Vec<(String, Duration)> = Vec::new();
        for s in routes.iter().flat_map(|r| &r.subscribers) {
            let span: Duration = s.retry.iter().sum::<Duration>().mul_f64(1.2);
            if span > store.retention {
                long.push((format!("{:?}", s.name), span));
            }
        }
        let Some(longest) = long.iter().map(|(_, d)| *d).max() else {
            return Vec::new();
        };
        let names: Vec<&str> = long.iter().map(|(n, _)| n.as_str()).collect();
        vec![format!(
            "{}: key `store.retention`: {} is shorter than the retry schedule of subscriber {} (up to {} with jitter): its deliveries can still be retried after their event's retention (the event is kept until they end, a dead letter for the retention after it dies)",
            self.file.display(),
            humantime::format_duration(store.retention),
            names.join(", "),
            humantime::format_duration(Duration::from_secs(longest.as_secs())),
        )]
    }

    fn server(&self, s: RawServer) -> Result<ServerConfig, ConfigError> {
        if s.listen.is_empty() {
            return Err(self.err("server.listen", None, "at least one listen address is required"));
        }
        let mut listen = Vec::new();
        for (i, a) in s.listen.iter().enumerate() {
            let addr = a.get_ref().parse::<SocketAddr>().map_err(|_| {
                self.err(
                    format!("server.listen[{i}]"),
                    Some(a.span()),
                    format!(
                        "invalid address {:?} (use e.g. \"127.0.0.1:8080\" or \"[::]:443\")",
                        a.get_ref()
                    ),
                )
            })?;
            listen.push(addr);
        }
        let tls = match &s.tls {
            Some(t) => {
                let t = t.get_ref();
                let cert = self.existing_file("server.tls.cert", &t.cert)?;
                let key = self.existing_file("server.tls.key", &t.key)?;
                let files = TlsFiles { cert, key };
                if let Err(e) = crate::tls::load_server_config(&files) {
                    return Err(self.err("server.tls", Some(t.cert.span()), e.to_string()));
                }
                Some(files)
            }
            None => None,
        };
        if s.max_body.0 == 0 {
            return Err(self.err("server.max_body", None, "must be greater than 0"));
        }
        if let Some(memory) = physical_memory() {
            if s.max_body.0 > memory {
                return Err(self.err(
                    "server.max_body",
                    None,
                    format!(
                        "{} bytes is more than this machine's memory ({memory} bytes): a body is held in memory while it is checked",
                        s.max_body.0
                    ),
                ));
            }
        }
        if s.read_timeout.0.is_zero() {
            return Err(self.err("server.read_timeout", None, "must be greater than 0"));
        }
        if s.max_connections == 0 {
            return Err(self.err("server.max_connections", None, "must be at least 1"));
        }
        if s.idle_timeout.0.is_zero() {
            return Err(self.err("server.idle_timeout", None, "must be greater than 0"));
        }
        Ok(ServerConfig {
            listen,
            tls,
            max_body: usize::try_from(s.max_body.0).unwrap_or(usize::MAX),
            read_timeout: s.read_timeout.0,
            idle_timeout: s.idle_timeout.0,
            trusted_proxies: s.trusted_proxies.into_iter().map(|c| c.0).collect(),
            max_connections: s.max_connections,
            http2_max_streams: s.http2_max_streams.max(1),
            shutdown_grace: s.shutdown_grace.0,
        })
    }

    fn route(
        &self,
        key: &str,
        r: RawRoute,
        defaults: &SubscriberDefaults,
        sub_names: &mut HashMap<String, String>,
    ) -> Result<Route, ConfigError> {
        let name = r.name.get_ref().clone();
        if !valid_name(&name) {
            return Err(self.err(
                format!("{key}.name"),
                Some(r.name.span()),
                format!("invalid name {name:?}: use letters, digits, '-', '_' or '.'"),
            ));
        }
        let path = r.path.get_ref().clone();
        // Compared with the request's path as sent: it must be one a request can have.
        let as_sent = path.parse::<http::uri::PathAndQuery>().ok();
        if !path.starts_with('/') || as_sent.is_none_or(|p| p.as_str() != p.path()) {
            return Err(self.err(
                format!("{key}.path"),
                Some(r.path.span()),
                format!(
                    "invalid path {path:?}: must start with '/', have no query and use only characters a URL path can have (write a space as %20)"
                ),
            ));
        }
        let mut tokens = Vec::new();
        for (j, t) in r.tokens.iter().enumerate() {
            let tkey = format!("{key}.tokens[{j}]");
            let token = self.secret(&tkey, t)?;
            self.usable_token(&tkey, t, &token)?;
            tokens.push(token);
        }
        if r.allow_ips.as_ref().is_some_and(|a| a.is_empty()) {
            return Err(self.err(
                format!("{key}.allow_ips"),
                Some(r.name.span()),
                "allow_ips is an empty list: list the allowed CIDRs, or leave allow_ips out to accept every source",
            ));
        }
        let mut dedupe_key = Vec::new();
        for (j, p) in r.dedupe_key.iter().flatten().enumerate() {
            let ptr = p.get_ref();
            if !(ptr.is_empty() || ptr.starts_with('/')) {
                return Err(self.err(
                    format!("{key}.dedupe_key[{j}]"),
                    Some(p.span()),
                    format!("invalid JSON pointer {ptr:?}: must start with '/'"),
                ));
            }
            dedupe_key.push(ptr.clone());
        }
        if !dedupe_key.is_empty() && !r.json {
            return Err(self.err(
                format!("{key}.dedupe_key"),
                None,
                "dedupe_key needs a JSON route (json = true)",
            ));
        }
        let signature = match &r.signature {
            Some(s) => Some(self.signature(&format!("{key}.signature"), s)?),
            None => None,
        };
        if matches!(signature, Some(Signature::Kie { .. })) && !r.json {
            return Err(self.err(
                format!("{key}.signature"),
                r.signature.as_ref().map(|s| s.span()),
                "the kie scheme reads the task id from the JSON body: it needs json = true",
            ));
        }
        if r.subscribers.is_empty() {
            return Err(self.err(
                format!("{key}.subscribers"),
                Some(r.name.span()),
                format!("route {name:?} has no subscribers: add a [[routes.subscribers]] table"),
            ));
        }
        let mut subscribers = Vec::new();
        for (j, s) in r.subscribers.into_iter().enumerate() {
            let skey = format!("{key}.subscribers[{j}]");
            if let Some(prev) = sub_names.insert(s.name.get_ref().clone(), skey.clone()) {
                return Err(self.err(
                    format!("{skey}.name"),
                    Some(s.name.span()),
                    format!(
                        "duplicate subscriber name {:?} (also {prev}.name); names are unique across all routes",
                        s.name.get_ref()
                    ),
                ));
            }
            subscribers.push(self.subscriber(&skey, &name, s, defaults)?);
        }
        Ok(Route {
            name,
            path,
            tokens,
            allow_ips: r.allow_ips.unwrap_or_default().into_iter().map(|c| c.0).collect(),
            dedupe_key,
            signature,
            json: r.json,
            subscribers,
        })
    }

    fn signature(&self, key: &str, s: &Spanned<RawSignature>) -> Result<Signature, ConfigError> {
        let span = Some(s.span());
        // The secrets of `value` (a list only where `list` allows), each resolved.
        let secrets = |value: &Option<toml::Value>, list: bool| -> Result<Vec<String>, ConfigError> {
            let skey = format!("{key}.secret");
            let Some(value) = value else {
                return Err(self.err(&skey, span.clone(), "a secret is required"));
            };
            let items: Vec<(String, &toml::Value)> = match value {
                toml::Value::Array(items) if list => {
                    if items.is_empty() {
                        return Err(self.err(&skey, span.clone(), "the list of secrets is empty"));
                    }
                    items
                        .iter()
                        .enumerate()
                        .map(|(j, v)| (format!("{skey}[{j}]"), v))
                        .collect()
                }
                v => vec![(skey, v)],
            };
            items
                .into_iter()
                .map(|(k, v)| {
                    SecretSource::from_value(v.clone())
                        .and_then(|src| src.resolve())
                        .map_err(|m| self.err(k, span.clone(), m))
                })
                .collect()
        };
        let tolerance = |t: &Option<Dur>| match t {
            None => Ok(Duration::from_secs(300)),
            Some(d) if d.0.is_zero() => {
                Err(self.err(format!("{key}.tolerance"), span.clone(), "must be greater than 0"))
            }
            Some(d) => Ok(d.0),
        };
        Ok(match s.get_ref() {
            RawSignature::Kie {
                secret,
                task_id,
                tolerance: t,
            } => {
                if let Some(p) = task_id {
                    if !p.starts_with('/') {
                        return Err(self.err(
                            format!("{key}.task_id"),
                            span,
                            format!("invalid JSON pointer {p:?}: must start with '/'"),
                        ));
                    }
                }
                Signature::Kie {
                    secret: secrets(secret, false)?.remove(0).into_bytes(),
                    task_id: task_id.clone(),
                    tolerance: tolerance(t)?,
                }
            }
            RawSignature::StandardWebhooks { secret, tolerance: t } => {
                let many = matches!(secret, Some(toml::Value::Array(_)));
                let mut keys = Vec::new();
                for (j, value) in secrets(secret, true)?.iter().enumerate() {
                    let k = if many {
                        format!("{key}.secret[{j}]")
                    } else {
                        format!("{key}.secret")
                    };
                    keys.push(decode_whsec(value).map_err(|m| self.err(k, span.clone(), m))?);
                }
                Signature::StandardWebhooks {
                    keys,
                    tolerance: tolerance(t)?,
                }
            }
            RawSignature::HmacSha256 {
                secret,
                header,
                encoding,
                prefix,
            } => {
                let header = HeaderName::try_from(header.as_str()).map_err(|_| {
                    self.err(
                        format!("{key}.header"),
                        span.clone(),
                        format!("invalid header name {header:?}"),
                    )
                })?;
                Signature::HmacSha256 {
                    secret: secrets(secret, false)?.remove(0).into_bytes(),
                    header,
                    encoding: *encoding,
                    prefix: prefix.clone(),
                }
            }
        })
    }

    fn subscriber(
        &self,
        key: &str,
        route: &str,
        s: RawSubscriber,
        d: &SubscriberDefaults,
    ) -> Result<Subscriber, ConfigError> {
        let name = s.name.get_ref().clone();
        if !valid_name(&name) {
            return Err(self.err(
                format!("{key}.name"),
                Some(s.name.span()),
                format!("invalid name {name:?}: use letters, digits, '-', '_' or '.'"),
            ));
        }
        // Messages show the URL without its credentials.
        let shown = hide_userinfo(s.url.get_ref());
        let url: Uri = s.url.get_ref().parse().map_err(|e| {
            self.err(
                format!("{key}.url"),
                Some(s.url.span()),
                format!("invalid URL {shown:?}: {e}"),
            )
        })?;
        match (url.scheme_str(), url.host()) {
            (Some("http" | "https"), Some(_)) => {}
            _ => {
                return Err(self.err(
                    format!("{key}.url"),
                    Some(s.url.span()),
                    format!("invalid URL {shown:?}: must be an absolute http:// or https:// URL"),
                ))
            }
        }
        let (url, basic_auth) =
            split_userinfo(url).map_err(|m| self.err(format!("{key}.url"), Some(s.url.span()), m))?;
        let mut keys = Vec::new();
        if let Some(list) = &s.secret {
            let many = list.get_ref().0.len() > 1;
            for (j, sec) in list.get_ref().0.iter().enumerate() {
                let k = if many {
                    format!("{key}.secret[{j}]")
                } else {
                    format!("{key}.secret")
                };
                let value = sec.resolve().map_err(|m| self.err(&k, Some(list.span()), m))?;
                keys.push(decode_whsec(&value).map_err(|m| self.err(&k, Some(list.span()), m))?);
            }
        }
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        for (h, v) in &s.headers {
            let hkey = format!("{key}.headers.{h}");
            let span = Some(v.span());
            let name = HeaderName::try_from(h.as_str())
                .map_err(|_| self.err(&hkey, span.clone(), format!("invalid header name {h:?}")))?;
            if is_reserved_header(&name) {
                return Err(self.err(
                    &hkey,
                    span,
                    format!("header {h:?} is set by hookrelay (body framing, content type, host, webhook-* and hookrelay-* headers) and cannot be configured"),
                ));
            }
            if headers.iter().any(|(n, _)| *n == name) {
                return Err(self.err(
                    &hkey,
                    span,
                    format!("header {h:?} is configured twice (names ignore case)"),
                ));
            }
            // Any secret source; an inline value may be empty (a header, not a secret).
            let (text, secret) = match v.get_ref() {
                SecretSource::Inline(t) => (t.clone(), false),
                src => (src.resolve().map_err(|m| self.err(&hkey, span.clone(), m))?, true),
            };
            let mut value = HeaderValue::try_from(text).map_err(|_| self.err(&hkey, span, "invalid header value"))?;
            value.set_sensitive(secret || name == http::header::AUTHORIZATION);
            headers.push((name, value));
        }
        if let Some(basic) = basic_auth {
            if headers.iter().any(|(n, _)| n == http::header::AUTHORIZATION) {
                return Err(self.err(
                    format!("{key}.url"),
                    Some(s.url.span()),
                    "the URL has credentials and headers sets Authorization: use one of them",
                ));
            }
            headers.push((http::header::AUTHORIZATION, basic));
        }
        let ca_file = match &s.ca_file {
            Some(p) => {
                let path = self.existing_file(&format!("{key}.ca_file"), p)?;
                if let Err(e) = crate::tls::load_roots(Some(&path)) {
                    return Err(self.err(format!("{key}.ca_file"), Some(p.span()), e.to_string()));
                }
                Some(path)
            }
            None => None,
        };
        for ptr in s.filter.keys() {
            if !ptr.starts_with('/') {
                return Err(self.err(
                    format!("{key}.filter"),
                    None,
                    format!("invalid JSON pointer {ptr:?}: must start with '/'"),
                ));
            }
        }
        let retry: Vec<Duration> = s
            .retry
            .as_ref()
            .map_or_else(|| d.retry.clone(), |v| v.iter().map(|d| d.0).collect());
        let concurrency = s.concurrency.unwrap_or(d.concurrency);
        if concurrency == 0 {
            return Err(self.err(format!("{key}.concurrency"), None, "must be at least 1"));
        }
        let timeout = s.timeout.map_or(d.timeout, |t| t.0);
        if timeout.is_zero() {
            return Err(self.err(format!("{key}.timeout"), None, "must be greater than 0"));
        }
        Ok(Subscriber {
            name,
            route: route.to_string(),
            url,
            keys,
            headers,
            ca_file,
            filter: s.filter.into_iter().collect(),
            timeout,
            retry,
            concurrency,
            rate: s.rate.or(d.rate),
            max_retry_after: s.max_retry_after.map_or(d.max_retry_after, |t| t.0),
            circuit_threshold: s.circuit_threshold.unwrap_or(d.circuit_threshold).max(1),
        })
    }
}

struct SubscriberDefaults {
    timeout: Duration,
    retry: Vec<Duration>,
    concurrency: usize,
    rate: Option<Rate>,
    max_retry_after: Duration,
    circuit_threshold: u32,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Total physical memory (Linux `/proc/meminfo`); None where unknown.
fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Headers a delivery's meaning or framing depends on: hookrelay sets them.
fn is_reserved_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "content-length"
            | "transfer-encoding"
            | "host"
            | "content-type"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "upgrade"
    ) || n.starts_with("webhook-")
        || n.starts_with("hookrelay-")
}

/// `scheme://user:pass@host/…` with the credentials replaced, for messages.
fn hide_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://REDACTED@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Take `user:password@` out of a subscriber URL: the URL without it, and the
/// `Authorization: Basic` value to send instead (marked sensitive).
fn split_userinfo(url: Uri) -> Result<(Uri, Option<HeaderValue>), String> {
    use base64::Engine;
    let authority = url.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return Ok((url, None));
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let mut credentials: Vec<u8> = percent_encoding::percent_decode_str(user).collect();
    credentials.push(b':');
    credentials.extend(percent_encoding::percent_decode_str(password));
    let mut value = HeaderValue::try_from(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    ))
    .expect("base64 is a valid header value");
    value.set_sensitive(true);
    let mut parts = url.into_parts();
    parts.authority = Some(
        host.parse()
            .map_err(|_| "invalid URL: the host after the credentials is not valid".to_string())?,
    );
    let url = Uri::from_parts(parts).map_err(|e| format!("invalid URL without its credentials: {e}"))?;
    Ok((url, Some(value)))
}

/// Decode a Standard Webhooks secret: base64 after an optional `whsec_` prefix.
pub fn decode_whsec(s: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let b64 = s.strip_prefix("whsec_").unwrap_or(s);
    let key = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| {
        "invalid signing secret: expected \"whsec_\" followed by base64 (generate one with: hookrelay gen-secret)"
            .to_string()
    })?;
    if key.len() < 16 {
        return Err(format!(
            "signing secret too short: {} bytes, need at least 16 (24-64 recommended)",
            key.len()
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests;
