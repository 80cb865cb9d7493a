//! Raw → typed: the checks serde cannot make, each error naming file, key,
//! line and what is wrong. Store, log and delivery settings here; `[admin]`
//! ([`admin`]),
//! `[server]` ([`server`]) with its ACME block ([`acme`]), routes ([`route`],
//! [`route_media`]), subscribers ([`subscriber`]) and their pull settings
//! ([`pull`]), and `[media]` ([`media`]) in their own files; the shipped
//! example secrets on a public listener ([`placeholder`]); warnings that
//! weigh one section against another ([`warnings`]).

mod acme;
mod admin;
mod exposed;
mod listen;
mod media;
mod nats;
mod open_file;
mod placeholder;
mod plain_http;
mod pull;
mod route;
mod route_media;
mod route_tasks;
mod server;
mod store_path;
mod subscriber;
mod trust_everyone;
mod warnings;
mod weak_tokens;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::RawConfig;
use super::secret::SecretSource;
use super::values::*;
use super::{line_col, ConfigError};
use crate::auth::Secret;
use crate::delivery::retry::RetrySchedule;

/// The most requests in flight per subscriber, or media downloads at once.
pub const MAX_CONCURRENCY: usize = 4096;

/// What is wrong with a JSON pointer the config names, if anything: it
/// must start with '/'. (A '~' not written '~0' or '~1', which RFC 6901
/// does not allow, is taken as itself, as serde_json reads it: a key
/// named `a~2` is matched by `/a~2`, as it was.)
pub(super) fn pointer_problem(p: &str) -> Option<String> {
    (!p.starts_with('/')).then(|| format!("invalid JSON pointer {p:?}: must start with '/'"))
}

/// The least `store.cache`: sled panics at its open under 256 bytes.
const MIN_STORE_CACHE: u64 = 256;

pub(super) struct Validator<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    /// The text as a TOML table, for the checks that look at the file as
    /// written (parsed once, when the first asks; None if it does not parse).
    table: std::cell::OnceCell<Option<toml::Table>>,
    /// A reload's listeners, where they stay bound: what other hosts can
    /// reach is judged by them ([`crate::config::Config::load_bound`]).
    bound: Option<&'a crate::config::Bound>,
}

/// `[delivery]`: what subscribers inherit.
pub(super) struct SubscriberDefaults {
    timeout: Duration,
    retry: RetrySchedule,
    concurrency: usize,
    rate: Option<crate::config::Rate>,
    circuit_threshold: u32,
}

impl<'a> Validator<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        Validator {
            file,
            text,
            table: std::cell::OnceCell::new(),
            bound: None,
        }
    }

    /// Validate for a reload of listeners bound at `bound`.
    pub fn bound(mut self, bound: &'a crate::config::Bound) -> Self {
        self.bound = Some(bound);
        self
    }

    /// The file as written, as a TOML table.
    pub fn table(&self) -> Option<&toml::Table> {
        self.table.get_or_init(|| self.text.parse().ok()).as_ref()
    }

    /// An error at `key`: at `span` when serde kept one, else where the key
    /// (or the nearest table on its path) is written.
    pub fn err(&self, key: impl Into<String>, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let key = key.into();
        let span = span
            .filter(|s| s.end > 0)
            .or_else(|| super::locate::span_of(self.text, &key));
        ConfigError {
            file: self.file.to_path_buf(),
            position: span.map(|s| line_col(self.text, s.start)),
            key,
            message: message.into(),
        }
    }

    /// Paths in the config are relative to the config file's directory, and
    /// made absolute (from the working directory when the config file's
    /// path is relative), so that every message, `status` and a comparison
    /// of two paths (`media.store` with `store.path`) see one directory
    /// however the relay was started.
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        let p = match (p.is_absolute(), self.file.parent()) {
            (false, Some(dir)) if !dir.as_os_str().is_empty() => dir.join(p),
            _ => p.to_path_buf(),
        };
        std::path::absolute(&p).unwrap_or(p)
    }

    /// A file that must exist now; one under `/run/credentials/UNIT/` is read
    /// from `$CREDENTIALS_DIRECTORY` when that is set (see
    /// [`crate::config::secret::in_credentials_directory`]).
    pub fn existing_file(&self, key: &str, p: &Spanned<PathBuf>) -> Result<PathBuf, ConfigError> {
        if p.get_ref().as_os_str().is_empty() {
            return Err(self.err(key, Some(p.span()), "is empty: name a file"));
        }
        let path = crate::config::secret::in_credentials_directory(&self.resolve_path(p.get_ref()));
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(path),
            Ok(_) => Err(self.err(key, Some(p.span()), format!("{} is not a file", path.display()))),
            Err(e) => Err(self.err(key, Some(p.span()), format!("cannot open {}: {e}", path.display()))),
        }
    }

    /// A token a client can present: not blank, no surrounding whitespace
    /// (a bearer token is trimmed, so it could never match).
    pub fn token(&self, key: &str, src: &Spanned<SecretSource>) -> Result<Secret, ConfigError> {
        let token = src
            .get_ref()
            .resolve_text(self)
            .map_err(|m| self.err(key, Some(src.span()), m))?;
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
        Ok(Secret::new(token))
    }

    /// A token sent only in a header (`Authorization: Bearer`: the admin
    /// token, a pull token): a control character in it can never be sent. (A
    /// route token may also come in the query, percent-encoded: `%09`.)
    pub fn header_token(&self, key: &str, src: &Spanned<SecretSource>) -> Result<Secret, ConfigError> {
        let token = self.token(key, src)?;
        if token.has_control_char() {
            return Err(self.err(
                key,
                Some(src.span()),
                "the token holds a control character (a newline, tab or the like): it is sent in an \
                 Authorization header, which cannot carry one; remove it (`hookrelay gen-token` makes one)",
            ));
        }
        Ok(token)
    }

    /// A count of things at once (requests to a subscriber, downloads):
    /// 1 to [`MAX_CONCURRENCY`], its error naming `key`.
    pub fn concurrency(&self, key: &str, span: Option<Range<usize>>, n: usize) -> Result<usize, ConfigError> {
        match n {
            0 => Err(self.err(key, span, "must be at least 1")),
            n if n > MAX_CONCURRENCY => Err(self.err(
                key,
                span,
                format!(
                    "{n} is more than {MAX_CONCURRENCY}: each one holds a connection and a slot made ready at once"
                ),
            )),
            n => Ok(n),
        }
    }

    /// A retry schedule, its errors naming `key`.
    pub fn schedule(
        &self,
        key: &str,
        steps: Vec<Duration>,
        max_retry_after: Duration,
    ) -> Result<RetrySchedule, ConfigError> {
        RetrySchedule::new(steps, max_retry_after).map_err(|e| match e {
            crate::delivery::retry::ScheduleError::ZeroStep(i) => self.err(format!("{key}[{i}]"), None, e.to_string()),
            other => self.err(key, None, other.to_string()),
        })
    }

    pub fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let body_memory = self.body_memory_warning(&raw.server);
        let server = self.server(raw.server)?;
        let backend = self.backend(&raw.store)?;
        let empty_store_path = self.empty_store_path_warning(&raw.store, &backend);
        let store = StoreConfig {
            path: self.store_path(&raw.store, &backend)?,
            retention: raw.store.retention.0,
            cache_bytes: raw.store.cache.0,
            min_free: raw.store.min_free.0,
            compression: raw.store.compression,
            backend,
        };
        let temporary_store_path = self.temporary_store_path_warning(&store.path, &store.backend);
        let foreign_files = self.foreign_files_warning(&store.path, &store.backend);
        if store.retention < Duration::from_secs(60) {
            return Err(self.err("store.retention", None, "retention must be at least 1m"));
        }
        let sled = matches!(store.backend, StoreBackend::Sled);
        if sled && store.cache_bytes < MIN_STORE_CACHE {
            return Err(self.err(
                "store.cache",
                None,
                "the embedded store's page cache must be at least 256 bytes (sled's own floor: it panics at \
                 its open under it; the default is 16MiB)",
            ));
        }
        let small_cache = (sled && store.cache_bytes < 1 << 20).then(|| {
            format!(
                "{}: key `store.cache`: {} bytes is a few pages: every lookup reads the disk (the default is 16MiB)",
                self.file.display(),
                store.cache_bytes
            )
        });
        let admin_listen = self.admin_listen(&raw.admin)?;
        self.listen_clashes(&server.listen, admin_listen)?;
        let admin_token = raw.admin.token.as_ref().map(|t| self.admin_token(t)).transpose()?;
        let exposed = self.exposed(&server, admin_listen, admin_token.as_ref(), raw.admin.listen.span())?;
        let log = LogConfig {
            level: raw.log.level,
            format: raw.log.format,
        };
        if let Err(e) = crate::logging::check_configured_filter(&log.level) {
            return Err(self.err("log.level", None, format!("invalid log level: {e}")));
        }
        let d = raw.delivery;
        self.concurrency("delivery.concurrency", None, d.concurrency)?;
        if d.timeout.0.is_zero() {
            return Err(self.err("delivery.timeout", None, "must be greater than 0"));
        }
        if d.circuit_threshold == 0 {
            return Err(self.err("delivery.circuit_threshold", None, "must be at least 1"));
        }
        let defaults = SubscriberDefaults {
            timeout: d.timeout.0,
            retry: self.schedule(
                "delivery.retry",
                d.retry.iter().map(|d| d.0).collect(),
                d.max_retry_after.0,
            )?,
            concurrency: d.concurrency,
            rate: d.rate,
            circuit_threshold: d.circuit_threshold,
        };
        let mut routes = Vec::with_capacity(raw.routes.len());
        let mut paths: HashMap<String, usize> = HashMap::new();
        let mut route_names: HashMap<String, usize> = HashMap::new();
        let mut sub_names: HashMap<String, String> = HashMap::new();
        let mut path_spans = Vec::with_capacity(raw.routes.len());
        let mut unsigned = Vec::new();
        for (i, r) in raw.routes.into_iter().enumerate() {
            let key = format!("routes[{i}]");
            unsigned.extend(self.unsigned_warnings(&key, &r.subscribers));
            path_spans.push((r.path.get_ref().clone(), r.path.span()));
            if let Some(prev) = paths.insert(route::path_likeness(r.path.get_ref()), i) {
                let (this, other) = (r.path.get_ref(), &path_spans[prev].0);
                let why = match this == other {
                    true => format!("duplicate route path {this:?} (also routes[{prev}].path)"),
                    false => format!(
                        "route path {this:?} differs from routes[{prev}].path {other:?} only by a trailing or \
                         doubled '/' or a percent-encoded letter: requests are matched to the path exactly, so \
                         one of them would get the other's callbacks by a typo; use one path"
                    ),
                };
                return Err(self.err(format!("{key}.path"), Some(r.path.span()), why));
            }
            if let Some(prev) = route_names.insert(r.name.get_ref().clone(), i) {
                return Err(self.err(
                    format!("{key}.name"),
                    Some(r.name.span()),
                    format!("duplicate route name {:?} (also routes[{prev}].name)", r.name.get_ref()),
                ));
            }
            routes.push(self.route(&key, r, &defaults, &mut sub_names)?);
        }
        if routes.is_empty() {
            return Err(self.err(
                "routes",
                None,
                "no routes configured: add at least one [[routes]] with a [[routes.subscribers]]",
            ));
        }
        self.pull_paths_free(&routes, &path_spans)?;
        self.no_placeholder_secrets(&exposed.server, &routes)?;
        self.pull_tokens_not_route_tokens(&routes)?;
        self.pull_tokens_own(&routes)?;
        self.admin_token_not_shared(admin_token.as_ref(), &routes)?;
        self.public_url_present(&server, &routes)?;
        let trust_everyone = self.proxies_trusting_everyone(&server, &routes)?;
        let mut warnings = Vec::new();
        let mut media = self.media(raw.media, &store.path, &mut warnings)?;
        warnings.extend(self.media_outlives_events(&mut media, &store, &routes));
        warnings.extend(self.retention_warnings(&store, &routes));
        warnings.extend(self.task_retention_warnings(&store, &routes));
        if matches!(store.backend, StoreBackend::Nats(_)) {
            self.nats_names(&routes)?;
            warnings.extend(self.nats_unused_keys());
        }
        warnings.extend(self.after_archive_warnings(&routes));
        warnings.extend(self.open_route_warnings(&routes));
        warnings.extend(route::path_warnings(self.file, &routes));
        warnings.extend(unsigned);
        warnings.extend(empty_store_path);
        warnings.extend(temporary_store_path);
        warnings.extend(foreign_files);
        warnings.extend(small_cache);
        warnings.extend(self.pull_path_warnings(&routes));
        warnings.extend(self.weak_token_warnings(&exposed.server, &routes));
        warnings.extend(self.plain_http_warning(&server));
        warnings.extend(trust_everyone);
        warnings.extend(self.pull_body_warnings(&server, &routes));
        warnings.extend(self.shutdown_grace_warning(&server));
        warnings.extend(self.acme_port_warning(&server));
        warnings.extend(self.admin_token_warning(exposed.admin.unwrap_or(admin_listen), admin_token.as_ref()));
        warnings.extend(self.admin_plain_http_warning(exposed.admin));
        warnings.extend(self.admin_port_warning(&server.listen, admin_listen));
        warnings.extend(self.open_file_warning());
        warnings.extend(body_memory);
        let archives = routes.iter().any(|r| !r.media.is_empty());
        if let (StoreBackend::Nats(_), true) = (&store.backend, archives) {
            if let MediaStoreConfig::Local(dir) = &media.store {
                warnings.push(format!(
                    "{}: key `media.store`: with store.backend = \"nats\" every relay archives into its own {} \
                     (the cluster fetches each URL once, so a file is on one relay's disk only): \
                     use an S3 bucket, or a directory every relay shares",
                    self.file.display(),
                    dir.display()
                ));
            }
        }
        Ok(Config {
            file: self.file.to_path_buf(),
            server,
            store,
            admin: AdminConfig {
                listen: admin_listen,
                token: admin_token,
            },
            log,
            media,
            routes,
            warnings,
        })
    }
}

/// Route and subscriber names: used in metrics labels, logs and store keys
/// (also how the admin API and the CLI tell a name from a mistake).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
