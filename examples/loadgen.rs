//! Load generator for the benchmarks (not part of the product): POSTs unique
//! Runway-style callbacks over HTTP/1.1 or HTTP/2, plain or TLS, either as fast
//! as `--connections` x `--streams` allow (closed loop) or at a fixed `--rate`
//! (latency measured from each request's scheduled time). Prints one JSON line.
//!
//! loadgen URL [--connections N] [--streams N] [--duration SECS] [--h2]
//!             [--ca PEM] [--rate REQ_PER_S] [--tag TEXT] [--media BASE]
//!
//! `--media http://127.0.0.1:PORT` makes each body's video and cover URLs
//! point there (a loopback file server) instead of `https://file.com`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;

struct Opts {
    url: Uri,
    connections: usize,
    streams: usize,
    duration: Duration,
    h2: bool,
    ca: Option<String>,
    rate: Option<f64>,
    tag: String,
    /// Scheme and authority for the media URLs in each body.
    media: String,
}

fn parse() -> Opts {
    let mut a = std::env::args().skip(1);
    let mut o = Opts {
        url: a.next().expect("URL").parse().expect("URL"),
        connections: 32,
        streams: 1,
        duration: Duration::from_secs(10),
        h2: false,
        ca: None,
        rate: None,
        tag: format!("{}", SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()),
        media: "https://file.com".into(),
    };
    while let Some(k) = a.next() {
        match k.as_str() {
            "--connections" => o.connections = a.next().unwrap().parse().unwrap(),
            "--streams" => o.streams = a.next().unwrap().parse().unwrap(),
            "--duration" => o.duration = Duration::from_secs_f64(a.next().unwrap().parse().unwrap()),
            "--h2" => o.h2 = true,
            "--ca" => o.ca = a.next(),
            "--rate" => o.rate = Some(a.next().unwrap().parse().unwrap()),
            "--tag" => o.tag = a.next().unwrap(),
            "--media" => o.media = a.next().unwrap(),
            other => panic!("unknown option {other}"),
        }
    }
    o
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

async fn connect(o: &Opts) -> Sender {
    let host = o.url.host().unwrap().to_string();
    let port = o
        .url
        .port_u16()
        .unwrap_or(if o.url.scheme_str() == Some("https") { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .expect("connect");
    tcp.set_nodelay(true).unwrap();
    if o.url.scheme_str() == Some("https") {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(o.ca.as_ref().expect("--ca for https")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![if o.h2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .expect("TLS");
        return handshake(o.h2, TokioIo::new(tls)).await;
    }
    handshake(o.h2, TokioIo::new(tcp)).await
}

async fn handshake<I>(h2: bool, io: I) -> Sender
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    if h2 {
        let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(c);
        Sender::H2(s)
    } else {
        let (s, c) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(c);
        Sender::H1(s)
    }
}

fn body(tag: &str, n: u64, media: &str) -> Bytes {
    let sent = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    Bytes::from(format!(
        r#"{{"code":200,"msg":"All generated successfully.","data":{{"task_id":"{tag}-{n}","video_id":"485da89c-7fca-4340-8c04-101025b2ae71","video_url":"{media}/k/{tag}-{n}.mp4","image_url":"{media}/m/{tag}-{n}.png"}},"sent_ns":{sent}}}"#
    ))
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let o = Arc::new(parse());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let seq = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let non200 = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let lat: Arc<Mutex<Vec<u64>>> = Arc::default();
        let workers = o.connections * o.streams;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..o.connections {
            let sender = Arc::new(tokio::sync::Mutex::new(connect(&o).await));
            for s in 0..o.streams {
                let (o, seq, errors, non200, stop, lat, sender) = (
                    o.clone(),
                    seq.clone(),
                    errors.clone(),
                    non200.clone(),
                    stop.clone(),
                    lat.clone(),
                    sender.clone(),
                );
                let worker = c * o.streams + s;
                tasks.push(tokio::spawn(async move {
                    let mut mine = Vec::with_capacity(1 << 16);
                    let interval = o.rate.map(|r| Duration::from_secs_f64(workers as f64 / r));
                    let mut next =
                        Instant::now() + interval.map_or(Duration::ZERO, |i| i.mul_f64(worker as f64 / workers as f64));
                    while !stop.load(Ordering::Relaxed) {
                        if interval.is_some() {
                            tokio::time::sleep_until(next.into()).await;
                        }
                        let scheduled = if interval.is_some() { next } else { Instant::now() };
                        let n = seq.fetch_add(1, Ordering::Relaxed);
                        let req = Request::post(o.url.clone())
                            .header("content-type", "application/json")
                            .header("host", o.url.authority().unwrap().as_str())
                            .body(Full::new(body(&o.tag, n, &o.media)))
                            .unwrap();
                        let mut guard = sender.lock().await;
                        let resp = match &mut *guard {
                            Sender::H1(s) => {
                                let _ = s.ready().await;
                                s.send_request(req).await
                            }
                            // HTTP/2 streams of one connection run side by side.
                            Sender::H2(s) => {
                                let mut s = s.clone();
                                drop(guard);
                                s.send_request(req).await
                            }
                        };
                        match resp {
                            Ok(r) => {
                                if r.status() != 200 {
                                    non200.fetch_add(1, Ordering::Relaxed);
                                }
                                let _ = r.into_body().collect().await;
                                mine.push(scheduled.elapsed().as_micros() as u64);
                            }
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                        if let Some(i) = interval {
                            next += i;
                        }
                    }
                    lat.lock().unwrap().extend(mine);
                }));
            }
        }
        tokio::time::sleep(o.duration).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let mut l = lat.lock().unwrap().clone();
        l.sort_unstable();
        let out = serde_json::json!({
            "requests": l.len(),
            "rps": (l.len() as f64 / elapsed).round(),
            "p50_us": pct(&l, 0.5), "p99_us": pct(&l, 0.99), "p999_us": pct(&l, 0.999),
            "errors": errors.load(Ordering::Relaxed), "non_200": non200.load(Ordering::Relaxed),
        });
        println!("{out}");
    });
}
