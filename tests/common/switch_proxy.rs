//! An HTTP proxy between `hookrelay forward` and two relays, moving the
//! forwarder from the first to the second as a balancer does when the
//! first stops answering: pulls go to the first until [`Switch::switch`],
//! then to the second (a pull waiting at the first is answered empty, as a
//! balancer's timeout would end it, so the forwarder pulls again); the
//! first acknowledgement goes to the first relay whatever happens (it was
//! on its way there), the others where pulls go.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Notify;

use super::query_proxy::{pass_on, ProxyClient};

/// Moves the proxy's pulls to the second relay.
#[derive(Clone, Default)]
pub struct Switch {
    switched: Arc<AtomicBool>,
    now: Arc<Notify>,
    posts: Arc<AtomicUsize>,
}

impl Switch {
    pub fn switch(&self) {
        self.switched.store(true, Ordering::SeqCst);
        self.now.notify_waiters();
    }

    fn upstream(&self, method: &http::Method, first: SocketAddr, second: SocketAddr) -> SocketAddr {
        let first_post = method == http::Method::POST && self.posts.fetch_add(1, Ordering::SeqCst) == 0;
        match first_post || !self.switched.load(Ordering::SeqCst) {
            true => first,
            false => second,
        }
    }
}

/// A proxy in front of `first` and `second`: its address and its switch.
pub async fn switching_proxy(first: SocketAddr, second: SocketAddr) -> (SocketAddr, Switch) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let switch = Switch::default();
    let sw = switch.clone();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    tokio::spawn(async move {
        while let Ok((conn, _)) = l.accept().await {
            let (client, sw) = (client.clone(), sw.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (client, sw) = (client.clone(), sw.clone());
                    async move { Ok::<_, std::convert::Infallible>(pass(client, sw, first, second, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(conn), service)
                    .await;
            });
        }
    });
    (addr, switch)
}

async fn pass(
    client: ProxyClient,
    sw: Switch,
    first: SocketAddr,
    second: SocketAddr,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let to = sw.upstream(req.method(), first, second);
    let pull_at_first = req.method() == http::Method::GET && to == first;
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    let answer = pass_on(&client, req, to, &path);
    if !pull_at_first {
        return answer.await;
    }
    let switched = sw.now.notified();
    tokio::pin!(switched);
    switched.as_mut().enable();
    let empty = || {
        Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(br#"{"messages": [], "lease_ms": 60000}"#)))
            .unwrap()
    };
    if sw.switched.load(Ordering::SeqCst) {
        return empty();
    }
    tokio::select! {
        a = answer => a,
        _ = switched => empty(),
    }
}
