//! `hookrelay forward` over HTTP/2: a connection that goes silent is found
//! dead by an unanswered ping and replaced.

use crate::common;

use std::sync::Arc;

use common::*;

const TOKEN: &str = "h2-pull-token";

/// The local service over HTTP/2 (TLS, `--ca-file`): its one connection goes
/// silent (a NAT or load balancer dropped its state). It is found dead by an
/// unanswered ping and replaced, not reused by every delivery (each timing
/// out and handed back) until the kernel gives up on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_http2_local_connection_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::write(dir.path(), "local");
    let sub = Sub::start_tls(&cert, Arc::new(|_, _| Behaviour::Status(200))).await;
    let proxy = crate::delivery_h2::FreezingProxy::start(sub.addr).await;
    let h = start(
        &TestConfig::new(dir.path()).subscriber(Subscriber::pull("laptop", TOKEN).lease(secs(60)).retry([ms(100); 20])),
    )
    .await;
    let to = format!("https://localhost:{}/webhooks", proxy.addr.port());
    let ca = cert.cert.to_str().unwrap().to_string();
    let fwd = Forwarder::start(
        dir.path(),
        &pull_url(h.ingest_addrs[0], "laptop"),
        &to,
        TOKEN,
        &["--timeout", "1s", "--ca-file", &ca],
    );
    accepted(h.ingest_addrs[0], &runway("h2-first")).await;
    let got = sub.wait_for(secs(10), "the first delivery", |r| !r.is_empty()).await;
    assert_eq!(got[0].version, http::Version::HTTP_2, "{}", fwd.log_text());
    proxy.freeze_all();
    accepted(h.ingest_addrs[0], &runway("h2-second")).await;
    let got = sub.wait_for(secs(8), "the second delivery", |r| r.len() >= 2).await;
    // On a new connection: the frozen one was given up, not waited on (the
    // wait above already says that it came).
    assert_ne!(got[1].from, got[0].from, "{}", fwd.log_text());
}
