//! HTTP proxies between the forwarder and the relay that get in the way: one
//! that drops every request's query string (an nginx `proxy_pass
//! http://relay$uri;`: `$uri` has no query), so the relay answers pulls with
//! its defaults; one that passes pulls but answers acknowledgements `404`
//! (a location block for `GET /pull/` only), or redirects them.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A proxy to `upstream` that passes each request on without its query;
/// its address.
pub async fn query_dropping_proxy(upstream: SocketAddr) -> SocketAddr {
    proxy(upstream, |_| None).await
}

/// A proxy to `upstream` that answers every `POST` (an acknowledgement)
/// `404` and passes the rest on without its query; its address.
pub async fn ack_refusing_proxy(upstream: SocketAddr) -> SocketAddr {
    proxy(upstream, |m| (m == http::Method::POST).then_some(404)).await
}

/// A proxy to `upstream` that answers every `POST` with a `301` to another
/// host and passes the rest on without its query; its address.
pub async fn ack_redirecting_proxy(upstream: SocketAddr) -> SocketAddr {
    proxy(upstream, |m| (m == http::Method::POST).then_some(301)).await
}

/// The client the test proxies pass requests on with.
pub type ProxyClient =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Pass `req` on to `upstream` at `path` (with or without its query, as
/// the proxy does), its body whole: the answer, whole, or `502` when
/// `upstream` gives none.
pub async fn pass_on(
    client: &ProxyClient,
    req: Request<hyper::body::Incoming>,
    upstream: SocketAddr,
    path: &str,
) -> Response<Full<Bytes>> {
    let (mut parts, body) = req.into_parts();
    parts.uri = format!("http://{upstream}{path}").parse().unwrap();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    match client.request(Request::from_parts(parts, Full::new(body))).await {
        Ok(r) => {
            let (parts, body) = r.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            Response::from_parts(parts, Full::new(body))
        }
        Err(_) => Response::builder().status(502).body(Full::new(Bytes::new())).unwrap(),
    }
}

/// A proxy to `upstream` that answers a request with the status `refuse`
/// gives for its method, or passes it on without its query.
async fn proxy(upstream: SocketAddr, refuse: fn(http::Method) -> Option<u16>) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    tokio::spawn(async move {
        while let Ok((conn, _)) = l.accept().await {
            let client = client.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let client = client.clone();
                    async move {
                        if let Some(status) = refuse(req.method().clone()) {
                            let page = Full::new(Bytes::from_static(b"<html>Not Found</html>"));
                            let mut answer = Response::builder().status(status);
                            if (300..400).contains(&status) {
                                answer = answer.header("location", "https://elsewhere.example/ack");
                            }
                            return Ok(answer.body(page).unwrap());
                        }
                        let path = req.uri().path().to_string();
                        Ok::<_, std::convert::Infallible>(pass_on(&client, req, upstream, &path).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(conn), service)
                    .await;
            });
        }
    });
    addr
}
