//! What the archiver runs with, built from `[media]` and the routes' provider
//! keys: the fetcher (address policy, size cap, timeout), the media store,
//! the retry schedule, concurrency, retention, and one provider client per
//! route that has a key (it refreshes expired URLs).
//!
//! Building can fail (a media directory that cannot be created, an unusable
//! CA file or provider base URL): start and reload do it before changing
//! anything. A reload that keeps the store's settings keeps the store itself,
//! so downloads in flight are not disturbed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{AddressPolicy, FetchOptions, Fetcher, LocalStore, MediaStore, S3Settings, S3Store};
use crate::auth::credential_text;
use crate::config::{Config, MediaStoreConfig, StoreBackend};
use crate::delivery::retry::RetrySchedule;
use crate::provider::{ApiKey, ClientConfig, ProviderClient};

/// What a changed `media.store` means for the files archived before.
pub(super) const MOVED: &str = "new downloads go to the new store; files archived before stay in the old one, \
     where they are neither served nor deleted by retention: move them to the new store (same layout: ab/abcd…) \
     or change media.store back";

/// Why the media settings cannot be used (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("media.store: {0}")]
    Store(String),
    #[error("media: {0}")]
    Fetcher(String),
    #[error("routes.{route}.provider: {message}")]
    Provider { route: String, message: String },
}

/// Where the store is, compared across reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoreKey {
    store: MediaStoreConfig,
    ca_file: Option<PathBuf>,
    /// The CA file's contents when read: one replaced under the same name
    /// (a private CA rotated) is another store's trust, as for subscribers.
    ca_pem: Option<Vec<u8>>,
}

impl StoreKey {
    /// What opening the store depends on: a local store's directory
    /// (canonicalised: the same directory spelled another way is the same
    /// store), an S3 store's settings and `ca_file` (a local one has no use
    /// for it).
    fn of(m: &crate::config::MediaConfig) -> StoreKey {
        match &m.store {
            MediaStoreConfig::Local(dir) => StoreKey {
                store: MediaStoreConfig::Local(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone())),
                ca_file: None,
                ca_pem: None,
            },
            MediaStoreConfig::S3(_) => StoreKey {
                store: m.store.clone(),
                ca_file: m.ca_file.clone(),
                ca_pem: m
                    .ca_file
                    .as_ref()
                    .and_then(|p| crate::config::small_file::read(p, crate::config::small_file::PEM_MAX).ok()),
            },
        }
    }
}

/// The archiver's settings; a reload swaps them whole.
pub struct ArchiveSettings {
    pub fetcher: Fetcher,
    pub store: MediaStore,
    store_key: StoreKey,
    pub retry: RetrySchedule,
    pub concurrency: usize,
    /// Stored files go this long after they were archived.
    pub retention: Duration,
    /// Partial files of a local store not written to for this long are a
    /// crashed download's (removed at start-up and by the retention sweep).
    pub stale_parts: Duration,
    /// By route name: the client that refreshes that route's expired URLs
    /// (routes with the same key and base URL share one).
    pub providers: HashMap<String, ProviderClient>,
    /// Consecutive 403/404/410 answers of each URL without a provider key
    /// (kept across reloads; see `super::job::GoneCounts`).
    pub(super) gone: super::job::GoneCounts,
}

impl ArchiveSettings {
    /// Build from a validated config; `current` lends its store when the
    /// store settings did not change, and its provider clients (their pacing
    /// and pause) where a route keeps its key and base URL.
    pub fn build(config: &Config, current: Option<&ArchiveSettings>) -> Result<ArchiveSettings, SetupError> {
        let m = &config.media;
        let store_key = StoreKey::of(m);
        let store = match current.filter(|c| c.store_key == store_key).map(|c| &c.store) {
            Some(same) => same.clone(),
            // Stale partial files (a crash's) go at start-up; a reload opening
            // another directory leaves them to the retention sweep.
            None => open_store(
                &store_key,
                m.min_free,
                &super::local::owner_tag(&config.store.path),
                current.is_none().then(|| super::local::stale_part_age(m.timeout)),
            )?,
        };
        let store = match store {
            MediaStore::Local(l) => {
                let floor = local_floor(config, l.root());
                // Only where downloads happen, as `check-config` says it
                // (a relay archiving nothing was warned at every start).
                if let Some(w) = raised_floor_warning(config, floor).filter(|_| config.archives_media()) {
                    tracing::warn!("{w}");
                }
                MediaStore::Local(l.with_min_free(floor))
            }
            other => other,
        };
        if let Some(old) = current
            .map(|c| c.store.location())
            .filter(|old| *old != store.location())
        {
            // The archive's records name files by digest in the store they
            // were written to: the new store has none of them.
            tracing::warn!(from = %old, to = %store.location(), "media.store changed: {MOVED}");
        }
        let fetcher = Fetcher::new(FetchOptions {
            policy: AddressPolicy {
                allow_private: m.allow_private,
                allowed_nets: m.allow_networks.clone(),
            },
            timeout: m.timeout,
            max_size: m.max_size,
            ca_file: m.ca_file.clone(),
            ..FetchOptions::default()
        })
        .map_err(|e| SetupError::Fetcher(e.to_string()))?;
        let mut providers = HashMap::new();
        for r in &config.routes {
            let Some(p) = &r.provider else { continue };
            let err = |message: String| SetupError::Provider {
                route: r.name.clone(),
                message,
            };
            let key = ApiKey::new(credential_text(&p.api_key)).map_err(err)?;
            // One client per key and base URL: its pacing and its pause after
            // a 429 are the key's, whichever routes use it, and they outlive
            // a reload that keeps the key.
            let same = providers
                .values()
                .chain(current.into_iter().flat_map(|c| c.providers.values()))
                .find(|c: &&ProviderClient| c.serves(&p.base_url, &key))
                .cloned();
            let client = match same {
                Some(client) => client,
                None => {
                    ProviderClient::new(ClientConfig::new(p.base_url.clone(), key)).map_err(|e| err(e.to_string()))?
                }
            };
            providers.insert(r.name.clone(), client);
        }
        Ok(ArchiveSettings {
            fetcher,
            store,
            store_key,
            retry: m.retry.clone(),
            concurrency: m.concurrency,
            retention: m.retention,
            stale_parts: super::local::stale_part_age(m.timeout),
            providers,
            gone: current.map(|c| c.gone.clone()).unwrap_or_default(),
        })
    }
}

impl ArchiveSettings {
    /// Whether `other` writes to the same store, opened once (a reload that
    /// keeps the store settings lends it on).
    pub fn shares_store(&self, other: &ArchiveSettings) -> bool {
        self.store_key == other.store_key
    }
}

/// The free-space floor of a local media directory: `media.min_free`, but
/// on the embedded store's disk at least `store.min_free` plus what each
/// download in flight may write past a floor before its writer notices
/// ([`super::local::OVERSHOOT_PER_DOWNLOAD`]): downloads, the largest
/// writes, must never take that disk below the floor where ingest refuses
/// callbacks (nor sled to a full disk with `media.min_free = 0`).
fn local_floor(config: &Config, root: &Path) -> u64 {
    let m = &config.media;
    let store = &config.store;
    let shared = matches!(store.backend, StoreBackend::Sled)
        && matches!((device_of(root), device_of(&store.path)), (Some(a), Some(b)) if a == b);
    if !shared {
        return m.min_free;
    }
    let in_flight = super::local::OVERSHOOT_PER_DOWNLOAD.saturating_mul(m.concurrency as u64);
    m.min_free.max(store.min_free.saturating_add(in_flight))
}

/// What `hookrelay check-config` (and the log at start and reload) says
/// when a local media directory's floor is raised above `media.min_free`.
pub fn floor_warning(config: &Config) -> Option<String> {
    match &config.media.store {
        crate::config::MediaStoreConfig::Local(dir) => raised_floor_warning(config, local_floor(config, dir)),
        _ => None,
    }
}

fn raised_floor_warning(config: &Config, floor: u64) -> Option<String> {
    let (media, store) = (config.media.min_free, config.store.min_free);
    (floor > media).then(|| {
        format!(
            "media.min_free ({media} bytes): the media directory is on the embedded store's disk and this leaves too \
             little room above store.min_free ({store} bytes) for the downloads in flight: downloads stop at \
             {floor} bytes free instead, so they never make ingest refuse callbacks (set media.min_free to at least \
             that to silence this)"
        )
    })
}

/// The device (file system) holding `path`, or its nearest existing parent.
fn device_of(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    path.ancestors()
        .find_map(|p| std::fs::metadata(p).ok())
        .map(|md| md.dev())
}

fn open_store(k: &StoreKey, min_free: u64, owner: &str, clean: Option<Duration>) -> Result<MediaStore, SetupError> {
    match &k.store {
        MediaStoreConfig::Local(dir) => LocalStore::open_dir(dir, min_free, owner, clean)
            .map(MediaStore::Local)
            .map_err(|e| SetupError::Store(e.to_string())),
        MediaStoreConfig::S3(s) => S3Store::new(&S3Settings {
            s3: s.clone(),
            ca_file: k.ca_file.clone(),
            part_size: super::s3::DEFAULT_PART_SIZE,
            request_timeout: super::s3_http::REQUEST_TIMEOUT,
        })
        .map(MediaStore::S3)
        .map_err(|e| SetupError::Store(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// An S3 store trusting `ca_file` (nothing is asked of it here).
    fn s3_with_ca(dir: &Path, ca_file: &Path, current: Option<&ArchiveSettings>) -> ArchiveSettings {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[store]\npath = \"{}\"\n[media]\nca_file = \"{}\"\n\
             store = {{ s3 = {{ bucket = \"b\", endpoint = \"https://127.0.0.1:9\", access_key = \"k\", secret_key = \"s\" }} }}\n\
             [[routes]]\nname = \"r\"\npath = \"/hooks/r\"\nallow_anyone = true\n[[routes.subscribers]]\nname = \"s\"\n\
             url = \"http://127.0.0.1:9000/\"\n",
            dir.join("data").display(),
            ca_file.display()
        );
        let config = crate::config::Config::parse(&dir.join("config.toml"), &text).unwrap();
        ArchiveSettings::build(&config, current).unwrap()
    }

    /// A reload after the S3 endpoint's private CA was replaced in the same
    /// file opens the store again, trusting the new CA; the same file
    /// unchanged lends the store on. Before, the store was kept with the
    /// old trust until a restart, every upload failing (reload review,
    /// stop 71).
    #[test]
    fn a_ca_file_replaced_under_its_name_is_a_new_s3_store_at_the_reload() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let pem = |name: &str| crate::tls::test_cert::self_signed(name).0.pem();
        std::fs::write(&ca, pem("ca-a.example")).unwrap();
        let first = s3_with_ca(dir.path(), &ca, None);
        let same = s3_with_ca(dir.path(), &ca, Some(&first));
        assert!(first.shares_store(&same), "the same file lends the store on");
        std::fs::write(&ca, pem("ca-b.example")).unwrap();
        let rotated = s3_with_ca(dir.path(), &ca, Some(&same));
        assert!(
            !same.shares_store(&rotated),
            "a CA replaced under its name kept the store"
        );
    }
}
