//! Raw → typed: the checks serde cannot make, each error naming file, key,
//! line and what is wrong. Store, log and delivery settings here; `[admin]`
//! ([`admin`]),
//! `[server]` ([`server`]) with its ACME block ([`acme`]), routes ([`route`],
//! [`route_media`]), subscribers ([`subscriber`]) and their pull settings
//! ([`pull`]), and `[media]` ([`media`]) in their own files; the shipped
//! example secrets on a public listener ([`placeholder`]).

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

    /// A `server.shutdown_grace` whose stop (grace plus the margin for closing
    /// the store) outlasts the shipped unit's `TimeoutStopSec`: systemd would
    /// kill the relay before it closed the store.
    fn shutdown_grace_warning(&self, server: &ServerConfig) -> Option<String> {
        use crate::supervise::{SHUTDOWN_MARGIN, UNIT_TIMEOUT_STOP};
        let stop = server.shutdown_grace.saturating_add(SHUTDOWN_MARGIN);
        (stop > UNIT_TIMEOUT_STOP).then(|| {
            format!(
                "{}: key `server.shutdown_grace`: a stop takes up to the grace plus {} s ({stop}), longer than \
                 the shipped unit's TimeoutStopSec={}s: under that unit, raise it to at least {stop} \
                 (`systemctl edit hookrelay`, then `TimeoutStopSec={}s` under [Service]), or systemd kills the \
                 relay before it closes the store (this check does not read the unit: once it is raised, or \
                 outside that unit, this warning does not apply)",
                self.file.display(),
                SHUTDOWN_MARGIN.as_secs(),
                UNIT_TIMEOUT_STOP.as_secs(),
                stop.as_secs().saturating_add(u64::from(stop.subsec_nanos() > 0)),
                stop = humantime::format_duration(stop),
            )
        })
    }

    /// `media.retention` must outlast every delivery that may still name a
    /// stored file: an event of a route that archives media is kept while
    /// its deliveries retry and `store.retention` after (a dead letter), and
    /// a replay then runs the schedule again. A shorter one removed files
    /// (and their URL rows) that an undelivered event still needed: the
    /// delivery said the event had no media. Such a setting is raised to
    /// that life, with a warning naming the key (a config that ran keeps
    /// starting), rather than checked per file at each sweep (which would
    /// need an index from URL to events on both backends).
    fn media_outlives_events(&self, media: &mut MediaConfig, store: &StoreConfig, routes: &[Route]) -> Option<String> {
        let span = routes
            .iter()
            .filter(|r| !r.media.is_empty())
            .flat_map(|r| &r.subscribers)
            // A subscriber's Retry-After lengthens each delay up to its
            // `max_retry_after`: the deliveries live that long.
            .map(|s| s.retry.longest_span_with_retry_after())
            .max()?;
        let need = store.retention.saturating_add(span.saturating_mul(2));
        if media.retention >= need {
            return None;
        }
        let need = Duration::from_secs(need.as_secs().saturating_add(1));
        let set = media.retention;
        media.retention = need;
        Some(format!(
            "{}: key `media.retention`: {} is shorter than the life of the events whose files it keeps \
             (store.retention, {}, plus twice the longest retry schedule of a subscriber of a route that \
             archives media, {} with jitter and each delay lengthened to its max_retry_after by a Retry-After, run again by a replay): files are kept {} so that a delivery \
             still due never finds its file gone; set it to at least that to silence this warning",
            self.file.display(),
            humantime::format_duration(set),
            humantime::format_duration(store.retention),
            humantime::format_duration(Duration::from_secs(span.as_secs().saturating_add(1))),
            humantime::format_duration(need),
        ))
    }

    /// Subscribers whose retry schedule (with the most jitter, each delay
    /// lengthened to `max_retry_after` by a `Retry-After`) outlasts the
    /// retention: their deliveries outlive the retention of their events.
    fn retention_warnings(&self, store: &StoreConfig, routes: &[Route]) -> Vec<String> {
        let long: Vec<(String, Duration)> = routes
            .iter()
            .flat_map(|r| &r.subscribers)
            .map(|s| (format!("{:?}", s.name), s.retry.longest_span_with_retry_after()))
            .filter(|(_, span)| *span > store.retention)
            .collect();
        let Some(longest) = long.iter().map(|(_, d)| *d).max() else {
            return Vec::new();
        };
        let names: Vec<&str> = long.iter().map(|(n, _)| n.as_str()).collect();
        let consequence = match store.backend {
            StoreBackend::Sled => {
                "its deliveries can still be retried after their event's retention (the event is kept until they end, \
                 a dead letter for the retention after it dies)"
            }
            // NATS removes the event at max_age whatever its deliveries' state.
            StoreBackend::Nats(_) => {
                "in cluster mode an event expires at the retention whether or not its deliveries ended, so retries \
                 still pending then are lost (neither sent nor kept as dead letters): raise store.retention or \
                 shorten the schedule"
            }
        };
        vec![format!(
            "{}: key `store.retention`: {} is shorter than the retry schedule of subscriber {} (up to {} with jitter and each delay \
             lengthened to its max_retry_after by a Retry-After): \
             {consequence}",
            self.file.display(),
            humantime::format_duration(store.retention),
            names.join(", "),
            humantime::format_duration(Duration::from_secs(longest.as_secs())),
        )]
    }
}

impl Validator<'_> {
    /// Pull subscribers on a relay that accepts bodies larger than
    /// `hookrelay forward` can receive in a pull answer.
    fn pull_body_warnings(&self, server: &crate::config::ServerConfig, routes: &[Route]) -> Vec<String> {
        let max = crate::pull::wire::MAX_FORWARDED_BODY;
        let pull = routes.iter().flat_map(|r| &r.subscribers).find(|s| s.pull().is_some());
        match pull {
            Some(s) if server.max_body > max => vec![format!(
                "{}: key `server.max_body`: {} bytes is more than hookrelay forward receives in a pull answer \
                 ({} MiB of body): a larger callback for pull subscriber {:?} (or any other) can only be \
                 pulled by another client; with hookrelay forward its leases run out until it is a dead letter",
                self.file.display(),
                server.max_body,
                max >> 20,
                s.name
            )],
            _ => Vec::new(),
        }
    }
}

impl Validator<'_> {
    /// `after_archive` subscribers on a route that archives nothing: they are
    /// delivered at once (with an empty `hookrelay-media`), probably not what
    /// was meant.
    fn after_archive_warnings(&self, routes: &[Route]) -> Vec<String> {
        routes
            .iter()
            .filter(|r| r.media.is_empty())
            .flat_map(|r| r.subscribers.iter().filter(|s| s.after_archive).map(move |s| (r, s)))
            .map(|(r, s)| {
                format!(
                    "{}: subscriber {:?}: after_archive = true, but route {:?} has no media pointers (no `media` key \
                     and no preset that sets one): its deliveries go out at once with an empty hookrelay-media",
                    self.file.display(),
                    s.name,
                    r.name
                )
            })
            .collect()
    }
}

impl Validator<'_> {
    /// `kie` signatures without a token: that signature covers the task id
    /// and the time, not the body, so a signed callback seen once can carry
    /// any body.
    fn open_route_warnings(&self, routes: &[Route]) -> Vec<String> {
        let mut out = Vec::new();
        for r in routes {
            let kie = matches!(r.signature, Some(crate::config::Signature::Kie { .. }));
            if kie && r.tokens.is_empty() && r.verify == crate::config::Verify::Off {
                out.push(format!(
                    "{}: route {:?}: the kie signature covers the task id and time, not the body: \
                     add tokens (or verify = \"fetch\") so that a callback's body cannot be replaced",
                    self.file.display(),
                    r.name
                ));
            }
        }
        out
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
