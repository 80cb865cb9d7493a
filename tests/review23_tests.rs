//! Review 23 (operator surfaces): each test fails on the code it was written
//! against because of the defect its comment names.

use crate::common;

use std::time::Duration;

use common::provider::{FakeOptions, FakeProvider};
use common::tasks::{register, task_route, tasks_config};
use common::*;

/// A task id with a character that must be percent-encoded in a URL path
/// (`:`, a space, `/`; registration takes any 1-256 non-control characters)
/// cannot be shown: the CLI encodes it, the API never decodes the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_shows_a_registered_task_whose_id_needs_encoding() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("plain", "kie-runway", &fake, &sub.url()).without_reconcile();
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let task = "batch 7:42";
    let (s, v) = register(h.admin_addr, "plain", task).await;
    assert_eq!(s, 200, "{v}");
    let base = format!("http://{}", h.admin_addr);
    let (ok, out, err) = cli_async(vec!["--admin".into(), base, "tasks".into(), task.into()]).await;
    h.shutdown().await;
    assert!(ok, "`hookrelay tasks {task:?}` of a registered task failed: {err}{out}");
}

/// README: `server.shutdown_grace` is how long SIGTERM waits for requests in
/// flight (keep it below the unit's `TimeoutStopSec=15s`). The binary cuts
/// its whole shutdown at a fixed 8 s (supervise.rs), so with a grace of 12 s
/// a callback still uploading at SIGTERM is cut off after 8 s, and the store
/// is not closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_the_configured_shutdown_grace() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let path = TestConfig::new(dir.path())
        .read_timeout(secs(30))
        .shutdown_grace(secs(12))
        .subscriber(Subscriber::new("s", sub.url()))
        .write();
    let bin = Bin::start(&path, &[]);
    let body = runway("slow-upload");
    let mut s = tokio::net::TcpStream::connect(bin.addr).await.unwrap();
    let head = format!(
        "POST /hooks/t?token=tok HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = read_some(&mut s, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 100"), "{answer}");
    bin.signal("TERM");
    // Inside the 12 s grace, after the fixed 8 s.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let _ = s.write_all(body.as_bytes()).await;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), tokio::io::AsyncReadExt::read(&mut s, &mut buf))
        .await
        .map(|r| r.unwrap_or(0))
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    let (_, bin) = bin.exit().await;
    let log = bin.log_text();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the callback in flight was cut off inside shutdown_grace = 12s: answer {answer:?}\nlog:\n{log}"
    );
}

/// `/healthz` and `/readyz` need no token (admin/mod.rs), but only for GET:
/// a health check that sends HEAD (load balancers, uptime monitors,
/// `curl -I`) gets 401 with a token set, and 404 without one, so a healthy
/// relay is reported down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_health_checks_are_answered_like_get() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    for token in [Some("head-token"), None] {
        let mut cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
        if let Some(t) = token {
            cfg = cfg.admin_token(t);
        }
        let h = start(&cfg).await;
        let mut got = Vec::new();
        for path in ["/healthz", "/readyz"] {
            let (get, _, _) = request(h.admin_addr, None, "GET", path, &[], Default::default()).await;
            let (head, _, _) = request(h.admin_addr, None, "HEAD", path, &[], Default::default()).await;
            got.push((path, get.as_u16(), head.as_u16()));
        }
        h.shutdown().await;
        assert!(
            got.iter().all(|(_, get, head)| get == head),
            "token {token:?}: (path, GET, HEAD) = {got:?}"
        );
    }
}

/// A SIGHUP that would replace the valid certificate with an expired one
/// (a deploy hook that copied the wrong file) must keep the running one: a
/// reload that cannot be applied changes nothing. It is applied instead
/// (logged at info with `days_left=0`), and every HTTPS handshake fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_a_valid_certificate_rather_than_serve_an_expired_one() {
    let dir = tempfile::tempdir().unwrap();
    TestCert::write(dir.path(), "tls");
    let cfg = TestConfig::new(dir.path())
        .tls(&dir.path().join("tls.crt"), &dir.path().join("tls.key"))
        .subscriber(Subscriber::new("s", DOWN));
    let h = start(&cfg).await;
    assert_eq!(h.app.certificate_problem(), None);
    // Same file names, a certificate that expired in 2025.
    TestCert::write_until(dir.path(), "tls", 2025, 1);
    let reloaded = h.reload().await;
    let problem = h.app.certificate_problem();
    h.shutdown().await;
    assert_eq!(
        problem, None,
        "the reload ({:?}) put an expired certificate in place of a valid one",
        reloaded.map_err(|e| e.to_string())
    );
}
