//! A relay whose certificates are already due for renewal when they arrive
//! (the local clock far ahead of the CA's, or a CA issuing certificates
//! shorter than the renewal margin) does not order again and again until
//! the CA's rate limit: at most `MAX_ORDERS_PER_DAY` certificates a day,
//! restarts included (the times are kept in the state directory, per CA
//! and domain set: another CA's certificates do not count).
//! A CA answering 429 is given the longest retry at once.
//! Against a real CA on loopback (pebble). The clock-ahead decision itself
//! is unit-tested in src/acme/pace.rs.

use crate::common;

use std::time::{Duration, Instant};

use common::pebble::{self, Pebble, DOMAIN};
use common::*;
use hookrelay::acme::{Acme, Options};
use hookrelay::config::AcmeSettings;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_due_on_arrival_are_ordered_at_most_three_times_a_day_even_across_a_restart() {
    hookrelay::tls::install_provider();
    let port = free_port();
    let pb = Pebble::start(port, Some(Duration::from_secs(300))).await;
    let state = tempfile::tempdir().unwrap();
    let settings = pb.settings();
    // Renew with the whole validity left: every certificate is due as it arrives.
    let opts = pebble::fast_options(1.0);
    let failures = prometheus_client::metrics::counter::Counter::default();
    let acme = Acme::new(&settings, state.path(), opts, failures).unwrap();
    let (stop_tx, server) = pebble::hello_server(&acme, port).await;
    let renewals = tokio::spawn(acme.clone().run());

    // Three certificates, each due as it arrives; then twice as long as the
    // slowest of the orders between them took: time for at least one more.
    let mut serials: Vec<String> = Vec::new();
    let mut arrivals: Vec<Instant> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut watch_until = None;
    while watch_until.is_none_or(|t| Instant::now() < t) {
        assert!(Instant::now() < deadline, "certificates issued: {serials:?}");
        if let Some(c) = acme.status().certificate {
            if !serials.contains(&c.serial) {
                serials.push(c.serial);
                arrivals.push(Instant::now());
            }
        }
        if serials.len() == 3 && watch_until.is_none() {
            let slowest = arrivals.windows(2).map(|w| w[1] - w[0]).max().unwrap();
            watch_until = Some(Instant::now() + (slowest * 2).max(Duration::from_secs(3)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(serials.len(), 3, "certificates issued: {serials:?}");
    let st = acme.status();
    assert_eq!(st.failures, 0, "{st:?}");

    renewals.abort();
    let _ = renewals.await;
    let _ = stop_tx.send(true);
    let _ = server.await;
    drop(acme);

    // The relay restarted on the same state directory (a crash loop): its
    // cached certificate is due at once, but the three of the last day are
    // remembered, so it waits (about a day) instead of ordering a fourth.
    let acme = Acme::new(&settings, state.path(), pebble::fast_options(1.0), Default::default()).unwrap();
    assert_eq!(acme.status().certificate.map(|c| c.serial).as_ref(), serials.last());
    let (stop_tx, server) = pebble::hello_server(&acme, port).await;
    // What the renewals log, kept: the served certificate (5 minutes) ends
    // long before the next order may be placed, an outage said at error
    // (TLS review, stop 79: it went by in silence).
    let (logged, dispatch) = captured_log();
    let renewals = tokio::spawn(tracing::instrument::WithSubscriber::with_subscriber(
        acme.clone().run(),
        dispatch,
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    let waits_until = loop {
        let st = acme.status();
        let serial = st.certificate.as_ref().map(|c| c.serial.clone());
        assert_eq!(
            serial.as_ref(),
            serials.last(),
            "ordered again after the restart: {st:?}"
        );
        if let Some(at) = st.next_attempt {
            break at;
        }
        assert!(Instant::now() < deadline, "{st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wait = waits_until.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(wait > Duration::from_secs(23 * 3600), "{wait:?}");
    let log = String::from_utf8_lossy(&logged.lock().unwrap()).to_string();
    assert!(
        log.contains("ERROR") && log.contains("expires before the next order may be placed"),
        "{log}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = acme.status();
    assert_eq!(st.certificate.map(|c| c.serial).as_ref(), serials.last());
    assert_eq!(st.failures, 0);

    renewals.abort();
    let _ = renewals.await;
    let _ = stop_tx.send(true);
    let _ = server.await;
    drop(acme);

    // Switched to another CA (a directory URL of its own, as from staging to
    // production): the three came from the other one, so it orders at once.
    let other = AcmeSettings {
        directory: format!("{}?another-ca", settings.directory),
        ..settings.clone()
    };
    let acme = Acme::new(&other, state.path(), pebble::fast_options(1.0), Default::default()).unwrap();
    let (stop_tx, server) = pebble::hello_server(&acme, port).await;
    let renewals = tokio::spawn(acme.clone().run());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = acme.status();
        let serial = st.certificate.as_ref().map(|c| c.serial.clone());
        if serial.is_some_and(|s| !serials.contains(&s)) {
            break;
        }
        assert!(Instant::now() < deadline, "no order from the other CA: {st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    renewals.abort();
    let _ = stop_tx.send(true);
    let _ = server.await;
}

/// A CA answering 429 (rate limited) with `Retry-After`, as a loopback
/// stand-in for its directory: the next order waits `retry_max` at once, not
/// `retry_first` (rustls-acme keeps no headers of such an answer, so the
/// `Retry-After` value itself cannot be honoured), and the error says 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_answer_waits_the_longest_retry_at_once() {
    hookrelay::tls::install_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let ca = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let body = r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new orders"}"#;
            let answer = format!(
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 120\r\nContent-Type: application/problem+json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes()).await;
        }
    });
    let state = tempfile::tempdir().unwrap();
    let settings = AcmeSettings {
        domains: vec![DOMAIN.into()],
        email: "ops@hookrelay.test".into(),
        directory: format!("http://127.0.0.1:{port}/dir"),
        ca_file: None,
    };
    let opts = Options {
        renew_remaining: 1.0 / 3.0,
        retry_first: Duration::from_millis(250),
        retry_max: Duration::from_secs(30),
        attempt_timeout: Duration::from_secs(10),
    };
    let acme = Acme::new(&settings, state.path(), opts, Default::default()).unwrap();
    let renewals = tokio::spawn(acme.clone().run());
    let deadline = Instant::now() + Duration::from_secs(20);
    while acme.status().consecutive_failures == 0 {
        assert!(Instant::now() < deadline, "no failure: {:?}", acme.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = acme.status();
    assert!(st.last_error.as_deref().unwrap_or("").contains("429"), "{st:?}");
    let wait = st
        .next_attempt
        .unwrap()
        .duration_since(st.last_failure.unwrap())
        .unwrap();
    // The longest wait, shortened by up to a quarter at random.
    assert!(
        (Duration::from_millis(22_500)..=Duration::from_secs(30)).contains(&wait),
        "{st:?}"
    );
    renewals.abort();
    ca.abort();
}

/// A log kept in memory, and the dispatcher writing to it.
fn captured_log() -> (std::sync::Arc<std::sync::Mutex<Vec<u8>>>, tracing::Dispatch) {
    #[derive(Clone)]
    struct Kept(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Kept {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = Kept(kept.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (kept, tracing::Dispatch::new(subscriber))
}
