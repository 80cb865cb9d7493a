//! Review 39: holes in the merge of f35 (review 35's fixes). Each test fails
//! on the code as reviewed; see /work/notes/review39.md.
//!
//! 1. Cluster mode: a callback received while a reload that renames its route
//!    is telling NATS the new topology (before the relay's `live` config is
//!    swapped) passes ingest's `route_still_current` check (the pointer is
//!    still the old one), is stored for no subscriber (`on_route_now` reads
//!    the new topology) and answered 200: the provider stops, nobody gets it.
//! 2. ACME: a cached file for the exact domains that is expired (or
//!    unreadable) is preferred to a valid cached certificate covering the
//!    domains: the stand-in only applies when the exact file is missing.

use crate::common;

use std::path::Path;
use std::time::SystemTime;

use common::nats::NatsCluster;
use common::pebble::DOMAIN;
use common::*;
use http::StatusCode;
use sha2::{Digest, Sha256};

/// Route `t` (path `/hooks/t`) renamed to `t2`, same path, token, key and subscriber.
fn renamed(cfg: TestConfig) -> TestConfig {
    cfg.raw(|doc| {
        let routes = doc["routes"].as_array_mut().unwrap();
        let t = routes[0].as_table_mut().unwrap();
        assert_eq!(t["name"].as_str(), Some("t"));
        t.insert("name".into(), toml::Value::String("t2".into()));
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r39_cluster_a_callback_received_while_a_rename_reload_registers_is_not_stored_for_nobody() {
    let nats = NatsCluster::start(1).await;
    let s = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let base = nats.relay_with_one_subscriber(dir.path(), &s.url());
    let h = start(&base).await;
    let addr = h.ingest_addrs[0];
    accepted(addr, &runway("before")).await;
    s.wait_for(secs(10), "the first event", |r| r.len() == 1).await;

    // The reload renames t to t2 (same path, same subscriber). NATS is slow
    // to answer while the reload sets the new topology up (frozen here for
    // 1.5 s: a leader election, a busy cluster); a provider's callback
    // arrives meanwhile.
    renamed(nats.relay_with_one_subscriber(dir.path(), &s.url())).write();
    nats.signal(0, "STOP");
    let (reloaded, (status, answer), ()) = tokio::join!(
        h.reload(),
        async {
            tokio::time::sleep(ms(300)).await;
            callback(addr, &runway("during")).await
        },
        async {
            tokio::time::sleep(ms(1500)).await;
            nats.signal(0, "CONT");
        }
    );
    assert!(reloaded.is_ok(), "{reloaded:?}");
    if status != StatusCode::OK {
        // A 503 (or any refusal): the provider retries; nothing lost.
        return;
    }
    let id = answer["id"].as_str().unwrap().to_string();
    let (_, view) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    let deadline = std::time::Instant::now() + secs(8);
    while s.count() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(ms(100)).await;
    }
    assert_eq!(
        s.count(),
        2,
        "a callback answered 200 during a reload that renamed its route was stored for no subscriber \
         (the provider will not retry; nobody receives it): {view}"
    );
    h.shutdown().await;
}

/// The ACME state directory's file name for a certificate (as
/// `src/acme/cache.rs` names it: the domains sorted and lowercased, then
/// the directory URL).
fn cert_file(state: &Path, domains: &[&str], directory: &str) -> std::path::PathBuf {
    let mut names: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    let mut h = Sha256::new();
    for n in &names {
        h.update(n.as_bytes());
        h.update([0]);
    }
    h.update(directory.as_bytes());
    state.join(format!("cert-{}.pem", &hex::encode(h.finalize())[..32]))
}

/// A bundle (key + certificate, one PEM) for `names`, valid as `params` says.
fn bundle(names: &[&str], expired: bool) -> String {
    let mut params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2025, 1, 1);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    format!("{}{}", key.serialize_pem(), cert.pem())
}

/// A relay with ACME for [`DOMAIN`] from a CA that cannot be reached, its
/// state directory holding `exact` as the file for [`DOMAIN`] and a valid
/// certificate for [`DOMAIN`] and another name (the list before a change
/// back to one name). What it serves from the start.
async fn served_with_exact_file(exact: &str) -> (hookrelay::tls::CertInfo, Option<&'static str>) {
    let dir = tempfile::tempdir().unwrap();
    let directory = "https://127.0.0.1:9/dir";
    let state = dir.path().join("acme");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(cert_file(&state, &[DOMAIN], directory), exact).unwrap();
    std::fs::write(
        cert_file(&state, &[DOMAIN, "more.hookrelay.test"], directory),
        bundle(&[DOMAIN, "more.hookrelay.test"], false),
    )
    .unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .tls_acme(Acme::new([DOMAIN], "ops@hookrelay.test", directory))
        .subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
    let st = h.app.acme.as_ref().unwrap().status();
    let problem = h.app.certificate_problem();
    h.shutdown().await;
    let cert = st.certificate.unwrap_or_else(|| {
        panic!(
            "no certificate served at all, though a valid cached one for {DOMAIN} is in the state directory \
             ({problem:?})"
        )
    });
    (cert, problem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r39_an_expired_exact_acme_cache_file_does_not_hide_a_valid_cached_certificate() {
    let (served, problem) = served_with_exact_file(&bundle(&[DOMAIN], true)).await;
    assert!(
        served.valid_at(SystemTime::now()),
        "an expired certificate is served (not_after {}; {problem:?}) though a valid cached one for {DOMAIN} \
         is in the state directory",
        hookrelay::tls::rfc3339(served.not_after)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r39_an_unreadable_exact_acme_cache_file_does_not_hide_a_valid_cached_certificate() {
    let (served, _) = served_with_exact_file("-----BEGIN TRUNCATED").await;
    assert!(served.valid_at(SystemTime::now()));
}

/// 3. A reload that only moves route `t` to another path (same name, same
///    subscriber) makes a callback whose body was arriving on the old path
///    a 503, and the provider's retry a 404: lost. Stored as it began (the
///    route and its subscriber are unchanged by name, so the store would
///    fan it out to `s`), it was delivered before this change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r39_a_callback_in_flight_when_its_route_changes_path_only_is_not_lost() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", s.url()));
    let h = start(&base).await;
    let addr = h.ingest_addrs[0];
    let body = runway("across-the-path-change");
    let (head, tail) = body.split_at(body.len() / 2);
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(
        format!(
            "POST /hooks/t?token=tok HTTP/1.1\r\nhost: relay\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{head}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(ms(200)).await;
    base.clone().edit_route("t", |r| r.path("/hooks/t-new")).write();
    h.reload().await.expect("reload");
    c.write_all(tail.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = c.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    if !answer.starts_with("HTTP/1.1 200") {
        // The provider retries the URL it was given.
        let (retry, v) = callback_at(addr, "/hooks/t?token=tok", &body).await;
        assert_eq!(
            retry,
            StatusCode::OK,
            "the callback in flight when route t only changed path was answered {:?}, and the provider's retry \
             {retry} ({v}): the callback is lost, though route t and its subscriber are unchanged",
            answer.lines().next()
        );
    }
    s.wait_for(secs(10), "the callback", |r| r.len() == 1).await;
    h.shutdown().await;
}

/// 4. The stand-in is the cached certificate with the latest `not_before`
///    that names any configured domain, however few: with one for both
///    configured names (from the previous directory) and a newer one for
///    only one of them in the cache, the newer one is served and every
///    client of the other name fails, though a valid certificate for both
///    is at hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r39_the_acme_stand_in_prefers_a_certificate_covering_every_configured_name() {
    const MORE: &str = "more.hookrelay.test";
    let dir = tempfile::tempdir().unwrap();
    let (old_dir, directory) = ("https://127.0.0.1:9/old", "https://127.0.0.1:9/dir");
    let state = dir.path().join("acme");
    std::fs::create_dir_all(&state).unwrap();
    let dated = |names: &[&str], year: i32| {
        let mut p = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        p.not_before = rcgen::date_time_ymd(year, 1, 1);
        p.not_after = rcgen::date_time_ymd(2035, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        format!("{}{}", key.serialize_pem(), cert.pem())
    };
    // Both names, from the directory used before; only DOMAIN, issued later.
    std::fs::write(
        cert_file(&state, &[DOMAIN, MORE], old_dir),
        dated(&[DOMAIN, MORE], 2025),
    )
    .unwrap();
    std::fs::write(cert_file(&state, &[DOMAIN], old_dir), dated(&[DOMAIN], 2026)).unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .tls_acme(Acme::new([DOMAIN, MORE], "ops@hookrelay.test", directory))
        .subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
    let st = h.app.acme.as_ref().unwrap().status();
    h.shutdown().await;
    let names = st.certificate.expect("a stand-in is served").names;
    assert!(
        names.iter().any(|n| n == MORE),
        "the stand-in names {names:?} only, though a valid cached certificate for both {DOMAIN} and {MORE} \
         is in the state directory: clients of {MORE} fail until the order succeeds"
    );
}
