//! ACME certificates against a real CA on loopback (pebble): issuance through
//! TLS-ALPN-01 on the relay's own listener and a callback over the issued
//! certificate (with what `/api/status`, `hookrelay status` and the metrics
//! say), restart from the cache without the CA, renewal at the threshold
//! (pebble's short certificates). CA outages: `tests/acme_outage.rs`.
//!
//! Needs `pebble` and `pebble-challtestsrv` on PATH (`apt-get install pebble`).

use crate::common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::pebble::{self, Pebble, DOMAIN};
use common::*;
use hookrelay::tls::{rfc3339, CertInfo};
use http::StatusCode;
use rustls::pki_types::CertificateDer;

/// The relay on 127.0.0.1:`port` (where `pb` validates), certificates for
/// [`DOMAIN`] from `pb`, one subscriber `s` at `sub_url`.
fn acme_config(dir: &Path, port: u16, pb: &Pebble, sub_url: &str) -> TestConfig {
    TestConfig::new(dir)
        .listen(format!("127.0.0.1:{port}"))
        .tls_acme(pb.acme())
        .subscriber(Subscriber::new("s", sub_url))
}

/// A daemon on `port` with an ACME config for `pb`, once its first certificate is served.
async fn issued(
    pb: &Pebble,
    port: u16,
) -> (
    tempfile::TempDir,
    Sub,
    hookrelay::Handle,
    tokio_rustls::TlsConnector,
    CertificateDer<'static>,
) {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(&acme_config(dir.path(), port, pb, &sub.url())).await;
    assert_eq!(h.ingest_addrs[0].port(), port);
    let client = tls_client(&pb.root().await, &[b"http/1.1"]);
    let (der, _) = pebble::wait_cert(
        h.ingest_addrs[0],
        &client,
        Duration::from_secs(60),
        "the first certificate",
        |_| true,
    )
    .await;
    (dir, sub, h, client, der)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_through_tls_alpn_on_the_listener_and_serves_a_callback() {
    let port = free_port();
    let pb = Pebble::start(port, None).await;
    let (dir, sub, h, client, der) = issued(&pb, port).await;
    let addr = h.ingest_addrs[0];
    let info = CertInfo::from_der(&der).unwrap();
    assert_eq!(info.names, [DOMAIN]);

    // A provider's callback over the issued certificate reaches the subscriber.
    let (status, body) = pebble::https(
        addr,
        DOMAIN,
        &client,
        "POST",
        "/hooks/t?token=tok",
        Bytes::from(runway("acme")),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK, "{body:?}");
    sub.wait_for(Duration::from_secs(10), "the callback", |r| r.len() == 1)
        .await;

    // Status and metrics describe the served certificate; nothing failed.
    let st = h.app.acme.as_ref().unwrap().status();
    assert_eq!(st.certificate.as_ref(), Some(&info));
    assert_eq!(st.failures, 0);
    let lifetime = info.not_after.duration_since(info.not_before).unwrap();
    let renew_at = info.not_after - lifetime.mul_f64(1.0 / 3.0);
    assert_eq!(st.renew_at, Some(renew_at));
    let m = metrics(h.admin_addr).await;
    assert_eq!(
        sample(&m, "hookrelay_tls_cert_expiry_seconds{source=\"acme\"}"),
        info.expiry_unix() as f64
    );
    assert!(!m.iter().any(|(k, _)| k.contains("source=\"file\"")), "{m:?}");
    assert_eq!(sample(&m, "hookrelay_acme_failures_total"), 0.0);

    let state = dir.path().join("acme");
    let (status, v) = admin(h.admin_addr, "GET", "/api/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v["listeners"],
        serde_json::json!([{ "addr": addr.to_string(), "tls": "acme" }])
    );
    let c = &v["certificates"][0];
    assert_eq!(c["source"], "acme");
    assert_eq!(c["certificate"]["names"], serde_json::json!([DOMAIN]));
    assert_eq!(c["certificate"]["serial"], info.serial.as_str());
    assert_eq!(c["certificate"]["not_after"], rfc3339(info.not_after).as_str());
    let a = &c["acme"];
    assert_eq!(a["renew_at"], rfc3339(renew_at).as_str());
    assert_eq!(
        (a["failures"].as_u64(), a["consecutive_failures"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(a["last_error"].is_null() && a["next_attempt"].is_null(), "{a}");
    assert_eq!(a["domains"], serde_json::json!([DOMAIN]));
    assert_eq!(a["directory"], pb.directory.as_str());
    assert_eq!(a["state_dir"], state.display().to_string());
    let base = format!("http://{}", h.admin_addr);
    let (ok, out, err) = cli_async(vec!["--admin".into(), base, "status".into()]).await;
    assert!(ok, "{err}");
    for line in [
        format!("listeners:  {addr} (tls: acme)"),
        format!("certificate (acme): {DOMAIN}"),
        format!("  renews:    {}", rfc3339(renew_at)),
        format!("  ca:        {}", pb.directory),
        "  failures:  0 since start\n".to_string(),
    ] {
        assert!(out.contains(&line), "{line:?} not in\n{out}");
    }

    // Account key and certificate kept beside the store, private.
    assert_eq!(h.app.acme.as_ref().unwrap().dir(), state);
    let mut files: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    // The third is the ledger of issued certificates (the daily cap), kept
    // per CA and domain set like the certificate.
    assert!(
        files.len() == 3
            && files[0].starts_with("account-")
            && files[1].starts_with("cert-")
            && files[2]
                == format!(
                    "issued-{}.times",
                    &files[1]["cert-".len()..files[1].len() - ".pem".len()]
                ),
        "{files:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    for f in &files {
        let mode = std::fs::metadata(state.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }

    // A validation-style handshake (ALPN acme-tls/1 only) with no order in
    // progress gets nothing: the challenge path never serves the real certificate.
    let acme_only = pebble::validator_like_client();
    assert!(pebble::served_cert(addr, DOMAIN, &acme_only).await.is_err());

    // SIGHUP with the ACME config keeps the managed certificate; a changed
    // ACME block waits for a restart (the running manager is unchanged).
    h.reload().await.unwrap();
    assert_eq!(pebble::served_cert(addr, DOMAIN, &client).await.unwrap(), der);
    acme_config(dir.path(), port, &pb, &sub.url())
        .tls_acme(pb.acme().domains([DOMAIN, "more.hookrelay.test"]))
        .write();
    h.reload().await.unwrap();
    assert_eq!(h.app.acme.as_ref().unwrap().settings().domains, [DOMAIN]);
    assert_eq!(pebble::served_cert(addr, DOMAIN, &client).await.unwrap(), der);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_serves_the_cached_certificate_without_asking_the_ca() {
    let port = free_port();
    let mut pb = Pebble::start(port, None).await;
    let (dir, sub, h, client, der) = issued(&pb, port).await;
    h.shutdown().await;

    // The CA is gone; whatever would ask it now connects here instead.
    pb.stop();
    let tripwire = tokio::net::TcpListener::bind(pb.acme_addr).await.unwrap();
    let h = start(&acme_config(dir.path(), port, &pb, &sub.url())).await;
    // Served from the first handshake on: no waiting, no order.
    let served = pebble::served_cert(h.ingest_addrs[0], DOMAIN, &client).await.unwrap();
    assert_eq!(served, der);
    assert!(
        tokio::time::timeout(Duration::from_secs(2), tripwire.accept())
            .await
            .is_err(),
        "the restarted daemon contacted the ACME directory"
    );
    let st = h.app.acme.as_ref().unwrap().status();
    assert_eq!((st.failures, st.consecutive_failures), (0, 0));
    assert!(st.renew_at.unwrap() > SystemTime::now());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renews_when_a_third_of_the_validity_is_left() {
    let port = free_port();
    let pb = Pebble::start(port, Some(Duration::from_secs(24))).await;
    let (_dir, _sub, h, client, der) = issued(&pb, port).await;
    let first = CertInfo::from_der(&der).unwrap();
    let renew_at = h.app.acme.as_ref().unwrap().status().renew_at.unwrap();
    // pebble's validity is inclusive: notAfter = notBefore + period - 1 s.
    let lifetime = first.not_after.duration_since(first.not_before).unwrap();
    assert_eq!(lifetime, Duration::from_secs(23));
    assert_eq!(renew_at, first.not_after - lifetime.mul_f64(1.0 / 3.0));

    let (_, second) = pebble::wait_cert(
        h.ingest_addrs[0],
        &client,
        Duration::from_secs(40),
        "a renewed certificate",
        |i| i.serial != first.serial,
    )
    .await;
    let seen = SystemTime::now();
    assert!(seen >= renew_at, "renewed before it was due");
    assert!(second.not_after > first.not_after);
    let st = h.app.acme.as_ref().unwrap().status();
    assert_eq!(st.certificate.as_ref(), Some(&second));
    assert_eq!(st.failures, 0);
    h.shutdown().await;
}

/// A restart after the `domains` list changed (a name added, the list
/// reordered) serves the newest valid cached certificate whose names overlap
/// the new list, from the first handshake, also while the CA is unreachable
/// (review 35, finding 2), and orders one for the new list at once: served
/// once issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_changed_domains_serves_the_cached_certificate_until_the_new_one_is_issued() {
    const MORE: &str = "more.hookrelay.test";
    let port = free_port();
    let mut pb = Pebble::start(port, None).await;
    let (dir, sub, h, client, der) = issued(&pb, port).await;
    h.shutdown().await;
    let cfg = |pb: &Pebble, domains: [&str; 2]| {
        acme_config(dir.path(), port, pb, &sub.url()).tls_acme(pb.acme().domains(domains))
    };

    // The CA is unreachable while the relay restarts with one more name.
    pb.stop();
    let h = start(&cfg(&pb, [DOMAIN, MORE])).await;
    let served = pebble::served_cert(h.ingest_addrs[0], DOMAIN, &client).await;
    assert!(
        matches!(&served, Ok(d) if *d == der),
        "after a restart that added an ACME name, the valid cached certificate for {DOMAIN} is not served: {}",
        served.as_ref().err().map_or("another certificate", String::as_str)
    );
    // Due at once: the order for the new list is under way (and fails here).
    let st = h.app.acme.as_ref().unwrap().status();
    assert!(st.renew_at.unwrap() <= SystemTime::now(), "{st:?}");
    h.shutdown().await;

    // With the CA back (and the list reordered): served at once, then
    // replaced by the certificate for both names.
    pb.restart().await;
    let h = start(&cfg(&pb, [MORE, DOMAIN])).await;
    assert_eq!(
        pebble::served_cert(h.ingest_addrs[0], DOMAIN, &client).await.unwrap(),
        der
    );
    // The restarted CA signs with a new root.
    let client = tls_client(&pb.root().await, &[b"http/1.1"]);
    let (_, info) = pebble::wait_cert(
        h.ingest_addrs[0],
        &client,
        secs(60),
        "the certificate for both names",
        |i| i.names.iter().any(|n| n == MORE),
    )
    .await;
    assert!(info.names.iter().any(|n| n == DOMAIN), "{:?}", info.names);
    h.shutdown().await;
}

/// The ACME state directory's file for a certificate, as `src/acme/cache.rs`
/// names it: the domains lowercased and (unless `legacy`, the name before
/// they were sorted) sorted, then the directory URL.
fn cache_file(state: &Path, domains: &[&str], directory: &str, legacy: bool) -> std::path::PathBuf {
    use sha2::{Digest, Sha256};
    let mut names: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
    if !legacy {
        names.sort();
        names.dedup();
    }
    let mut h = Sha256::new();
    for n in &names {
        h.update(n.as_bytes());
        h.update([0]);
    }
    h.update(directory.as_bytes());
    state.join(format!("cert-{}.pem", &hex::encode(h.finalize())[..32]))
}

/// A self-signed bundle (key + certificate, one PEM) for `names`, valid
/// from `from` to `to` (years, 1 January).
fn bundle(names: &[&str], from: i32, to: i32) -> String {
    let mut p = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    p.not_before = rcgen::date_time_ymd(from, 1, 1);
    p.not_after = rcgen::date_time_ymd(to, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    format!("{}{}", key.serialize_pem(), cert.pem())
}

const UNREACHABLE: &str = "https://127.0.0.1:9/dir";
const OTHER_CA: &str = "https://127.0.0.1:9/other";
const MORE: &str = "more.hookrelay.test";

/// What a relay with ACME for `domains` from [`UNREACHABLE`] serves at
/// start, its state directory holding `files` (domains, directory, legacy
/// name, contents): the status, `certificate_problem`, `/api/status`'s
/// certificate entry, and the state directory.
async fn served_from_cache(
    domains: &[&str],
    files: &[(&[&str], &str, bool, String)],
) -> (
    hookrelay::acme::Status,
    Option<&'static str>,
    serde_json::Value,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("acme");
    std::fs::create_dir_all(&state).unwrap();
    for (names, directory, legacy, pem) in files {
        std::fs::write(cache_file(&state, names, directory, *legacy), pem).unwrap();
    }
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .tls_acme(Acme::new(domains.to_vec(), "ops@hookrelay.test", UNREACHABLE))
        .subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
    let st = h.app.acme.as_ref().unwrap().status();
    let problem = h.app.certificate_problem();
    let (_, status) = admin(h.admin_addr, "GET", "/api/status").await;
    h.shutdown().await;
    (st, problem, status["certificates"][0].clone(), dir)
}

/// An exact cache file (the configured domains, this directory) that is
/// expired, or that does not parse, is treated like a missing one (review
/// 39, finding 2): the valid cached certificate covering the domains is
/// served, fully valid (same directory, every name), and ordered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_unparseable_exact_cache_file_gives_way_to_a_valid_cached_certificate() {
    for exact in [bundle(&[DOMAIN], 2024, 2025), "-----BEGIN TRUNCATED".to_string()] {
        let (st, problem, _, _dir) = served_from_cache(
            &[DOMAIN],
            &[
                (&[DOMAIN], UNREACHABLE, false, exact.clone()),
                (&[DOMAIN, MORE], UNREACHABLE, false, bundle(&[DOMAIN, MORE], 2025, 2035)),
            ],
        )
        .await;
        let cert = st.certificate.clone().expect("a certificate is served");
        assert!(cert.valid_at(SystemTime::now()), "{exact:.40}: {st:?} {problem:?}");
        assert!(cert.names.iter().any(|n| n == MORE), "{cert:?}");
        assert!(st.renew_at.unwrap() <= SystemTime::now(), "ordered at once: {st:?}");
        assert_eq!(problem, None, "{st:?}");
    }
}

/// The stand-in is the cached certificate covering the most configured
/// names, then one from the configured directory, then the newest (review
/// 39, finding 4); one from another directory, or lacking a configured
/// name, is reported as not fully valid — `/api/status`'s `stand_in`,
/// `certificate_problem` (so `hookrelay_tls_cert_valid` 0) — until the
/// order for the configured names succeeds (finding 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acme_stand_in_covers_the_most_names_and_is_reported_when_not_fully_valid() {
    // Both names from another CA (staging, say); only DOMAIN from this one, newer.
    let (st, problem, status, _dir) = served_from_cache(
        &[DOMAIN, MORE],
        &[
            (&[DOMAIN, MORE], OTHER_CA, false, bundle(&[DOMAIN, MORE], 2025, 2035)),
            (&[DOMAIN], UNREACHABLE, false, bundle(&[DOMAIN], 2026, 2035)),
        ],
    )
    .await;
    let names = st.certificate.clone().expect("a stand-in").names;
    assert!(names.iter().any(|n| n == MORE), "{names:?}");
    assert!(
        st.stand_in
            .as_deref()
            .is_some_and(|w| w.contains("another ACME directory")),
        "{st:?}"
    );
    assert!(problem.is_some_and(|p| p.contains("stand-in")), "{problem:?}");
    assert!(status["acme"]["stand_in"].is_string(), "{status}");

    // Of two covering every name, the one from this directory, though older.
    let (st, problem, status, _dir) = served_from_cache(
        &[DOMAIN, MORE],
        &[
            (&[DOMAIN, MORE], UNREACHABLE, false, bundle(&[MORE, DOMAIN], 2024, 2035)),
            (
                &[DOMAIN, MORE, "x.hookrelay.test"],
                OTHER_CA,
                false,
                bundle(&[DOMAIN, MORE, "x.hookrelay.test"], 2026, 2035),
            ),
        ],
    )
    .await;
    assert_eq!(st.certificate.unwrap().names.len(), 2);
    assert_eq!((st.stand_in, problem), (None, None));
    assert!(status["acme"]["stand_in"].is_null(), "{status}");

    // Only some of the names, from this directory: lacking MORE, reported.
    let (st, problem, _, _dir) = served_from_cache(
        &[DOMAIN, MORE],
        &[(&[DOMAIN], UNREACHABLE, false, bundle(&[DOMAIN], 2025, 2035))],
    )
    .await;
    assert!(st.stand_in.as_deref().is_some_and(|w| w.contains(MORE)), "{st:?}");
    assert!(problem.is_some());
}

/// The first start after the cache name was normalised (sorted names) finds
/// a certificate cached under the old name (the configured order) as the
/// exact one: served, not due, no new order (review 39, finding 6); the
/// file is renamed to the new name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_cached_under_the_name_before_sorting_is_found_as_the_exact_one() {
    let unsorted = [MORE, DOMAIN];
    let (st, problem, _, dir) = served_from_cache(
        &unsorted,
        &[(&unsorted, UNREACHABLE, true, bundle(&unsorted, 2025, 2035))],
    )
    .await;
    assert!(st.certificate.is_some(), "{st:?}");
    assert!(
        st.renew_at.unwrap() > SystemTime::now(),
        "a new order is due at once: {st:?}"
    );
    assert_eq!((st.stand_in, problem), (None, None));
    let state = dir.path().join("acme");
    assert!(cache_file(&state, &unsorted, UNREACHABLE, false).exists());
    assert!(!cache_file(&state, &unsorted, UNREACHABLE, true).exists());
}

/// A certificate cached by an earlier version under its legacy name (the
/// domains in the order configured then), from THIS directory, whose SANs
/// the CA listed in another order (sorted, as Boulder and pebble do), is
/// judged by the names' order that made the file name, not the SANs':
/// here the operator dropped a name from `[more, x, DOMAIN]`. It covers
/// every configured name from the configured CA: no stand-in reported
/// (review 41, finding 2); and it is preferred over a newer staging
/// certificate for the same names, which no client trusts (finding 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_named_certificate_from_this_directory_with_sans_in_another_order_counts_as_from_this_directory() {
    const X: &str = "x.hookrelay.test";
    let legacy = || {
        (
            &[MORE, X, DOMAIN][..],
            UNREACHABLE,
            true,
            bundle(&[DOMAIN, MORE, X], 2025, 2035),
        )
    };
    let (st, problem, status, _dir) = served_from_cache(&[MORE, DOMAIN], &[legacy()]).await;
    assert!(st.certificate.is_some(), "{st:?}");
    assert_eq!(
        (st.stand_in.clone(), problem),
        (None, None),
        "a certificate from the configured CA for every configured name is reported: {st:?}"
    );
    assert!(status["acme"]["stand_in"].is_null(), "{status}");

    let (st, _, _, _dir) = served_from_cache(
        &[MORE, DOMAIN],
        &[
            legacy(),
            (&[MORE, DOMAIN], OTHER_CA, false, bundle(&[DOMAIN, MORE], 2026, 2035)),
        ],
    )
    .await;
    let names = st.certificate.clone().expect("a stand-in").names;
    assert!(
        names.iter().any(|n| n == X),
        "the staging certificate was served over the production one from this directory: {names:?} {st:?}"
    );
    assert_eq!(st.stand_in, None, "{st:?}");
}

/// A damaged account key file (truncated by a full disk or a bad copy)
/// made every order fail for ever with the key parser's error: rustls-acme
/// takes any bytes the cache hands it as the key, and the cache handed the
/// damaged file back on every order, so no certificate was ever issued (or
/// renewed, until the served one expired). The file is set aside, named in
/// the log, and a new account registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_account_key_file_is_replaced_and_a_certificate_issued() {
    let port = free_port();
    let pb = Pebble::start(port, None).await;
    let (dir, sub, h, client, _) = issued(&pb, port).await;
    h.shutdown().await;
    let state = dir.path().join("acme");
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("account-") {
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        } else if name.starts_with("cert-") {
            std::fs::remove_file(&path).unwrap();
        }
    }
    let h = start(&acme_config(dir.path(), port, &pb, &sub.url())).await;
    pebble::wait_cert(
        h.ingest_addrs[0],
        &client,
        Duration::from_secs(30),
        "a certificate with a damaged account key file",
        |_| true,
    )
    .await;
    let st = h.app.acme.as_ref().unwrap().status();
    assert_eq!(st.failures, 0, "{:?}", st.last_error);
    h.shutdown().await;
}
