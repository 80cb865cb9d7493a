//! Subscriber servers on 127.0.0.1 that record what the daemon delivers: `Sub`
//! (hyper, h1 + h2, plain or TLS, answering by a script) and `RawSub` (raw TCP,
//! for answers no HTTP server would write). Not the daemon, not clients.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::certs::TestCert;

/// A subscriber URL where nothing listens (connections are refused).
pub const DOWN: &str = "http://127.0.0.1:9/";

/// One request a subscriber received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived: retry gaps, rate limits and latencies are measured on it.
    pub at: Instant,
    /// HTTP/1.1 or HTTP/2, as negotiated (ALPN is part of the contract).
    pub version: http::Version,
    pub headers: HeaderMap,
    /// The bytes as received, to compare with what the provider sent.
    pub body: Bytes,
    pub path: String,
    /// The relay's end of the connection it came on (a reused connection: the same).
    pub from: SocketAddr,
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
    /// Answer this status after a delay.
    Late(Duration, u16),
}

pub type Script = Arc<dyn Fn(usize, &Received) -> Behaviour + Send + Sync>;

/// A subscriber server on 127.0.0.1 that records every request.
#[derive(Clone)]
pub struct Sub {
    pub addr: SocketAddr,
    /// Every request in arrival order, shared with the server task.
    pub received: Arc<Mutex<Vec<Received>>>,
    /// "https" when serving TLS, so `url` names the host the certificate covers.
    scheme: &'static str,
    /// Tells the accept loop to stop, for tests of a subscriber going away.
    stop: Arc<tokio::sync::Notify>,
}

impl Sub {
    pub async fn start(script: Script) -> Sub {
        Self::serve(None, script).await
    }

    /// Answers every request with 200.
    pub async fn ok() -> Sub {
        Self::always(Behaviour::Status(200)).await
    }

    /// Answers request `n` (counted from 0) 200 after `delay`, every other
    /// at once: a delivery recorded well after the subscriber got it.
    pub async fn slow_at(n: usize, delay: Duration) -> Sub {
        Self::start(Arc::new(move |i, _| {
            if i == n {
                Behaviour::Slow(delay)
            } else {
                Behaviour::Status(200)
            }
        }))
        .await
    }

    /// Answers every request the same way.
    pub async fn always(b: Behaviour) -> Sub {
        Self::start(Arc::new(move |_, _| b.clone())).await
    }

    /// Answers with `b` until the returned switch is set, then with 200.
    pub async fn broken(b: Behaviour) -> (Sub, Arc<AtomicBool>) {
        let healthy = Arc::new(AtomicBool::new(false));
        let flag = healthy.clone();
        let sub = Self::start(Arc::new(move |_, _| {
            if flag.load(Ordering::SeqCst) {
                Behaviour::Status(200)
            } else {
                b.clone()
            }
        }))
        .await;
        (sub, healthy)
    }

    /// Over TLS with `cert` (h2 or http/1.1 by ALPN); reached as `https://localhost:PORT`.
    pub async fn start_tls(cert: &TestCert, script: Script) -> Sub {
        Self::serve(Some(tokio_rustls::TlsAcceptor::from(cert.server_config())), script).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>, script: Script) -> Sub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let stop = Arc::new(tokio::sync::Notify::new());
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (rec, stop2) = (received.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (stream, from) = tokio::select! {
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                    _ = stop2.notified() => return,
                };
                let (rec, script, tls) = (rec.clone(), script.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve_connection(stream, from, rec, script).await,
                        Some(acceptor) => {
                            // An untrusting client fails the handshake: nothing to record.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_connection(stream, from, rec, script).await;
                            }
                        }
                    }
                });
            }
        });
        Sub {
            addr,
            received,
            scheme,
            stop,
        }
    }

    pub fn url(&self) -> String {
        let host = if self.scheme == "https" {
            "localhost".to_string()
        } else {
            self.addr.ip().to_string()
        };
        format!("{}://{host}:{}/callbacks", self.scheme, self.addr.port())
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

async fn serve_connection<S>(stream: S, from: SocketAddr, rec: Arc<Mutex<Vec<Received>>>, script: Script)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let rec = rec.clone();
        let script = script.clone();
        async move {
            let (path, version) = (req.uri().path().to_string(), req.version());
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let r = Received {
                at: Instant::now(),
                version,
                headers: parts.headers,
                body,
                path,
                from,
            };
            let n = {
                let mut g = rec.lock().unwrap();
                g.push(r.clone());
                g.len() - 1
            };
            let (status, extra) = match script(n, &r) {
                Behaviour::Status(s) => (s, vec![]),
                Behaviour::With(s, h) => (s, h),
                Behaviour::Hang => std::future::pending().await,
                Behaviour::Slow(d) => {
                    tokio::time::sleep(d).await;
                    (200, vec![])
                }
                Behaviour::Late(d, s) => {
                    tokio::time::sleep(d).await;
                    (s, vec![])
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
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

/// Count how many times the subscriber has seen each `webhook-id`.
pub fn seen_ids(sub: &Sub) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in sub.all() {
        *m.entry(r.header("webhook-id").to_string()).or_insert(0) += 1;
    }
    m
}

/// What a `RawSub` does once it has read the n-th request.
#[derive(Clone)]
pub enum RawAnswer {
    /// Close without a word.
    Close,
    /// Write these bytes, then close.
    Bytes(&'static [u8]),
    /// Write `head`, then `bytes` single bytes one `every` apart.
    Drip {
        head: &'static [u8],
        bytes: usize,
        every: Duration,
    },
}

/// A subscriber speaking raw TCP: reads each whole request, records its
/// `webhook-id`, and answers as scripted (one request per connection).
pub struct RawSub {
    pub addr: SocketAddr,
    /// The `webhook-id` of every request read, in order.
    pub ids: Arc<Mutex<Vec<String>>>,
}

impl RawSub {
    pub async fn start(script: impl Fn(usize) -> RawAnswer + Send + Sync + 'static) -> RawSub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ids: Arc<Mutex<Vec<String>>> = Arc::default();
        let (seen, script) = (ids.clone(), Arc::new(script));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (seen, script) = (seen.clone(), script.clone());
                tokio::spawn(async move {
                    let Some(head) = read_request(&mut s).await else { return };
                    let id = head
                        .lines()
                        .find_map(|l| l.strip_prefix("webhook-id: "))
                        .unwrap_or("")
                        .to_string();
                    let n = {
                        let mut g = seen.lock().unwrap();
                        g.push(id);
                        g.len() - 1
                    };
                    match script(n) {
                        RawAnswer::Close => {}
                        RawAnswer::Bytes(b) => {
                            let _ = s.write_all(b).await;
                        }
                        RawAnswer::Drip { head, bytes, every } => {
                            let _ = s.write_all(head).await;
                            for _ in 0..bytes {
                                if s.write_all(b".").await.is_err() {
                                    return;
                                }
                                tokio::time::sleep(every).await;
                            }
                        }
                    }
                    let _ = s.shutdown().await;
                });
            }
        });
        RawSub { addr, ids }
    }

    pub fn url(&self) -> String {
        format!("http://{}/callbacks", self.addr)
    }

    pub fn count(&self) -> usize {
        self.ids.lock().unwrap().len()
    }
}

/// Read a request's header and its Content-Length bytes; the header text, or
/// None if the peer closed first.
async fn read_request(s: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => n,
        };
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text
                .lines()
                .find_map(|l| {
                    l.to_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .map_or(0, |v| v.parse().unwrap());
            if got.len() >= end + 4 + len {
                return Some(text[..end].to_string());
            }
        }
    }
}
