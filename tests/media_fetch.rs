//! The media fetcher against real loopback servers: bytes and headers,
//! redirects, statuses, timeouts, size caps and TLS. (The address policy has
//! its own file, media_policy.rs.)

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::certs::TestCert;
use common::fetcher::{archive_fetcher, fetch_options, open_fetcher, read_body};
use common::files::{FileServer, Route};
use futures_util::TryStreamExt;
use hookrelay::media::{FetchError, FetchOptions, Fetcher, StaticResolver};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn downloads_bytes_with_content_type() {
    let s = FileServer::start(LOCAL).await;
    let url = s.bytes("/k/video.mp4", b"mp4 bytes", "video/mp4");
    let d = open_fetcher().get(&url).await.unwrap();
    assert_eq!(d.content_type.as_deref(), Some("video/mp4"));
    assert_eq!(d.content_length, Some(9));
    assert_eq!(d.peer, s.addr);
    let chunks: Vec<Bytes> = d.into_stream().try_collect().await.unwrap();
    assert_eq!(chunks.concat(), b"mp4 bytes");
}

#[tokio::test]
async fn bad_schemes_and_urls_are_permanent_errors() {
    let f = open_fetcher();
    for (u, kind) in [
        ("ftp://127.0.0.1/x", "bad_scheme"),
        ("file:///etc/passwd", "bad_scheme"),
        ("gopher://127.0.0.1:70/x", "bad_scheme"),
        ("not a url", "bad_url"),
        ("/relative/x.mp4", "bad_url"),
    ] {
        let err = f.get(u).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{u}: {err}");
        assert!(!err.retryable());
    }
}

#[tokio::test]
async fn redirects_are_followed_up_to_five() {
    let s = FileServer::start(LOCAL).await;
    s.bytes("/final.mp4", b"final", "video/mp4");
    for i in 0..5 {
        let next = if i == 4 {
            "/final.mp4".to_string()
        } else {
            format!("/hop{}", i + 1)
        };
        // Mix relative and absolute locations and all redirect statuses.
        let location = if i % 2 == 0 { next } else { s.url(&next) };
        let status = [301, 302, 303, 307, 308][i];
        s.route(&format!("/hop{i}"), Route::Redirect { status, location });
    }
    assert_eq!(read_body(&open_fetcher(), &s.url("/hop0")).await.unwrap(), b"final");
    // Six hops are one too many.
    s.route(
        "/hop-1",
        Route::Redirect {
            status: 302,
            location: "/hop0".into(),
        },
    );
    let err = open_fetcher().get(&s.url("/hop-1")).await.unwrap_err();
    assert_eq!(err, FetchError::TooManyRedirects(5));
    // A redirect without Location, and one to a non-http scheme.
    let noloc = s.status("/noloc", 302);
    assert_eq!(open_fetcher().get(&noloc).await.unwrap_err().kind(), "bad_redirect");
    s.route(
        "/to-file",
        Route::Redirect {
            status: 302,
            location: "file:///etc/passwd".into(),
        },
    );
    let err = open_fetcher().get(&s.url("/to-file")).await.unwrap_err();
    assert_eq!(err, FetchError::BadScheme("file".into()));
}

#[tokio::test]
async fn statuses_are_classified() {
    let s = FileServer::start(LOCAL).await;
    let f = open_fetcher();
    for status in [403u16, 404, 410] {
        let err = f.get(&s.status(&format!("/s{status}"), status)).await.unwrap_err();
        assert!(err.is_gone() && !err.retryable(), "{status}: {err}");
        assert_eq!(
            err.to_string(),
            format!("expired or gone: 127.0.0.1 answered HTTP {status}")
        );
    }
    s.route(
        "/busy",
        Route::Status {
            status: 429,
            headers: vec![("retry-after", "7".into())],
        },
    );
    let err = f.get(&s.url("/busy")).await.unwrap_err();
    assert!(err.retryable() && !err.is_gone());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    for (status, retryable) in [(500u16, true), (503, true), (400, false), (401, false)] {
        let err = f.get(&s.status(&format!("/s{status}"), status)).await.unwrap_err();
        assert_eq!(err.retryable(), retryable, "{status}");
    }
    // Connection refused: nothing listens on a fresh port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = f.get(&format!("http://127.0.0.1:{port}/x")).await.unwrap_err();
    assert!(matches!(err, FetchError::Connect { .. }) && err.retryable(), "{err}");
}

#[tokio::test]
async fn a_stalled_body_times_out() {
    let s = FileServer::start(LOCAL).await;
    s.route(
        "/slow",
        Route::Stall {
            first: Bytes::from_static(b"first chunk"),
        },
    );
    let f = Fetcher::new(FetchOptions {
        timeout: Duration::from_millis(500),
        ..fetch_options(true)
    })
    .unwrap();
    let started = std::time::Instant::now();
    let err = read_body(&f, &s.url("/slow")).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, FetchError::Timeout(Duration::from_millis(500)));
    assert!(err.retryable());
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_body_shorter_than_announced_is_an_error() {
    let s = FileServer::start(LOCAL).await;
    s.route(
        "/short",
        Route::Short {
            declared: 1000,
            body: Bytes::from_static(b"only this"),
        },
    );
    let err = read_body(&open_fetcher(), &s.url("/short")).await.unwrap_err();
    assert!(matches!(err, FetchError::Http { .. }) && err.retryable(), "{err}");
    // Cut after its head: the error names its cause (hyper's own text says
    // only "error reading a body from connection").
    let url = raw_server(
        "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n",
        b"only this",
        Duration::ZERO,
        false,
    )
    .await;
    let err = read_body(&open_fetcher(), &url).await.unwrap_err();
    let shown = err.to_string();
    assert!(
        matches!(err, FetchError::Http { .. }) && shown.contains("error reading a body from connection: "),
        "{shown}"
    );
}

#[tokio::test]
async fn files_over_max_size_are_refused_or_cut_off() {
    let s = FileServer::start(LOCAL).await;
    let max = 1 << 20;
    let f = Fetcher::new(FetchOptions {
        max_size: max,
        ..fetch_options(true)
    })
    .unwrap();
    // Announced: refused before any body byte is read.
    s.route(
        "/announced",
        Route::Generated {
            len: 64 << 20,
            content_length: true,
        },
    );
    let err = f.get(&s.url("/announced")).await.unwrap_err();
    assert_eq!(
        err,
        FetchError::TooLarge {
            max,
            announced: Some(64 << 20)
        }
    );
    // Not announced (chunked): cut off once past the cap.
    s.route(
        "/chunked",
        Route::Generated {
            len: 64 << 20,
            content_length: false,
        },
    );
    let before = s.generated_sent();
    let err = read_body(&f, &s.url("/chunked")).await.unwrap_err();
    assert_eq!(err, FetchError::TooLarge { max, announced: None });
    assert!(!err.retryable());
    // The connection is dropped: the server stops well short of 64 MiB
    // (socket buffers hold a few MiB at most).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut last = s.generated_sent();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = s.generated_sent();
        if now == last || tokio::time::Instant::now() > deadline {
            break;
        }
        last = now;
    }
    assert!(last - before < 32 << 20, "server sent {} bytes", last - before);
    // Exactly max_size passes.
    s.route(
        "/exact",
        Route::Generated {
            len: max,
            content_length: false,
        },
    );
    assert_eq!(read_body(&f, &s.url("/exact")).await.unwrap().len() as u64, max);
}

#[tokio::test]
async fn https_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::write(dir.path(), "files");
    let s = FileServer::start_tls(LOCAL, &cert).await;
    s.bytes("/secure.png", b"tls bytes", "image/png");
    let port = s.addr.port();
    let trusting = Fetcher::new(FetchOptions {
        ca_file: Some(cert.cert.clone()),
        ..fetch_options(true)
    })
    .unwrap();
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{port}/secure.png");
        let f = trusting
            .clone()
            .with_resolver(Arc::new(StaticResolver::new().with("localhost", &[LOCAL])));
        assert_eq!(read_body(&f, &url).await.unwrap(), b"tls bytes", "{url}");
    }
    // Without the CA the certificate is not trusted.
    let err = open_fetcher()
        .get(&format!("https://127.0.0.1:{port}/secure.png"))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Tls { .. }), "{err}");
}

/// A loopback server answering every connection with `head`, then `body`
/// one byte every `every` (forever when `forever`, else once through).
async fn raw_server(head: impl Into<String>, body: &'static [u8], every: Duration, forever: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head: std::sync::Arc<str> = head.into().into();
    let l = tokio::net::TcpListener::bind((LOCAL, 0)).await.unwrap();
    let url = format!("http://{}/x.mp4", l.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let head = head.clone();
            tokio::spawn(async move {
                let mut req = [0u8; 4096];
                let _ = c.read(&mut req).await;
                c.write_all(head.as_bytes()).await?;
                loop {
                    for b in body {
                        c.write_all(&[*b]).await?;
                        tokio::time::sleep(every).await;
                    }
                    if !forever {
                        return c.shutdown().await;
                    }
                }
            });
        }
    });
    url
}

/// A server that keeps the body coming, a byte at a time, never stalls
/// long enough for an idle limit: `media.timeout` bounds the whole download.
#[tokio::test]
async fn a_dripping_body_is_bounded_by_the_whole_download_timeout() {
    let url = raw_server(
        "HTTP/1.1 200 OK\r\ncontent-length: 100000000\r\n\r\n",
        b"drip",
        Duration::from_millis(20),
        true,
    )
    .await;
    let f = archive_fetcher(u64::MAX, Duration::from_millis(500));
    let started = std::time::Instant::now();
    let err = read_body(&f, &url).await.unwrap_err();
    assert_eq!(err, FetchError::Timeout(Duration::from_millis(500)));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

/// A body longer than its `Content-Length`: the announced bytes are the
/// file (HTTP/1.1 framing; what follows is not this answer's), as any client
/// reads it. A body shorter than announced is an error (above).
#[tokio::test]
async fn a_body_longer_than_announced_is_cut_at_the_announced_length() {
    let url = raw_server(
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
        b"hello world",
        Duration::ZERO,
        false,
    )
    .await;
    assert_eq!(read_body(&open_fetcher(), &url).await.unwrap(), b"hello");
}

/// A file sent compressed although the fetcher asked for `identity` (an
/// object stored gzipped) is not the file: refused for good, naming the
/// encoding (it was stored as the compressed bytes under the file's type).
/// `identity` itself is the file.
#[tokio::test]
async fn a_compressed_answer_is_refused_naming_its_encoding() {
    // Four gzip bytes under these `Content-Encoding` lines: the error.
    let refused = |lines: &'static str| async move {
        let head = format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n{lines}content-length: 4\r\n\r\n");
        let url = raw_server(head, b"\x1f\x8b\x08\x00", Duration::ZERO, false).await;
        open_fetcher().get(&url).await.map(|_| ()).unwrap_err()
    };
    let err = refused("content-encoding: gzip\r\n").await;
    assert!(
        matches!(&err, FetchError::Encoded { encoding, .. } if encoding == "gzip"),
        "{err}"
    );
    assert!(!err.retryable() && err.kind() == "encoded", "{err}");
    assert!(err.to_string().contains("Content-Encoding \"gzip\""), "{err}");
    // A coding on a second line, or after another, is seen too.
    let err = refused("content-encoding: identity\r\ncontent-encoding: aws-chunked, br\r\n").await;
    assert!(
        matches!(&err, FetchError::Encoded { encoding, .. } if encoding == "br"),
        "{err}"
    );
    // `identity`, and what S3-compatible stores replay over the file's own
    // bytes (`aws-chunked` from a checksummed upload) or junk: the file.
    for encoding in ["identity", "aws-chunked", "binary"] {
        let head = format!("HTTP/1.1 200 OK\r\ncontent-encoding: {encoding}\r\ncontent-length: 5\r\n\r\n");
        let url = raw_server(head, b"hello", Duration::ZERO, false).await;
        assert_eq!(read_body(&open_fetcher(), &url).await.unwrap(), b"hello", "{encoding}");
    }
}
