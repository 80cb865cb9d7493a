//! Shared fixtures for the integration tests: a daemon on port 0, recording
//! subscriber servers, HTTP(S) clients, generated certificates, and the real
//! binary for crash tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpSocket};

pub const RUNWAY_BODY: &str = r#"{"code": 200, "msg": "All generated successfully.", "data": {"task_id": "ee603959-debb-48d1-98c4-a6d1c717eba6", "video_id": "485da89c", "video_url": "https://file.com/k/x.mp4", "image_url": "https://file.com/m/x.png"}}"#;

pub fn runway(task: &str) -> String {
    format!(
        r#"{{"code":200,"msg":"All generated successfully.","data":{{"task_id":"{task}","video_id":"v-{task}","video_url":"https://file.com/k/{task}.mp4"}}}}"#
    )
}

/// Start the daemon in-process with `config` (TOML) written to `dir/config.toml`.
pub async fn start(dir: &Path, config: &str) -> hookrelay::Handle {
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let cfg = hookrelay::Config::load(&path).unwrap_or_else(|e| panic!("test config invalid: {e}"));
    hookrelay::start(cfg).await.expect("daemon starts")
}

/// A config with one route `/hooks/t` (token "tok") and the given subscribers
/// (TOML for `[[routes.subscribers]]` tables), listening on port 0.
pub fn config(store: &Path, route_extra: &str, subscribers: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
read_timeout = "2s"

[store]
path = "{store}"

[admin]
listen = "127.0.0.1:0"

[delivery]
retry = ["100ms", "200ms"]
timeout = "2s"

[[routes]]
name = "t"
path = "/hooks/t"
tokens = ["tok"]
dedupe_key = ["/data/task_id", "/code"]
{route_extra}

{subscribers}
"#,
        store = store.display()
    )
}

pub fn subscriber_toml(name: &str, url: &str, extra: &str) -> String {
    format!("[[routes.subscribers]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n")
}

/// A subscriber URL where nothing listens (connections are refused).
pub const DOWN: &str = "http://127.0.0.1:9/";

/// Write a config file for the real binary; its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Send callbacks from `conns` connections until `stop` has passed or the daemon
/// stops answering; the acknowledged (event id, body) pairs.
pub async fn load_until(addr: std::net::SocketAddr, conns: usize, tag: &str, stop: Duration) -> Vec<(String, String)> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + stop;
    let mut tasks = Vec::new();
    for c in 0..conns {
        let acked = acked.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                if Instant::now() > deadline {
                    return;
                }
                let body = runway(&format!("{tag}-{c}-{i}"));
                match tokio::time::timeout(Duration::from_secs(2), callback(addr, &body)).await {
                    Ok((StatusCode::OK, v)) => acked
                        .lock()
                        .unwrap()
                        .push((v["id"].as_str().unwrap().to_string(), body)),
                    _ => return,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let v = acked.lock().unwrap().clone();
    v
}

/// Open the store at `data` (the daemon that used it has stopped).
pub fn open_store(data: &Path) -> hookrelay::store::Store {
    hookrelay::store::Store::open_sled(&hookrelay::store::Options {
        path: data.to_path_buf(),
        cache_bytes: 1 << 20,
        min_free: 0,
        compression: false,
    })
    .unwrap()
}

/// Pending deliveries of `sub` in a store no daemon runs on.
pub async fn backlog(store: &hookrelay::store::Store, sub: &str) -> u64 {
    let stats = store.subscriber_stats().await.unwrap();
    stats.iter().find(|s| s.name == sub).map_or(0, |s| s.backlog)
}

/// Every acknowledged event is in the store at `data`; the opened store.
pub async fn assert_stored(data: &Path, acked: &[(String, String)]) -> hookrelay::store::Store {
    let store = open_store(data);
    for (id, _) in acked {
        assert!(
            store.event(id.parse().unwrap()).await.unwrap().is_some(),
            "acknowledged {id} lost"
        );
    }
    store
}

/// A daemon with one route (`config`) and one subscriber `s` that answers 200.
pub async fn with_ok_subscriber() -> (tempfile::TempDir, Sub, hookrelay::Handle) {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(
        dir.path(),
        &config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), "")),
    )
    .await;
    (dir, sub, h)
}

/// A plain-HTTP POST; returns status, headers and body.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (StatusCode, HeaderMap, Bytes) {
    request(addr, None, "POST", path, headers, body.into()).await
}

/// A request over a fresh connection, optionally from a given local address.
pub async fn request(
    addr: SocketAddr,
    from: Option<IpAddr>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> (StatusCode, HeaderMap, Bytes) {
    let what = format!("{method} {path} to {addr}");
    let exchange = async move {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(ip) = from {
            socket.bind(SocketAddr::new(ip, 0)).unwrap();
        }
        let stream = socket.connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder().method(method).uri(path).header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = sender
            .send_request(req.body(Full::new(body)).unwrap())
            .await
            .expect("response");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        (parts.status, parts.headers, body)
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer within 20s: {what}"))
}

/// POST a callback to `/hooks/t?token=tok`; the parsed answer.
pub async fn callback(addr: SocketAddr, body: &str) -> (StatusCode, serde_json::Value) {
    let (s, _, b) = post(
        addr,
        "/hooks/t?token=tok",
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await;
    (s, serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null))
}

/// GET/POST on the admin API; the parsed JSON (or text) answer.
pub async fn admin(addr: SocketAddr, method: &str, path: &str) -> (StatusCode, serde_json::Value) {
    let (s, _, b) = request(addr, None, method, path, &[], Bytes::new()).await;
    let v =
        serde_json::from_slice(&b).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&b).into()));
    (s, v)
}

/// One request a subscriber received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub path: String,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
    }
}

/// How the subscriber answers the n-th request (0-based).
#[derive(Clone)]
pub enum Behaviour {
    Status(u16),
    /// Status and extra headers.
    With(u16, Vec<(&'static str, String)>),
    /// Never answer.
    Hang,
    /// Answer 200 after a delay.
    Slow(Duration),
}

pub type Script = Arc<dyn Fn(usize, &Received) -> Behaviour + Send + Sync>;

/// A subscriber server on 127.0.0.1 that records every request.
#[derive(Clone)]
pub struct Sub {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<tokio::sync::Notify>,
}

impl Sub {
    pub async fn start(script: Script) -> Sub {
        Self::start_on("127.0.0.1:0".parse().unwrap(), script).await
    }

    pub async fn ok() -> Sub {
        Self::start(Arc::new(|_, _| Behaviour::Status(200))).await
    }

    pub async fn start_on(addr: SocketAddr, script: Script) -> Sub {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let stop = Arc::new(tokio::sync::Notify::new());
        let (rec, stop2) = (received.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                    _ = stop2.notified() => return,
                };
                let rec = rec.clone();
                let script = script.clone();
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let rec = rec.clone();
                    let script = script.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let r = Received {
                            at: Instant::now(),
                            headers: parts.headers,
                            body,
                            path,
                        };
                        let n = {
                            let mut g = rec.lock().unwrap();
                            g.push(r.clone());
                            g.len() - 1
                        };
                        let (status, extra) = match script(n, &r) {
                            Behaviour::Status(s) => (s, vec![]),
                            Behaviour::With(s, h) => (s, h),
                            Behaviour::Hang => {
                                std::future::pending::<()>().await;
                                unreachable!()
                            }
                            Behaviour::Slow(d) => {
                                tokio::time::sleep(d).await;
                                (200, vec![])
                            }
                        };
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
                        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                        for (k, v) in extra {
                            resp.headers_mut().insert(k, v.parse().unwrap());
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Sub { addr, received, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}/callbacks", self.addr)
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Stop accepting new connections.
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    /// Wait until `pred` holds for the received requests, or panic after `limit`.
    pub async fn wait_for(&self, limit: Duration, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let all = self.all();
            if pred(&all) {
                return all;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; received {} requests", all.len());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A self-signed certificate for localhost / 127.0.0.1, as PEM files in `dir`.
pub fn write_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf, rustls::pki_types::CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path, cert.der().clone())
}

/// A TLS client trusting exactly `ca`, offering the given ALPN protocols.
pub fn tls_client(ca: &rustls::pki_types::CertificateDer<'static>, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// The real binary, started with a config file; its stderr collected.
pub struct Bin {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Bin {
    pub fn start(config_path: &Path, envs: &[(&str, &str)]) -> Bin {
        Self::spawn(Command::new(env!("CARGO_BIN_EXE_hookrelay")), config_path, envs)
    }

    /// Started under `prlimit --as=BYTES`: allocations past that address-space
    /// size fail (as they would under strict overcommit or a memory limit).
    pub fn start_with_address_space(config_path: &Path, bytes: u64) -> Bin {
        assert!(
            Command::new("prlimit").arg("--version").output().is_ok(),
            "prlimit (util-linux) is needed for this test"
        );
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--as={bytes}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_hookrelay"));
        Self::spawn(cmd, config_path, &[])
    }

    fn spawn(mut cmd: Command, config_path: &Path, envs: &[(&str, &str)]) -> Bin {
        cmd.args(["run", "--config"])
            .arg(config_path)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .env("RUST_LOG", "info");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn hookrelay");
        let stderr = child.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel::<(Option<SocketAddr>, Option<SocketAddr>)>();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Human lines say `addr=1.2.3.4:5`, JSON lines `"addr":"1.2.3.4:5"`.
                let addr = |marker: &str| -> Option<SocketAddr> {
                    if !line.contains(marker) {
                        return None;
                    }
                    if let Some(rest) = line.split("addr=").nth(1) {
                        return rest.split_whitespace().next()?.parse().ok();
                    }
                    line.split("\"addr\":\"").nth(1)?.split('"').next()?.parse().ok()
                };
                let _ = tx.send((addr("listening for callbacks"), addr("admin API listening")));
                log2.lock().unwrap().push(line);
            }
        });
        let (mut addr, mut admin) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while addr.is_none() || admin.is_none() {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok((a, b)) => {
                    addr = addr.or(a);
                    admin = admin.or(b);
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("hookrelay exited early ({status}): {:?}", log.lock().unwrap());
                    }
                    assert!(
                        Instant::now() < deadline,
                        "hookrelay did not start: {:?}",
                        log.lock().unwrap()
                    );
                }
            }
        }
        Bin {
            child,
            addr: addr.unwrap(),
            admin: admin.unwrap(),
            log,
        }
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the binary with `args`; success, stdout, stderr.
pub fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Count how many ids in `want` the subscriber has seen as `webhook-id`.
pub fn seen_ids(sub: &Sub) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in sub.all() {
        *m.entry(r.header("webhook-id").to_string()).or_insert(0) += 1;
    }
    m
}
