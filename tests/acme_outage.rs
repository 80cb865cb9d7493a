//! ACME while the CA is down (pebble, stopped mid-test): the real binary
//! keeps serving its certificate and reports the failure (log line, metric,
//! `/api/status`, `hookrelay status`); the renewal threshold and the back-off
//! with fast options, and recovery when the CA returns.
//!
//! Needs `pebble` and `pebble-challtestsrv` on PATH (`apt-get install pebble`).

use crate::common;

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use common::pebble::{self, Pebble, DOMAIN};
use common::*;
use hookrelay::acme::Acme;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_down_the_real_binary_keeps_its_certificate_and_reports_the_failure() {
    let port = free_port();
    // 30 s certificates: renewal is due 20 s after issuance.
    let mut pb = Pebble::start(port, Some(Duration::from_secs(30))).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let path = TestConfig::new(dir.path())
        .listen(format!("127.0.0.1:{port}"))
        .tls_acme(pb.acme())
        .subscriber(Subscriber::new("s", sub.url()))
        .write();
    let bin = Bin::start(&path, &[]);
    let client = tls_client(&pb.root().await, &[b"http/1.1"]);
    let (der, info) = pebble::wait_cert(
        bin.addr,
        &client,
        Duration::from_secs(60),
        "the first certificate",
        |_| true,
    )
    .await;
    pb.stop();

    log_until(|| bin.log_text(), "ACME order failed", secs(40)).await;
    assert!(SystemTime::now() < info.not_after, "too slow to check before expiry");
    // Still the old certificate, still valid, still serving callbacks.
    assert_eq!(pebble::served_cert(bin.addr, DOMAIN, &client).await.unwrap(), der);
    let (status, _) = pebble::https(
        bin.addr,
        DOMAIN,
        &client,
        "POST",
        "/hooks/t?token=tok",
        Bytes::from(runway("ca-down")),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    let line = bin
        .log_text()
        .lines()
        .find(|l| l.contains("ACME order failed"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("serving_current_certificate=true") && line.contains("retry_in="),
        "{line}"
    );
    let m = metrics(bin.admin).await;
    assert_eq!(sample(&m, "hookrelay_acme_failures_total"), 1.0);
    assert_eq!(
        sample(&m, "hookrelay_tls_cert_expiry_seconds{source=\"acme\"}"),
        info.expiry_unix() as f64
    );

    // The status says what is served and why the renewal has not happened.
    let (_, v) = admin(bin.admin, "GET", "/api/status").await;
    let c = &v["certificates"][0];
    assert_eq!(c["certificate"]["serial"], info.serial.as_str(), "{v}");
    let a = &c["acme"];
    assert_eq!(
        (a["failures"].as_u64(), a["consecutive_failures"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(!a["last_error"].as_str().unwrap_or("").is_empty(), "{a}");
    let failed = humantime::parse_rfc3339(a["last_failure"].as_str().unwrap()).unwrap();
    let next = humantime::parse_rfc3339(a["next_attempt"].as_str().unwrap()).unwrap();
    // A minute, shortened by up to a quarter at random.
    let waits = next.duration_since(failed).unwrap();
    assert!(
        (Duration::from_secs(45)..=Duration::from_secs(60)).contains(&waits),
        "the first retry waits {waits:?}"
    );
    let base = format!("http://{}", bin.admin);
    let (ok, out, err) = cli_async(vec!["--admin".into(), base, "status".into()]).await;
    assert!(ok, "{err}");
    let want = format!(
        "  failures:  1 since start, 1 in a row; next attempt {}\n  last error ({}): {}",
        a["next_attempt"].as_str().unwrap(),
        a["last_failure"].as_str().unwrap(),
        a["last_error"].as_str().unwrap()
    );
    assert!(out.contains(&want), "{want:?} not in\n{out}");

    // SIGHUP with a changed ACME block: named as needing a restart, the
    // managed certificate served as before.
    TestConfig::new(dir.path())
        .listen(format!("127.0.0.1:{port}"))
        .tls_acme(pb.acme().domains([DOMAIN, "more.hookrelay.test"]))
        .subscriber(Subscriber::new("s", sub.url()))
        .write();
    bin.signal("HUP");
    log_until(
        || bin.log_text(),
        "server.tls.acme changed; it takes effect after a restart",
        secs(10),
    )
    .await;
    assert_eq!(pebble::served_cert(bin.addr, DOMAIN, &client).await.unwrap(), der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_back_off_and_recovery_through_server_serve() {
    hookrelay::tls::install_provider();
    let port = free_port();
    let mut pb = Pebble::start(port, Some(Duration::from_secs(40))).await;
    let state = tempfile::tempdir().unwrap();
    let settings = pb.settings();
    // Renew when three quarters are left (10 s into 40), retry fast.
    let opts = pebble::fast_options(0.75);
    let failures = prometheus_client::metrics::counter::Counter::default();
    let acme = Acme::new(&settings, state.path(), opts, failures.clone()).unwrap();
    let (stop_tx, server) = pebble::hello_server(&acme, port).await;
    let renewals = tokio::spawn(acme.clone().run());
    let addr = ([127, 0, 0, 1], port).into();

    let client = tls_client(&pb.root().await, &[b"http/1.1"]);
    let (der, first) = pebble::wait_cert(addr, &client, Duration::from_secs(60), "the first certificate", |_| {
        true
    })
    .await;
    let (status, body) = pebble::https(addr, DOMAIN, &client, "GET", "/", Bytes::new())
        .await
        .unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
    let renew_at = acme.status().renew_at.unwrap();
    let lifetime = first.not_after.duration_since(first.not_before).unwrap();
    assert_eq!(renew_at, first.not_after - lifetime.mul_f64(0.75));

    // CA down from before the renewal is due: failures pile up, backing off
    // 250 ms, 500 ms, then 1 s (the cap; each up to a quarter shorter); the
    // old certificate stays.
    pb.stop();
    let deadline = Instant::now() + Duration::from_secs(40);
    while acme.status().consecutive_failures < 4 {
        assert!(Instant::now() < deadline, "failures: {:?}", acme.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = acme.status();
    assert!(SystemTime::now() >= renew_at);
    assert_eq!(st.failures, failures.get());
    // The cap, shortened by up to a quarter at random.
    let waits = st
        .next_attempt
        .unwrap()
        .duration_since(st.last_failure.unwrap())
        .unwrap();
    assert!(
        (Duration::from_millis(750)..=Duration::from_secs(1)).contains(&waits),
        "the retry at the cap waits {waits:?}"
    );
    assert!(st.last_error.as_deref().unwrap_or("").contains("order"), "{st:?}");
    assert_eq!(st.certificate.as_ref(), Some(&first));
    assert_eq!(pebble::served_cert(addr, DOMAIN, &client).await.unwrap(), der);

    // The CA is back (a new root): the next retry renews.
    pb.restart().await;
    let client = tls_client(&pb.root().await, &[b"http/1.1"]);
    let (_, second) = pebble::wait_cert(
        addr,
        &client,
        Duration::from_secs(30),
        "the renewed certificate",
        |_| true,
    )
    .await;
    assert_ne!(second.serial, first.serial);
    let st = acme.status();
    assert_eq!((st.consecutive_failures, st.certificate.as_ref()), (0, Some(&second)));
    assert!(st.next_attempt.is_none(), "{st:?}");

    renewals.abort();
    let _ = stop_tx.send(true);
    let _ = server.await;
}
