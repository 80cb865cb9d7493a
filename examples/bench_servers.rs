//! Benchmark servers (not part of the product):
//!
//! - `bare ADDR`: hyper, reads the body, answers 200 (the limit of HTTP handling here);
//! - `sled ADDR DIR`: the same plus one sled insert flushed per request (the
//!   limit of a durable acknowledgement without group commit);
//! - `sink ADDR`: a subscriber that answers 200, counts requests and measures
//!   end-to-end latency from the `"sent_ns"` field the load generator puts in
//!   each body. `GET /stats` returns `{count, p50_us, p99_us, p999_us}`;
//! - `hang ADDR`: a subscriber that reads each request and never answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Default)]
struct Sink {
    count: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn serve<F, Fut>(addr: SocketAddr, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    eprintln!("listening on {}", listener.local_addr().unwrap());
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = stream.set_nodelay(true);
        let h = handler.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let h = h.clone();
                async move { Ok::<_, Infallible>(h(req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_default();
    let addr: SocketAddr = args
        .get(2)
        .expect("usage: bench_servers bare|sled|sink|hang ADDR [DIR]")
        .parse()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        match mode.as_str() {
            "bare" => {
                serve(addr, |req: Request<Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")))
                })
                .await
            }
            "sled" => {
                let db = sled::open(args.get(3).expect("DIR")).unwrap();
                let seq = Arc::new(AtomicU64::new(0));
                serve(addr, move |req: Request<Incoming>| {
                    let db = db.clone();
                    let seq = seq.clone();
                    async move {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let key = seq.fetch_add(1, Ordering::Relaxed).to_be_bytes();
                        tokio::task::spawn_blocking(move || {
                            db.insert(key, body.as_ref()).unwrap();
                            db.flush().unwrap();
                        })
                        .await
                        .unwrap();
                        Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")))
                    }
                })
                .await
            }
            "sink" => {
                let sink = Arc::new(Sink::default());
                serve(addr, move |req: Request<Incoming>| {
                    let sink = sink.clone();
                    async move {
                        if req.uri().path() == "/stats" {
                            let mut l = sink.latencies_us.lock().unwrap().clone();
                            l.sort_unstable();
                            let s = serde_json::json!({
                                "count": sink.count.load(Ordering::Relaxed),
                                "p50_us": pct(&l, 0.5), "p99_us": pct(&l, 0.99), "p999_us": pct(&l, 0.999),
                            });
                            return Response::new(Full::new(Bytes::from(s.to_string())));
                        }
                        if req.uri().path() == "/reset" {
                            sink.latencies_us.lock().unwrap().clear();
                            sink.count.store(0, Ordering::Relaxed);
                            return Response::new(Full::new(Bytes::new()));
                        }
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        sink.count.fetch_add(1, Ordering::Relaxed);
                        // "sent_ns":1234 anywhere in the body.
                        let text = String::from_utf8_lossy(&body);
                        if let Some(rest) = text.split("\"sent_ns\":").nth(1) {
                            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                            if let Ok(sent) = digits.parse::<u128>() {
                                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
                                sink.latencies_us
                                    .lock()
                                    .unwrap()
                                    .push((now.saturating_sub(sent) / 1000) as u64);
                            }
                        }
                        Response::new(Full::new(Bytes::new()))
                    }
                })
                .await
            }
            "hang" => {
                serve(addr, |req: Request<Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    std::future::pending::<Response<Full<Bytes>>>().await
                })
                .await
            }
            other => panic!("unknown mode {other:?}: bare, sled, sink or hang"),
        }
    });
}
