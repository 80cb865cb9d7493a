//! Automatic certificates from an ACME CA (RFC 8555) for the public HTTPS
//! listeners (`[server] tls = { acme = { … } }`).
//!
//! Owns: the certificate the listeners serve when ACME is configured, its
//! renewal (when a fraction of its validity is left, with back-off while the
//! CA fails, the current certificate served all along), the state directory
//! that keeps the account key, the certificate and the times of the last
//! issued ones across restarts (a valid cached certificate means no ACME
//! request at start; the daily cap survives a restart), and the TLS-ALPN-01
//! answers (RFC 8737) given on the listener itself: no port 80.
//!
//! The ACME protocol is rustls-acme's (`AcmeState`, one per order); this
//! module decides when to order and what to serve. Not here: the listener
//! (`server` accepts with [`Acme::server_config`] and closes connections for
//! which [`is_challenge`] holds), TOML (`config`), the rustls configuration
//! itself (`tls`), metrics registration (`metrics`).

mod cache;
mod ledger;
mod pace;
mod renew;
mod resolver;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::config::AcmeSettings;
use crate::tls::{self, rfc3339, CertInfo, TlsError};

/// The ALPN protocol of TLS-ALPN-01 validation connections.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Why the certificate manager cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error(
        "cannot use the ACME state directory {path} (beside store.path): {source}{}",
        crate::private_dir::unwritable_hint(source)
    )]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("ACME: {0}")]
    Tls(#[from] TlsError),
}

/// When and how persistently to order; the defaults suit a public CA.
#[derive(Debug, Clone)]
pub struct Options {
    /// Renew once less than this fraction of the certificate's lifetime is
    /// left: 1/3 is day 60 of a 90-day certificate, leaving a month of retries.
    pub renew_remaining: f64,
    /// Wait after the first failed order; doubles with each further failure.
    pub retry_first: Duration,
    /// Longest wait between failed orders (CAs limit failed validations per hour).
    pub retry_max: Duration,
    /// An order still unfinished after this is abandoned and counted as a
    /// failure: the ACME HTTP client has no timeouts of its own.
    pub attempt_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            renew_remaining: 1.0 / 3.0,
            retry_first: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            attempt_timeout: Duration::from_secs(600),
        }
    }
}

/// What the admin API and metrics show.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// The certificate being served; `None` until the first one is issued.
    pub certificate: Option<CertInfo>,
    /// When the next renewal is due (from the certificate and `renew_remaining`).
    pub renew_at: Option<SystemTime>,
    /// Failed orders since start (the `hookrelay_acme_failures_total` counter).
    pub failures: u64,
    /// Failed orders since the last success: how deep in back-off we are.
    pub consecutive_failures: u32,
    /// Why the last order failed (kept after a success, for the record).
    pub last_error: Option<String>,
    pub last_failure: Option<SystemTime>,
    /// When the order after a failure, or one waiting for the daily cap, will
    /// be tried; `None` when not waiting.
    pub next_attempt: Option<SystemTime>,
    /// The served certificate is a stand-in that is not fully valid for the
    /// configuration (it lacks some configured domains, or comes from
    /// another ACME directory, e.g. staging): why. Until the order for the
    /// configured domains succeeds.
    pub stand_in: Option<String>,
}

impl Status {
    /// The renewal and failure state for the admin API (`/api/status`).
    pub fn to_json(&self) -> serde_json::Value {
        let time = |t: Option<SystemTime>| t.map(rfc3339);
        serde_json::json!({
            "renew_at": time(self.renew_at),
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "last_failure": time(self.last_failure),
            "next_attempt": time(self.next_attempt),
            "stand_in": self.stand_in,
        })
    }
}

/// The ACME certificate manager; cheap to clone.
#[derive(Clone)]
pub struct Acme {
    inner: Arc<Inner>,
}

struct Inner {
    /// Domains, contact, directory: what each order asks for.
    settings: AcmeSettings,
    options: Options,
    /// Account key and certificate across restarts.
    dir: cache::StateDir,
    /// Inside the listener's `ServerConfig`: installing a certificate here is the renewal.
    resolver: Arc<resolver::Resolver>,
    /// TLS client for the ACME directory: system roots plus `ca_file`.
    client: Arc<rustls::ClientConfig>,
    status: Mutex<Status>,
    /// Shared with the metrics registry.
    failures: Counter,
}

/// Where the daemon keeps ACME state: `acme/` beside the store directory
/// (`/var/lib/hookrelay/acme` for `store.path = "/var/lib/hookrelay/data"`,
/// inside the unit's `StateDirectory`).
pub fn state_dir(store_path: &Path) -> PathBuf {
    match store_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join("acme"),
        _ => PathBuf::from("acme"),
    }
}

/// Why the state directory `dir` is another program's, if it looks so
/// (the start refuses it; `check-config` says so first).
pub fn foreign_state(dir: &Path) -> Option<String> {
    cache::foreign(dir)
}

/// A listener connection whose handshake negotiated `acme-tls/1`: a CA's
/// TLS-ALPN-01 validation, answered by the handshake itself. RFC 8737: no
/// application data follows, so the listener closes it instead of serving HTTP.
pub fn is_challenge(conn: &rustls::ServerConnection) -> bool {
    conn.alpn_protocol() == Some(ACME_TLS_ALPN)
}

impl Acme {
    /// Open (or create) the state directory and load a cached certificate for
    /// these domains and this directory URL, if there is one: it is served at
    /// once and nothing is asked of the CA until it is due for renewal.
    pub fn new(
        settings: &AcmeSettings,
        state_dir: &Path,
        options: Options,
        failures: Counter,
    ) -> Result<Acme, AcmeError> {
        let dir = cache::StateDir::open(state_dir).map_err(|source| AcmeError::StateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let client = Arc::new(tls::client_config(settings.ca_file.as_deref())?);
        let inner = Inner {
            settings: settings.clone(),
            options,
            dir,
            resolver: Arc::default(),
            client,
            status: Mutex::default(),
            failures,
        };
        let exact = inner.exact();
        if let Some((key, info)) = exact
            .as_ref()
            .filter(|(_, info)| info.valid_at(crate::clock::time_of_day()))
        {
            tracing::info!(
                names = ?info.names,
                expires = %rfc3339(info.not_after),
                "serving the cached ACME certificate"
            );
            inner.install(key.clone(), info.clone());
        } else if let Some((path, key, info, short)) = inner.stand_in() {
            tracing::warn!(
                names = ?info.names,
                domains = ?settings.domains,
                file = %path.display(),
                expires = %rfc3339(info.not_after),
                not_fully_valid = ?short,
                "no valid cached ACME certificate for these domains and this directory; serving the valid cached \
                 one covering most of them (from this directory if it can, else the newest) while one for the \
                 configured domains is ordered now"
            );
            inner.install(key, info);
            let mut s = inner.lock_status();
            s.stand_in = short;
            // Due at once: the order for the configured names runs
            // (and backs off if it fails) while this one serves.
            s.renew_at = Some(crate::clock::time_of_day());
        } else if let Some((key, info)) = exact {
            // Expired (or not yet valid) and nothing better cached: served
            // as before (certificate_problem says so), ordered at once.
            tracing::warn!(
                names = ?info.names,
                expires = %rfc3339(info.not_after),
                "the cached ACME certificate is not valid now and no other cached one covers these domains; \
                 ordering a new one"
            );
            inner.install(key, info);
            inner.lock_status().renew_at = Some(crate::clock::time_of_day());
        } else {
            tracing::info!(
                domains = ?settings.domains,
                directory = %crate::auth::redact_url(&settings.directory),
                "no ACME certificate yet; ordering one (HTTPS handshakes fail until it is issued)"
            );
        }
        Ok(Acme { inner: Arc::new(inner) })
    }

    /// The listeners' TLS configuration: certificates from this manager, ALPN
    /// `h2`, `http/1.1` and `acme-tls/1` (validation handshakes offer only
    /// that one). It never needs replacing: renewals swap the certificate
    /// inside its resolver.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        tls::resolver_server_config(self.inner.resolver.clone(), &[ACME_TLS_ALPN])
    }

    pub fn status(&self) -> Status {
        let mut s = self.inner.lock_status().clone();
        s.failures = self.inner.failures.get();
        s
    }

    /// What this manager orders (a reload compares it with the new config).
    pub fn settings(&self) -> &AcmeSettings {
        &self.inner.settings
    }

    /// The state directory in use.
    pub fn dir(&self) -> &Path {
        self.inner.dir.path()
    }

    /// Order when due, for ever: spawn it and abort it at shutdown.
    pub async fn run(self) {
        renew::run(self.inner).await
    }
}

impl Inner {
    fn lock_status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn contact(&self) -> Vec<String> {
        vec![format!("mailto:{}", self.settings.email)]
    }

    /// The cached certificate for the configured names from this directory,
    /// whatever its dates: under its name, or under the name it had before
    /// names were sorted (renamed to the new one when found there). `None`
    /// when missing, unreadable or unparseable (logged).
    fn exact(&self) -> Option<(Arc<CertifiedKey>, CertInfo)> {
        let (domains, directory) = (&self.settings.domains, &self.settings.directory);
        let file = self.dir.cert_file(domains, directory);
        let legacy = self.dir.legacy_cert_file(domains, directory);
        let mut found = cache::StateDir::read(&file).map(|p| p.map(|p| (p, file.clone())));
        if matches!(found, Ok(None)) && legacy != file {
            found = cache::StateDir::read(&legacy).map(|p| p.map(|p| (p, legacy.clone())));
        }
        let (pem, path) = match found {
            Ok(Some(f)) => f,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot read the cached ACME certificate; ordering a new one");
                return None;
            }
        };
        match tls::parse_bundle(&pem) {
            Ok((key, info)) => {
                if path != file {
                    match std::fs::rename(&path, &file) {
                        Ok(()) => tracing::info!(from = %path.display(), to = %file.display(),
                            "cached ACME certificate renamed to its sorted-names file"),
                        Err(e) => tracing::warn!(from = %path.display(), to = %file.display(), error = %e,
                            "cannot rename the cached ACME certificate to its sorted-names file; serving it from its old name"),
                    }
                }
                Some((key, info))
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cached ACME certificate unusable; ordering a new one");
                None
            }
        }
    }

    /// When there is no valid cached certificate for the configured names
    /// (the `domains` or `directory` changed, or its file expired or is
    /// damaged): of the cached certificates valid now that name at least one
    /// configured domain, the one covering the most of them, then one from
    /// this directory, then the newest (latest issued). With why it is not
    /// fully valid for the configuration, if it is not: names it lacks, or
    /// another directory.
    fn stand_in(&self) -> Option<(PathBuf, Arc<CertifiedKey>, CertInfo, Option<String>)> {
        let now = crate::clock::time_of_day();
        let wanted: Vec<String> = self.settings.domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        let files = match self.dir.cert_files() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(dir = %self.dir.path().display(), error = %e, "cannot list the ACME state directory");
                return None;
            }
        };
        let (path, key, info, covered, same_dir) = files
            .into_iter()
            .filter_map(|path| {
                let pem = cache::StateDir::read(&path).ok()??;
                let (key, info) = tls::parse_bundle(&pem).ok()?;
                let names: Vec<String> = info.names.iter().map(|n| n.to_ascii_lowercase()).collect();
                let covered = wanted.iter().filter(|w| names.contains(w)).count();
                let same_dir = self
                    .dir
                    .is_from(&path, &names, &self.settings.domains, &self.settings.directory);
                (info.valid_at(now) && covered > 0).then_some((path, key, info, covered, same_dir))
            })
            .max_by_key(|(_, _, info, covered, same_dir)| (*covered, *same_dir, info.not_before))?;
        let mut why = Vec::new();
        if covered < wanted.len() {
            let names: Vec<String> = info.names.iter().map(|n| n.to_ascii_lowercase()).collect();
            let lacks: Vec<&str> = wanted
                .iter()
                .filter(|w| !names.contains(w))
                .map(String::as_str)
                .collect();
            why.push(format!("does not cover {}", lacks.join(", ")));
        }
        if !same_dir {
            why.push("is from another ACME directory".to_string());
        }
        let why = (!why.is_empty()).then(|| why.join(" and "));
        Some((path, key, info, why))
    }

    fn install(&self, key: Arc<CertifiedKey>, info: CertInfo) {
        self.resolver.set_current(key);
        let mut s = self.lock_status();
        s.renew_at = Some(info.renew_at(self.options.renew_remaining));
        s.certificate = Some(info);
        s.stand_in = None;
        s.consecutive_failures = 0;
        s.next_attempt = None;
    }

    /// Record a failed order; the next one is tried after `retry_in`.
    fn failed(&self, error: &str, retry_in: Duration) {
        self.failures.inc();
        let mut s = self.lock_status();
        let now = crate::clock::time_of_day();
        s.consecutive_failures += 1;
        s.last_error = Some(error.to_string());
        s.last_failure = Some(now);
        s.next_attempt = Some(now + retry_in);
    }

    /// How long until the next order is due; zero when it is (or there is no certificate).
    fn due_in(&self) -> Duration {
        match self.lock_status().renew_at {
            Some(at) => at.duration_since(crate::clock::time_of_day()).unwrap_or_default(),
            None => Duration::ZERO,
        }
    }
}
