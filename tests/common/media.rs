//! `[media]`, the archive's section of the config file, as a typed builder
//! that `TestConfig::media` takes. Test default: `min_free = 0` (a test
//! never depends on the machine's free space); every other key is left out
//! unless set, so the daemon's defaults apply. Watching the archive is
//! `archive`'s job; the S3 store's table is `s3::S3`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::config::{dur, TestConfig};
use super::route::{Route, Subscriber};
use super::s3::S3;
use super::subscriber::DOWN;

/// The test defaults with `[media]`: route `t` keeps a subscriber (`t-idle`,
/// at `DOWN`) because every route needs one, and no media test sends to `t`;
/// the routes that archive are added with `TestConfig::route`.
pub fn media_config(dir: &Path, media: Media) -> TestConfig {
    TestConfig::new(dir)
        .subscriber(Subscriber::new("t-idle", DOWN))
        .media(media)
}

/// A relay on NATS (`servers`, replicas 1) archiving to `archive` (private
/// addresses allowed), with route `runway` (`kie-runway`, no token) whose
/// one subscriber `later` at `sub_url` waits for the media (`after_archive`).
pub fn after_archive_on_nats(dir: &Path, archive: &Path, sub_url: &str, servers: Vec<String>) -> TestConfig {
    let route = preset_route("runway", "kie-runway").subscriber(Subscriber::new("later", sub_url).after_archive());
    media_config(dir, Media::new().dir(archive).allow_private())
        .route(route)
        .nats(servers, 1)
}

/// `store =`: a directory, or an S3 bucket.
#[derive(Clone, Serialize)]
#[serde(untagged)]
enum Store {
    Dir(PathBuf),
    S3 { s3: S3 },
}

/// A route `NAME` at `/hooks/NAME` (no token: `allow_anyone`) starting from
/// provider preset `preset`; add its subscribers with `Route::subscriber`.
pub fn preset_route(name: &str, preset: &str) -> Route {
    Route::new(name, &format!("/hooks/{name}"))
        .preset(preset)
        .allow_anyone()
}

/// The `[media]` table.
#[derive(Clone, Serialize)]
pub struct Media {
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<Store>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_private: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allow_networks: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retention: Option<String>,
    min_free: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
}

impl Default for Media {
    fn default() -> Self {
        Media::new()
    }
}

impl Media {
    /// Files in the default directory (`media` under the store), `min_free = 0`.
    pub fn new() -> Media {
        Media {
            store: None,
            max_size: None,
            timeout: None,
            concurrency: None,
            retry: None,
            allow_private: None,
            allow_networks: vec![],
            retention: None,
            min_free: 0,
            ca_file: None,
        }
    }
    /// `store = "DIR"`.
    pub fn dir(mut self, dir: &Path) -> Self {
        self.store = Some(Store::Dir(dir.into()));
        self
    }
    /// `store = { s3 = … }`.
    pub fn s3(mut self, s3: S3) -> Self {
        self.store = Some(Store::S3 { s3 });
        self
    }
    /// `max_size` in bytes.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
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
    pub fn retry(mut self, steps: impl IntoIterator<Item = Duration>) -> Self {
        self.retry = Some(steps.into_iter().map(dur).collect());
        self
    }
    /// `allow_private = true`: the loopback file servers of the tests are reachable.
    pub fn allow_private(mut self) -> Self {
        self.allow_private = Some(true);
        self
    }
    /// Non-public CIDRs allowed anyway.
    pub fn allow_networks<'a>(mut self, nets: impl IntoIterator<Item = &'a str>) -> Self {
        self.allow_networks = nets.into_iter().map(Into::into).collect();
        self
    }
    pub fn retention(mut self, d: Duration) -> Self {
        self.retention = Some(dur(d));
        self
    }
    /// `min_free` in bytes.
    pub fn min_free(mut self, bytes: u64) -> Self {
        self.min_free = bytes;
        self
    }
    pub fn ca_file(mut self, path: &Path) -> Self {
        self.ca_file = Some(path.into());
        self
    }
}
