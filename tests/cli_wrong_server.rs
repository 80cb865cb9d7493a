//! The admin subcommands pointed at a server that is not the daemon's admin
//! API (a web server, a proxy's error page, a debugging echo server): the
//! command fails (non-zero exit) naming the URL and what came back, cut
//! short, and never prints the admin token, even when that server quotes
//! the request's `Authorization` back.

use crate::common;

use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "adm-secret-token-93e1";

/// A server on loopback answering every request with `status`, `content_type`
/// and the body `body(request head)` makes.
async fn server(status: &'static str, content_type: &'static str, body: fn(&str) -> String) -> SocketAddr {
    quoting_server(status, content_type, |_| String::new(), body).await
}

/// [`server`], with `content_type` followed by what `in_type(request head)` makes.
async fn quoting_server(
    status: &'static str,
    content_type: &'static str,
    in_type: fn(&str) -> String,
    body: fn(&str) -> String,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let (body, quoted) = (body(&head), in_type(&head));
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {content_type}{quoted}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

async fn run(addr: SocketAddr, cmd: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "--admin".to_string(),
        format!("http://{addr}"),
        "--token".into(),
        TOKEN.into(),
    ];
    args.extend(cmd.iter().map(|s| s.to_string()));
    cli_async(args).await
}

const COMMANDS: [&[&str]; 5] = [
    &["status"],
    &["events"],
    &["replay", "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV"],
    &["replay-dead-letters"],
    &["status", "--json"],
];

/// A web page answered `200`: not taken for an empty answer of the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_page_answered_200_is_an_error_naming_it() {
    let addr = server("200 OK", "text/html", |_| {
        format!("<!doctype html><html><body>{}</body></html>", "welcome ".repeat(2000))
    })
    .await;
    for cmd in COMMANDS {
        let (ok, out, err) = run(addr, cmd).await;
        assert!(!ok, "{cmd:?} succeeded on a web page: {out}");
        assert!(
            err.contains("not the admin API's JSON")
                && err.contains("text/html")
                && err.contains(&format!("http://{addr}/api/")),
            "{cmd:?}: {err}"
        );
        assert!(err.len() < 1000, "{cmd:?}: the whole page printed: {err}");
    }
}

/// JSON that is no answer of the API (not an object) fails the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_that_is_not_an_object_is_an_error() {
    let addr = server("200 OK", "application/json", |_| "[1, 2, 3]".into()).await;
    for cmd in COMMANDS {
        let (ok, out, err) = run(addr, cmd).await;
        assert!(!ok, "{cmd:?} succeeded: {out}");
        assert!(err.contains("not the admin API's JSON"), "{cmd:?}: {err}");
    }
}

/// A proxy's error page (`502`, HTML): the status and the start of the page,
/// not all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_page_is_cut_short() {
    let addr = server("502 Bad Gateway", "text/html", |_| {
        format!(
            "<html><body><h1>502 Bad Gateway</h1>{}</body></html>",
            "x".repeat(100_000)
        )
    })
    .await;
    let (ok, _, err) = run(addr, &["events"]).await;
    assert!(!ok);
    assert!(err.contains("502") && err.contains("Bad Gateway"), "{err}");
    assert!(err.len() < 1000, "the whole page printed ({} bytes)", err.len());
}

/// An error answered as JSON (the relay's public listener given as
/// `--admin`: `404` "no route for this path"; a daemon wanting a token):
/// the URL is named, so a wrong `--admin` shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_error_names_the_url_it_came_from() {
    let addr = server("404 Not Found", "application/json", |_| {
        r#"{"error":"no route for this path"}"#.into()
    })
    .await;
    let (ok, _, err) = run(addr, &["events"]).await;
    assert!(!ok);
    assert!(
        err.contains(&format!("404 Not Found from http://{addr}/api/events")) && err.contains("no route for this path"),
        "{err}"
    );
    let addr = server("401 Unauthorized", "application/json", |_| r#"{"error":"no"}"#.into()).await;
    let (ok, _, err) = run(addr, &["events"]).await;
    assert!(!ok);
    assert!(
        err.contains(&format!("the admin API at http://{addr} refused the token")),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "{err}");
}

/// A server that quotes the request back (its `Authorization` header among
/// it), in an error or in a success: the token is not printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_quoting_the_token_back_does_not_get_it_printed() {
    fn quoted(head: &str) -> String {
        serde_json::json!({ "error": head, "echo": head, "events": [], "more": false }).to_string()
    }
    for status in ["400 Bad Request", "200 OK"] {
        let addr = match status {
            "200 OK" => server("200 OK", "application/json", quoted).await,
            _ => server("400 Bad Request", "application/json", quoted).await,
        };
        for cmd in [&["events"][..], &["events", "--json"], &["status", "--json"]] {
            let (_, out, err) = run(addr, cmd).await;
            assert!(
                !out.contains(TOKEN) && !err.contains(TOKEN),
                "{status} {cmd:?} printed the token:\n{out}\n{err}"
            );
        }
        // It is the echo, shown redacted (so the test saw it come back).
        let (_, out, err) = run(addr, &["events", "--json"]).await;
        assert!(format!("{out}{err}").contains("Bearer <redacted>"), "{out}{err}");
    }
}

/// A server that quotes the request's `Authorization` in its Content-Type
/// (named in the error): the token is not printed there either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_quoted_in_the_content_type_is_not_printed() {
    fn quoted(head: &str) -> String {
        let auth = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("authorization: ")
                    .or_else(|| l.strip_prefix("Authorization: "))
            })
            .unwrap_or_default();
        format!("; echo=\"{auth}\"")
    }
    let addr = quoting_server("200 OK", "text/html", quoted, |_| "<html></html>".into()).await;
    let (ok, out, err) = run(addr, &["status"]).await;
    assert!(!ok, "{out}");
    assert!(err.contains("Bearer <redacted>"), "the quote did not come back: {err}");
    assert!(!err.contains(TOKEN) && !out.contains(TOKEN), "printed the token: {err}");
}
