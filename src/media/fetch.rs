//! The safe streaming downloader for result media.
//!
//! Owns one download: URL checks, resolving each hop once, the address policy,
//! connecting to exactly the address it checked (so a DNS answer that changes
//! between check and connect cannot redirect us: no rebinding), TLS with the
//! ring provider, redirects (each hop checked the same way), the whole-download
//! deadline and the size cap announced in `Content-Length`.
//! Does not own reading the body (`download`), retries, refresh of expired
//! URLs, or where bytes go (the archiver and `storage`).
//!
//! One connection per hop, HTTP/1.1 only: downloads are few and large, so
//! pooling and HTTP/2 multiplexing buy nothing, while a connection we open
//! ourselves is the simplest way to guarantee which address we talk to.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION, RETRY_AFTER, USER_AGENT,
};
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use url::{Host, Position, Url};

use super::addr::AddressPolicy;
use super::download::{ConnGuard, Download};
use super::fetch_error::FetchError;
use super::resolve::{Resolver, SystemResolver};

/// Settings of the downloader (the `[media]` table maps onto these).
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Which addresses may be reached; strict by default.
    pub policy: AddressPolicy,
    /// Budget for one whole download: every hop, headers and body. Slow
    /// servers cannot hold a download slot forever.
    pub timeout: Duration,
    /// Budget for each TCP connect, so a black-holed address does not eat the
    /// whole download budget before the next address is tried.
    pub connect_timeout: Duration,
    /// Largest file accepted; larger ones are refused or cut off and failed.
    pub max_size: u64,
    /// Redirects followed before giving up (CDNs use one or two).
    pub max_redirects: usize,
    /// Extra trust anchors (PEM) for https media servers, besides the system roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            policy: AddressPolicy::default(),
            timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            max_size: 2 << 30,
            max_redirects: 5,
            ca_file: None,
        }
    }
}

/// Downloads media URLs under one set of [`FetchOptions`]. Cheap to share.
#[derive(Clone)]
pub struct Fetcher {
    opts: FetchOptions,
    tls: tokio_rustls::TlsConnector,
    resolver: Arc<dyn Resolver>,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// Check that `raw` is an absolute http(s) URL with a host.
pub fn parse_media_url(raw: &str) -> Result<Url, FetchError> {
    let url = Url::parse(raw.trim()).map_err(|e| FetchError::BadUrl(e.to_string()))?;
    check_scheme(&url)?;
    Ok(url)
}

fn check_scheme(url: &Url) -> Result<(), FetchError> {
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(()),
        "http" | "https" => Err(FetchError::BadUrl("no host".into())),
        other => Err(FetchError::BadScheme(other.to_string())),
    }
}

impl Fetcher {
    /// A fetcher using the system resolver and the system's roots (plus `ca_file`).
    pub fn new(opts: FetchOptions) -> Result<Fetcher, crate::tls::TlsError> {
        let mut tls = crate::tls::client_config(opts.ca_file.as_deref())?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Fetcher {
            opts,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            resolver: Arc::new(SystemResolver),
        })
    }

    /// Resolve host names with `resolver` instead; its answers still pass the
    /// address policy.
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> Fetcher {
        self.resolver = resolver;
        self
    }

    pub fn options(&self) -> &FetchOptions {
        &self.opts
    }

    /// Request `url`, following redirects, and return the answer once its
    /// headers are in. The body, read through [`Download::into_stream`], shares
    /// the same deadline.
    pub async fn get(&self, url: &str) -> Result<Download, FetchError> {
        let deadline = Instant::now() + self.opts.timeout;
        match timeout_at(deadline, self.follow(url, deadline)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(self.opts.timeout)),
        }
    }

    async fn follow(&self, raw: &str, deadline: Instant) -> Result<Download, FetchError> {
        let mut url = parse_media_url(raw)?;
        let mut hops = 0;
        loop {
            let host = url.host_str().unwrap_or_default().to_string();
            let (resp, peer, conn) = self.request(&url, &host).await?;
            let status = resp.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                if hops == self.opts.max_redirects {
                    return Err(FetchError::TooManyRedirects(self.opts.max_redirects));
                }
                hops += 1;
                let bad = |detail: &str| FetchError::BadRedirect {
                    host: host.clone(),
                    detail: detail.to_string(),
                };
                let location = resp.headers().get(LOCATION).ok_or_else(|| bad("no Location header"))?;
                let location = location.to_str().map_err(|_| bad("Location is not ASCII"))?;
                url = url
                    .join(location)
                    .map_err(|e| bad(&format!("Location is not a URL ({e})")))?;
                check_scheme(&url)?;
                continue;
            }
            check_status(&resp, &host)?;
            if let Some(encoding) = compressed(&resp) {
                return Err(FetchError::Encoded { host, encoding });
            }
            let content_length = header_str(&resp, CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
            if let Some(n) = content_length.filter(|n| *n > self.opts.max_size) {
                return Err(FetchError::TooLarge {
                    max: self.opts.max_size,
                    announced: Some(n),
                });
            }
            let content_type = header_str(&resp, CONTENT_TYPE).map(str::to_string);
            return Ok(Download {
                final_url: url,
                peer,
                content_type,
                content_length,
                body: resp.into_body(),
                host,
                deadline,
                timeout: self.opts.timeout,
                max_size: self.opts.max_size,
                conn,
            });
        }
    }

    /// Resolve once, check, connect to a checked address, send one GET.
    async fn request(&self, url: &Url, host: &str) -> Result<(Response<Incoming>, SocketAddr, ConnGuard), FetchError> {
        let port = url.port_or_known_default().unwrap_or(80);
        let candidates = match url.host() {
            Some(Host::Ipv4(ip)) => vec![SocketAddr::new(ip.into(), port)],
            Some(Host::Ipv6(ip)) => vec![SocketAddr::new(ip.into(), port)],
            Some(Host::Domain(name)) => self
                .resolver
                .resolve(name, port)
                .await
                .map_err(|e| FetchError::Resolve {
                    host: host.to_string(),
                    detail: e.to_string(),
                })?,
            None => return Err(FetchError::BadUrl("no host".into())),
        };
        if candidates.is_empty() {
            return Err(FetchError::Resolve {
                host: host.to_string(),
                detail: "no addresses".into(),
            });
        }
        let mut refused = None;
        let permitted: Vec<SocketAddr> = candidates
            .into_iter()
            .filter(|a| match self.opts.policy.check(a.ip()) {
                Ok(()) => true,
                Err(reason) => {
                    refused.get_or_insert_with(|| format!("{} is {reason}", a.ip()));
                    false
                }
            })
            .collect();
        if permitted.is_empty() {
            return Err(FetchError::Refused {
                host: host.to_string(),
                reason: refused.unwrap_or_default(),
            });
        }

        let (tcp, peer) = self.connect(&permitted, host).await?;
        let req = Request::get(&url[Position::BeforePath..Position::AfterQuery])
            .header(HOST, host_header(url))
            .header(USER_AGENT, concat!("hookrelay/", env!("CARGO_PKG_VERSION")))
            .header(ACCEPT, "*/*")
            .header(ACCEPT_ENCODING, "identity")
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::BadUrl(e.to_string()))?;
        let http_err = |e: hyper::Error| FetchError::Http {
            host: host.to_string(),
            detail: crate::error_chain::error_chain(&e),
        };
        let (resp, conn) = if url.scheme() == "https" {
            let name = ServerName::try_from(url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_string())
                .map_err(|e| FetchError::BadUrl(e.to_string()))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| FetchError::Tls {
                host: host.to_string(),
                detail: crate::error_chain::error_chain(&e),
            })?;
            exchange(tls, req).await.map_err(http_err)?
        } else {
            exchange(tcp, req).await.map_err(http_err)?
        };
        Ok((resp, peer, conn))
    }

    async fn connect(&self, addrs: &[SocketAddr], host: &str) -> Result<(TcpStream, SocketAddr), FetchError> {
        let mut last = String::new();
        for addr in addrs {
            match timeout(self.opts.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok((s, *addr));
                }
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => last = format!("{addr}: connect timed out"),
            }
        }
        Err(FetchError::Connect {
            host: host.to_string(),
            detail: last,
        })
    }
}

async fn exchange<T>(io: T, req: Request<Empty<Bytes>>) -> Result<(Response<Incoming>, ConnGuard), hyper::Error>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let guard = ConnGuard(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let resp = sender.send_request(req).await?;
    Ok((resp, guard))
}

fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

fn header_str<B>(resp: &Response<B>, name: http::header::HeaderName) -> Option<&str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn check_status<B>(resp: &Response<B>, host: &str) -> Result<(), FetchError> {
    let status = resp.status().as_u16();
    match status {
        // 206 only answers a Range request, which we never send.
        200..=299 if status != 206 => Ok(()),
        403 | 404 | 410 => Err(FetchError::Gone {
            host: host.to_string(),
            status,
        }),
        _ => Err(FetchError::Status {
            host: host.to_string(),
            status,
            retry_after: header_str(resp, RETRY_AFTER)
                .and_then(|v| crate::delivery::retry::parse_retry_after(v, crate::clock::time_of_day())),
        }),
    }
}

/// The compression a body came in (`Content-Encoding`, every line and
/// value), though the request asked for `identity`: its bytes are not the
/// file. Only real content codings count: S3-compatible stores replay
/// `aws-chunked` from a checksummed upload, and servers send junk such as
/// `binary` or `none`, over bytes that are the file.
fn compressed<B>(resp: &http::Response<B>) -> Option<String> {
    const CODINGS: [&str; 7] = ["gzip", "x-gzip", "deflate", "br", "zstd", "compress", "x-compress"];
    resp.headers()
        .get_all(CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|c| CODINGS.iter().any(|k| c.eq_ignore_ascii_case(k)))
        .map(str::to_ascii_lowercase)
}
