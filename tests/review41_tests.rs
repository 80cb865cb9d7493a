//! Review 41 (the merge of f39): failing tests for defects found in the
//! ACME stand-in and the `StoreError::RouteChanged` refusal.

use crate::common;

use std::path::Path;

use common::*;

/// The ACME state directory's file for a certificate, as `src/acme/cache.rs`
/// names it (copied from tests/acme.rs): the domains lowercased and (unless
/// `legacy`, the name before they were sorted) sorted, then the directory URL.
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

/// A self-signed bundle (key + certificate) whose SANs are `names` in this
/// order, valid from `from` to `to` (years, 1 January).
fn bundle(names: &[&str], from: i32, to: i32) -> String {
    let mut p = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    p.not_before = rcgen::date_time_ymd(from, 1, 1);
    p.not_after = rcgen::date_time_ymd(to, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    format!("{}{}", key.serialize_pem(), cert.pem())
}

const THIS_CA: &str = "https://127.0.0.1:9/dir";
const STAGING: &str = "https://127.0.0.1:9/staging";
const ZZ: &str = "zz.hookrelay.test";
const AA: &str = "aa.hookrelay.test";
const MM: &str = "mm.hookrelay.test";

/// What a relay with ACME for `domains` from [`THIS_CA`] (unreachable: the
/// order fails) serves at start, its state directory holding `files`
/// (file-name domains, directory, legacy name, contents).
async fn served_from_cache(
    domains: &[&str],
    files: &[(&[&str], &str, bool, String)],
) -> (hookrelay::acme::Status, Option<&'static str>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("acme");
    std::fs::create_dir_all(&state).unwrap();
    for (names, directory, legacy, pem) in files {
        std::fs::write(cache_file(&state, names, directory, *legacy), pem).unwrap();
    }
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .tls_acme(Acme::new(domains.to_vec(), "ops@hookrelay.test", THIS_CA))
        .subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
    let st = h.app.acme.as_ref().unwrap().status();
    let problem = h.app.certificate_problem();
    h.shutdown().await;
    (st, problem, dir)
}

/// A certificate cached by an earlier version under its legacy (configured
/// order) name, from THIS directory, whose SANs the CA listed sorted (as
/// Let's Encrypt's Boulder and pebble do: `UniqueLowerNames` sorts), is
/// judged "from another ACME directory": `Inner::stand_in` asks
/// `StateDir::is_from` with the certificate's SAN order, which rebuilds the
/// legacy name only when the SANs are in the configured order. Here the
/// operator dropped MM from `[ZZ, AA, MM]`: the stand-in covers every
/// configured name from the configured CA, is fully valid, yet
/// `hookrelay_tls_cert_valid` is 0 and an error is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_named_stand_in_from_this_directory_with_sorted_sans_is_not_reported_as_from_another_directory() {
    let (st, problem, _dir) = served_from_cache(
        &[ZZ, AA],
        &[(&[ZZ, AA, MM], THIS_CA, true, bundle(&[AA, MM, ZZ], 2025, 2035))],
    )
    .await;
    assert!(st.certificate.is_some(), "{st:?}");
    assert_eq!(
        (st.stand_in.clone(), problem),
        (None, None),
        "a certificate from the configured CA for every configured name is reported: {st:?}"
    );
}

/// The same misjudgement ranks a staging certificate (trusted by no
/// client) equal to the production one from this directory, and the newer
/// staging one is served: every client refuses it, where the cached
/// production certificate for the same names would have been accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_certificate_is_not_preferred_over_a_legacy_named_one_from_this_directory() {
    let (st, _problem, _dir) = served_from_cache(
        &[ZZ, AA],
        &[
            // Production (this directory), legacy name, SANs sorted by the CA.
            (&[ZZ, AA, MM], THIS_CA, true, bundle(&[AA, MM, ZZ], 2025, 2035)),
            // Staging, newer.
            (&[ZZ, AA], STAGING, false, bundle(&[AA, ZZ], 2026, 2035)),
        ],
    )
    .await;
    let names = st.certificate.clone().expect("a stand-in").names;
    assert!(
        names.iter().any(|n| n == MM),
        "the staging certificate was served over the production one from this directory: {names:?} {st:?}"
    );
}
