//! Fixtures for pull subscribers: a relay config with one, the real
//! `hookrelay forward` as a child process, a private "local service" that
//! records every message (and whether two deliveries of one id overlapped),
//! pull API calls, and signature checks with the official Standard Webhooks
//! library (Python). Include with `#[path = "common/pull.rs"] mod pull_kit;`
//! next to `mod common;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const TOKEN: &str = "laptop-pull-token";

/// `[[routes.subscribers]]` for pull subscriber `name` with `token`, `lease` and signing secret.
pub fn pull_sub(name: &str, token: &str, lease: &str) -> String {
    format!(
        "[[routes.subscribers]]\nname = \"{name}\"\npull = {{ token = \"{token}\", lease = \"{lease}\" }}\nsecret = \"{SECRET}\"\n"
    )
}

/// A port nobody listens on now (for a relay that must come back on the same one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `common::config` with the public listener on `port`.
pub fn on_port(config: String, port: u16) -> String {
    config.replacen(
        "listen = [\"127.0.0.1:0\"]",
        &format!("listen = [\"127.0.0.1:{port}\"]"),
        1,
    )
}

/// One message the local service received.
#[derive(Debug, Clone)]
pub struct Got {
    pub id: String,
    pub attempt: u32,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub started: Instant,
    pub ended: Instant,
}

/// How the local service answers: status and how long it takes, by (id, how many times seen before).
pub type Plan = Arc<dyn Fn(&str, usize) -> (u16, Duration) + Send + Sync>;

/// The private service behind the forwarder.
#[derive(Clone)]
pub struct Local {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<Got>>>,
    /// Deliveries of each id in progress now.
    busy: Arc<Mutex<HashMap<String, usize>>>,
    /// Ids that were being delivered twice at the same moment.
    pub overlaps: Arc<Mutex<Vec<String>>>,
}

impl Local {
    pub async fn start(plan: Plan) -> Local {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let local = Local {
            addr,
            got: Arc::default(),
            busy: Arc::default(),
            overlaps: Arc::default(),
        };
        let l = local.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (l, plan) = (l.clone(), plan.clone());
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (l, plan) = (l.clone(), plan.clone());
                    async move { Ok::<_, std::convert::Infallible>(l.serve(req, plan).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        local
    }

    pub async fn ok() -> Local {
        Self::start(Arc::new(|_, _| (200, Duration::ZERO))).await
    }

    async fn serve(&self, req: Request<hyper::body::Incoming>, plan: Plan) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let id = parts
            .headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let seen = self.got.lock().unwrap().iter().filter(|g| g.id == id).count();
        {
            let mut busy = self.busy.lock().unwrap();
            let n = busy.entry(id.clone()).or_default();
            *n += 1;
            if *n > 1 {
                self.overlaps.lock().unwrap().push(id.clone());
            }
        }
        let (status, delay) = plan(&id, seen);
        tokio::time::sleep(delay).await;
        *self.busy.lock().unwrap().get_mut(&id).unwrap() -= 1;
        let attempt = parts
            .headers
            .get("hookrelay-attempt")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        self.got.lock().unwrap().push(Got {
            id,
            attempt,
            headers: parts.headers,
            body,
            started,
            ended: Instant::now(),
        });
        let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        resp
    }

    pub fn url(&self) -> String {
        format!("http://{}/webhooks", self.addr)
    }

    pub fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Times each id was received.
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for g in self.all() {
            *m.entry(g.id).or_insert(0) += 1;
        }
        m
    }

    /// Wait until `pred` holds, or panic after `limit` naming `what`.
    pub async fn wait_for(&self, limit: Duration, what: &str, pred: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + limit;
        loop {
            let all = self.all();
            if pred(&all) {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the local service received {} requests",
                all.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wait until every id in `ids` was received at least once.
    pub async fn wait_all(&self, limit: Duration, ids: &[String]) -> Vec<Got> {
        self.wait_for(limit, &format!("{} messages", ids.len()), |all| {
            ids.iter().all(|id| all.iter().any(|g| &g.id == id))
        })
        .await
    }
}

/// `hookrelay forward` as a child process; its stderr collected.
pub struct Forwarder {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Forwarder {
    /// Forward `relay_url` to `to` with the token in a file under `dir`, and `extra` arguments.
    pub fn start(dir: &Path, relay_url: &str, to: &str, token: &str, extra: &[&str]) -> Forwarder {
        let token_file = dir.join(format!("token-{}", fastrand::u32(..)));
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookrelay"));
        cmd.args(["forward", relay_url, "--to", to, "--token-file"])
            .arg(&token_file)
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove(hookrelay::forward::TOKEN_ENV)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn hookrelay forward");
        let stderr = child.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log2.lock().unwrap().push(line);
            }
        });
        Forwarder { child, log }
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for the exit (at most `limit`); the exit code.
    pub fn term(&mut self, limit: Duration) -> Option<i32> {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        self.wait(limit)
    }

    /// Wait for the process to exit (at most `limit`); its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(
                Instant::now() < deadline,
                "hookrelay forward did not exit within {limit:?}: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pull API request with the given token (and forwarder id); status and parsed JSON.
pub async fn pull_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    forwarder: Option<&str>,
    body: &str,
) -> (StatusCode, http::HeaderMap, serde_json::Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    if let Some(f) = forwarder {
        headers.push(("hookrelay-forwarder", f));
    }
    let (s, h, b) = super::common::request(addr, None, method, path, &headers, Bytes::from(body.to_string())).await;
    (s, h, serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null))
}

/// Check every message's signature with the official Standard Webhooks
/// library (Python package `standardwebhooks`); panics naming what failed.
pub fn verify_with_standardwebhooks(secret: &str, got: &[Got]) {
    let which = Command::new("python3").args(["-c", "import standardwebhooks"]).output();
    match which {
        Err(_) => panic!("python3 is needed to verify signatures with the Standard Webhooks library: install python3"),
        Ok(o) if !o.status.success() => panic!(
            "the Python package standardwebhooks is needed to verify signatures: install it with \
             `pip install standardwebhooks` ({})",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(_) => {}
    }
    use base64::Engine;
    let cases: Vec<serde_json::Value> = got
        .iter()
        .map(|g| {
            let headers: HashMap<String, String> = g
                .headers
                .iter()
                .filter(|(k, _)| k.as_str().starts_with("webhook-"))
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .collect();
            serde_json::json!({"body": base64::engine::general_purpose::STANDARD.encode(&g.body), "headers": headers})
        })
        .collect();
    const SCRIPT: &str = r#"
import base64, json, sys
from standardwebhooks import Webhook
wh = Webhook(sys.argv[1])
cases = json.load(sys.stdin)
for c in cases:
    wh.verify(base64.b64decode(c["body"]), c["headers"])
print("verified", len(cases))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&cases).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == format!("verified {}", got.len()),
        "standardwebhooks refused a signature: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The relay's pull URL for `name`.
pub fn pull_url(addr: SocketAddr, name: &str) -> String {
    format!("http://{addr}/pull/{name}")
}

/// Where tests keep token files and stores.
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    (dir, data)
}

/// The `systemd-analyze security --offline` exposure score of a unit file;
/// None when systemd-analyze is missing or too old to score a file.
pub fn unit_exposure(unit: &str) -> Option<f64> {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", unit])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.contains("Overall exposure level"))?;
    line.split(':').nth(1)?.split_whitespace().next()?.parse().ok()
}

/// POST a callback to `/hooks/t?token=tok` over HTTPS, trusting `ca`; the event id.
pub async fn https_callback(port: u16, ca: &Path, body: &str) -> String {
    hookrelay::tls::install_provider();
    let tls = hookrelay::tls::client_config(Some(ca)).unwrap();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https);
    let req = Request::post(format!("https://127.0.0.1:{port}/hooks/t?token=tok"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("an answer within 10s")
        .expect("the relay answers over TLS");
    assert_eq!(resp.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    v["id"].as_str().unwrap().to_string()
}
