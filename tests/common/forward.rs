//! The private side of a pull subscriber: the real `hookrelay forward` as a
//! child process (`Forwarder`, its stderr collected) and the local service it
//! delivers to (`Local`: records every message, and whether two deliveries of
//! one id overlapped). The relay side is `daemon`; the pull API calls a test
//! makes itself are `client::pull_call`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The relay's pull URL for subscriber `name`.
pub fn pull_url(addr: SocketAddr, name: &str) -> String {
    format!("http://{addr}/pull/{name}")
}

/// One message the local service received.
#[derive(Debug, Clone)]
pub struct Got {
    /// `webhook-id`: repeats of one message carry the same one.
    pub id: String,
    /// `hookrelay-attempt`: a message handed back comes again with the next.
    pub attempt: u32,
    /// Signature headers included, for the Standard Webhooks library to check.
    pub headers: http::HeaderMap,
    /// The bytes as received, to compare with what the provider sent.
    pub body: Bytes,
    /// When the request arrived: hand-off latency is measured to it.
    pub started: Instant,
    /// When it was answered: the gap before a retry is measured from it.
    pub ended: Instant,
}

/// How the local service answers: status and how long it takes, by (id, how many times seen before).
/// A `429` comes with `Retry-After: 2`.
pub type Plan = Arc<dyn Fn(&str, usize) -> (u16, Duration) + Send + Sync>;

/// The private service behind the forwarder.
#[derive(Clone)]
pub struct Local {
    pub addr: SocketAddr,
    /// Every message, in the order answered; shared with the server task.
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
        if status == 429 {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("2"));
        }
        resp
    }

    pub fn url(&self) -> String {
        format!("http://{}/webhooks", self.addr)
    }

    pub fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The `webhook-attempt` of each time `id` was received.
    pub fn attempts(&self, id: &str) -> Vec<u32> {
        self.all().iter().filter(|g| g.id == id).map(|g| g.attempt).collect()
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
    /// The process: killed with SIGKILL or signalled, and reaped on drop.
    pub child: Child,
    /// Every stderr line, collected by a thread: tests search it for the token.
    pub log: Arc<Mutex<Vec<String>>>,
    /// That thread: done once the process closed stderr (joined by `wait`,
    /// so the log is whole when the exit is seen).
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Forwarder {
    /// Forward `relay_url` to `to` with the token in a file under `dir`, and `extra` arguments.
    pub fn start(dir: &Path, relay_url: &str, to: &str, token: &str, extra: &[&str]) -> Forwarder {
        Self::start_logging(dir, relay_url, to, token, extra, "info")
    }

    /// As [`start`](Self::start), logging with `RUST_LOG=rust_log`.
    pub fn start_logging(
        dir: &Path,
        relay_url: &str,
        to: &str,
        token: &str,
        extra: &[&str],
        rust_log: &str,
    ) -> Forwarder {
        Self::spawn(None, dir, relay_url, to, token, extra, rust_log)
    }

    /// As [`start`](Self::start), run by `nohup` (SIGHUP ignored).
    pub fn start_nohup(dir: &Path, relay_url: &str, to: &str, token: &str) -> Forwarder {
        Self::spawn(Some("nohup"), dir, relay_url, to, token, &[], "info")
    }

    fn spawn(
        wrapper: Option<&str>,
        dir: &Path,
        relay_url: &str,
        to: &str,
        token: &str,
        extra: &[&str],
        rust_log: &str,
    ) -> Forwarder {
        let token_file = dir.join(format!("token-{}", fastrand::u32(..)));
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        let bin = env!("CARGO_BIN_EXE_hookrelay");
        let mut cmd = match wrapper {
            Some(w) => {
                let mut c = Command::new(w);
                c.arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(["forward", relay_url, "--to", to, "--token-file"])
            .arg(&token_file)
            .args(extra)
            .env("RUST_LOG", rust_log)
            .env_remove(hookrelay::forward::TOKEN_ENV)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn hookrelay forward");
        let stderr = child.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let log2 = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log2.lock().unwrap().push(line);
            }
        });
        Forwarder {
            child,
            log,
            reader: Some(reader),
        }
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for the exit (at most `limit`); the exit code.
    pub fn term(&mut self, limit: Duration) -> Option<i32> {
        self.signal_term();
        self.wait(limit)
    }

    /// Send SIGTERM, without waiting.
    pub fn signal_term(&self) {
        self.signal("TERM");
    }

    /// Send signal `name` (`TERM`, `HUP`, …), without waiting.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Wait for the process to exit (at most `limit`); its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
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

    /// Wait until the local service's plan set `flag` (it has the message),
    /// or panic after `limit` with this forwarder's log.
    pub async fn until_local_has_it(&self, flag: &std::sync::atomic::AtomicBool, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "the message never reached the local service: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wait until this forwarder's log holds `text`, or panic after `limit`
    /// with the log (`what` names what was waited for).
    pub async fn until_logged(&self, text: &str, limit: Duration, what: &str) {
        let deadline = Instant::now() + limit;
        while !self.log_text().contains(text) {
            assert!(Instant::now() < deadline, "{what} never happened: {}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
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
