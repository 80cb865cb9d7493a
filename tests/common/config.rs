//! `TestConfig`: a typed builder for the daemon's config file, rendered to TOML
//! with the `toml` crate. Owns the test defaults (one route `t` at `/hooks/t`,
//! token `tok`, ports 0, short retries); does not start anything (see `daemon`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::media::Media;
use super::route::{Route, Secret, Subscriber};

/// `n` milliseconds; retry schedules and timeouts read better with it.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `n` seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A duration as the config file writes it ("100ms", "1h").
pub(super) fn dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `[server]`. Each field mirrors a key of the file; `None` leaves the key out
/// so the daemon's default applies (the same holds for every section below).
#[derive(Clone, Serialize)]
struct Server {
    listen: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_body: Option<u64>,
    read_timeout: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    trusted_proxies: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http2_max_streams: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shutdown_grace: Option<String>,
}

/// `[server] tls`: PEM files, or certificates from an ACME CA.
#[derive(Clone, Serialize)]
#[serde(untagged)]
enum Tls {
    Files { cert: PathBuf, key: PathBuf },
    Acme { acme: Acme },
}

/// `[server] tls = { acme = { … } }`: what the daemon orders from which CA.
/// Built by the test's CA fixture (`pebble::Pebble::acme`) or by hand for a
/// config that is only checked.
#[derive(Clone, Serialize)]
pub struct Acme {
    domains: Vec<String>,
    email: String,
    directory: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
}

impl Acme {
    pub fn new<'a>(domains: impl IntoIterator<Item = &'a str>, email: &str, directory: &str) -> Acme {
        Acme {
            domains: domains.into_iter().map(Into::into).collect(),
            email: email.into(),
            directory: directory.into(),
            ca_file: None,
        }
    }
    /// Replaces the names to order (a reload test changes them).
    pub fn domains<'a>(mut self, domains: impl IntoIterator<Item = &'a str>) -> Self {
        self.domains = domains.into_iter().map(Into::into).collect();
        self
    }
    /// Trust anchor for the directory's own HTTPS (a CA on loopback).
    pub fn ca_file(mut self, path: &Path) -> Self {
        self.ca_file = Some(path.into());
        self
    }
}

/// `[store]`.
#[derive(Clone, Serialize)]
struct Store {
    path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    retention: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_free: Option<u64>,
}

/// `[admin]`.
#[derive(Clone, Serialize)]
struct Admin {
    listen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<Secret>,
}

/// `[delivery]`: the defaults every subscriber inherits.
#[derive(Clone, Serialize)]
struct Delivery {
    retry: Vec<String>,
    timeout: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<usize>,
}

/// `[log]`.
#[derive(Clone, Serialize)]
struct Log {
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<String>,
}

/// The whole file, its sections in the order the shipped config.toml has them.
#[derive(Clone, Serialize)]
struct File {
    server: Server,
    store: Store,
    admin: Admin,
    delivery: Delivery,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<Log>,
    #[serde(skip_serializing_if = "Option::is_none")]
    media: Option<Media>,
    routes: Vec<Route>,
}

/// An edit of the rendered document, for what the typed keys cannot express.
type RawEdit = Arc<dyn Fn(&mut toml::Table) + Send + Sync>;

/// The config of a daemon whose files live in `dir` (`dir/config.toml`,
/// store `dir/data`). `new` gives today's test defaults; each setter names the
/// key it writes.
#[derive(Clone)]
pub struct TestConfig {
    /// Where the file is written and, by default, the store lives.
    dir: PathBuf,
    /// The document, section by section, in the order the daemon documents it.
    file: File,
    /// Edits applied after serialising, for configs the types cannot express.
    raw: Vec<RawEdit>,
}

impl TestConfig {
    /// `[server] listen` and `[admin] listen` on port 0, `read_timeout = "2s"`,
    /// store in `dir/data`, deliveries retried after 100 ms and 200 ms with a 2 s
    /// timeout, and route `t` at `/hooks/t` (token `tok`, dedupe key
    /// `/data/task_id` + `/code`) with no subscribers yet.
    pub fn new(dir: &Path) -> TestConfig {
        TestConfig {
            dir: dir.into(),
            file: File {
                server: Server {
                    listen: vec!["127.0.0.1:0".into()],
                    tls: None,
                    max_body: None,
                    read_timeout: dur(secs(2)),
                    idle_timeout: None,
                    trusted_proxies: vec![],
                    max_connections: None,
                    http2_max_streams: None,
                    shutdown_grace: None,
                },
                store: Store {
                    path: dir.join("data"),
                    retention: None,
                    cache: None,
                    min_free: None,
                },
                admin: Admin {
                    listen: "127.0.0.1:0".into(),
                    token: None,
                },
                delivery: Delivery {
                    retry: vec![dur(ms(100)), dur(ms(200))],
                    timeout: dur(secs(2)),
                    concurrency: None,
                },
                log: None,
                media: None,
                routes: vec![Route::new("t", "/hooks/t")
                    .tokens(["tok"])
                    .dedupe_key(["/data/task_id", "/code"])],
            },
            raw: vec![],
        }
    }

    /// Where `write` puts the file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// `[store] path`.
    pub fn data(&self) -> PathBuf {
        self.file.store.path.clone()
    }

    /// Adds a subscriber to route `t`.
    pub fn subscriber(self, s: Subscriber) -> Self {
        self.edit_route("t", |r| r.subscriber(s))
    }

    /// Adds another route.
    pub fn route(mut self, r: Route) -> Self {
        self.file.routes.push(r);
        self
    }

    /// Changes the route called `name` (e.g. route `t`'s tokens).
    pub fn edit_route(mut self, name: &str, f: impl FnOnce(Route) -> Route) -> Self {
        let i = self
            .file
            .routes
            .iter()
            .position(|r| r.name == name)
            .unwrap_or_else(|| panic!("no route {name}"));
        let r = self.file.routes.remove(i);
        self.file.routes.insert(i, f(r));
        self
    }

    /// `[server] listen`: one address (a fixed port, for a daemon that must
    /// come back on it or that a CA validates on).
    pub fn listen(mut self, addr: impl ToString) -> Self {
        self.file.server.listen = vec![addr.to_string()];
        self
    }
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.file.server.read_timeout = dur(d);
        self
    }
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.file.server.idle_timeout = Some(dur(d));
        self
    }
    /// `[server] max_body` in bytes.
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.file.server.max_body = Some(bytes);
        self
    }
    pub fn max_connections(mut self, n: usize) -> Self {
        self.file.server.max_connections = Some(n);
        self
    }
    pub fn http2_max_streams(mut self, n: u32) -> Self {
        self.file.server.http2_max_streams = Some(n);
        self
    }
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.file.server.shutdown_grace = Some(dur(d));
        self
    }
    pub fn trusted_proxies<'a>(mut self, nets: impl IntoIterator<Item = &'a str>) -> Self {
        self.file.server.trusted_proxies = nets.into_iter().map(Into::into).collect();
        self
    }
    /// `[server] tls` from PEM files.
    pub fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.file.server.tls = Some(Tls::Files {
            cert: cert.into(),
            key: key.into(),
        });
        self
    }
    /// `[server] tls = { acme = … }`.
    pub fn tls_acme(mut self, acme: Acme) -> Self {
        self.file.server.tls = Some(Tls::Acme { acme });
        self
    }
    pub fn retention(mut self, d: Duration) -> Self {
        self.file.store.retention = Some(dur(d));
        self
    }
    /// `[store] cache` in bytes.
    pub fn store_cache(mut self, bytes: u64) -> Self {
        self.file.store.cache = Some(bytes);
        self
    }
    /// `[store] min_free` in bytes.
    pub fn min_free(mut self, bytes: u64) -> Self {
        self.file.store.min_free = Some(bytes);
        self
    }
    /// `[store] path`.
    pub fn store_path(mut self, path: &Path) -> Self {
        self.file.store.path = path.into();
        self
    }
    pub fn admin_listen(mut self, addr: impl ToString) -> Self {
        self.file.admin.listen = addr.to_string();
        self
    }
    pub fn admin_token(mut self, token: impl Into<Secret>) -> Self {
        self.file.admin.token = Some(token.into());
        self
    }
    /// `[delivery] retry`: the default schedule for every subscriber.
    pub fn delivery_retry(mut self, steps: impl IntoIterator<Item = Duration>) -> Self {
        self.file.delivery.retry = steps.into_iter().map(dur).collect();
        self
    }
    pub fn delivery_timeout(mut self, d: Duration) -> Self {
        self.file.delivery.timeout = dur(d);
        self
    }
    pub fn delivery_concurrency(mut self, n: usize) -> Self {
        self.file.delivery.concurrency = Some(n);
        self
    }
    /// `[log] format`: "auto", "human" or "json".
    pub fn log_format(mut self, format: &str) -> Self {
        self.log().format = Some(format.into());
        self
    }
    /// `[log] level` (an `EnvFilter` directive).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log().level = Some(level.into());
        self
    }
    fn log(&mut self) -> &mut Log {
        self.file.log.get_or_insert(Log {
            level: None,
            format: None,
        })
    }

    /// `[store] backend = "nats"` on these servers, `replicas` copies of
    /// everything, a delivery taken over by another relay after 5 s (the
    /// sled path stays: nothing uses it).
    pub fn nats(self, servers: Vec<String>, replicas: usize) -> Self {
        self.raw(move |doc| {
            let store = doc
                .entry("store")
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .expect("store is a table");
            store.insert("backend".into(), "nats".into());
            let mut nats = toml::Table::new();
            nats.insert(
                "servers".into(),
                toml::Value::Array(servers.iter().map(|s| toml::Value::from(s.as_str())).collect()),
            );
            nats.insert("replicas".into(), toml::Value::Integer(replicas as i64));
            nats.insert("takeover".into(), "5s".into());
            store.insert("nats".into(), toml::Value::Table(nats));
        })
    }

    /// `store.nats.takeover` (after [`TestConfig::nats`], which sets 5 s).
    pub fn nats_takeover(self, t: &'static str) -> Self {
        self.raw(move |doc| {
            doc["store"]["nats"]
                .as_table_mut()
                .expect("store.nats is set")
                .insert("takeover".into(), t.into());
        })
    }

    /// `[media]`: the archive's settings (routes name media with `Route::preset`
    /// or `Route::media`).
    pub fn media(mut self, m: Media) -> Self {
        self.file.media = Some(m);
        self
    }

    /// Escape hatch for tests whose subject is config parsing: change the
    /// rendered document in a way the typed keys refuse to (a wrong type, say).
    pub fn raw(mut self, edit: impl Fn(&mut toml::Table) + Send + Sync + 'static) -> Self {
        self.raw.push(Arc::new(edit));
        self
    }

    /// `server.public_url` (where the provider calls back, for the submit
    /// proxy and `verify = "fetch"` routes).
    pub fn public_url(self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.raw(move |t| {
            t["server"]
                .as_table_mut()
                .unwrap()
                .insert("public_url".into(), toml::Value::String(url.clone()));
        })
    }

    /// The file's text: sections and keys in the daemon's documented order
    /// (sorted instead when a `raw` edit went through `toml::Table`).
    pub fn render(&self) -> String {
        if self.raw.is_empty() {
            return toml::to_string(&self.file).expect("test config renders");
        }
        let mut doc = toml::Table::try_from(&self.file).expect("test config serialises");
        for edit in &self.raw {
            edit(&mut doc);
        }
        toml::to_string(&doc).expect("test config renders")
    }

    /// Writes the file to `path()` at once (a temporary file renamed over
    /// it, as an editor saving safely does: a reload under way never reads
    /// half a file); that path.
    pub fn write(&self) -> PathBuf {
        let path = self.path();
        let part = path.with_extension("toml.part");
        std::fs::write(&part, self.render()).unwrap();
        std::fs::rename(&part, &path).unwrap();
        path
    }
}
