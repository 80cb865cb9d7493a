//! Reload and the served certificate: a reload reads the certificate files
//! again and names what it read; it keeps a valid certificate rather than
//! serve an expired one, applies the rest when the served one has expired,
//! says when a refused reload left changed certificate files unapplied, and
//! warns when the new one covers none of the served names.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A certificate swapped under the same file names is named in the log when
/// a reload reads it (its names, serial and days left), so an operator sees
/// which one is served.
#[tokio::test]
async fn a_reload_logs_the_certificate_it_read() {
    let dir = tempfile::tempdir().unwrap();
    TestCert::write(dir.path(), "tls");
    let cfg = tls_config(dir.path());
    let bin = Bin::start(&cfg.write(), &[]);
    let new = TestCert::write(dir.path(), "tls");
    bin.signal("HUP");
    log_until(|| bin.log_text(), "certificate files read again", secs(10)).await;
    let line = bin
        .log_text()
        .lines()
        .find(|l| l.contains("certificate files read again"))
        .unwrap()
        .to_string();
    let serial = hookrelay::tls::CertInfo::from_der(&new.der).unwrap().serial;
    assert!(line.contains(&serial) && line.contains("days_left"), "{line}");
}

/// A SIGHUP that would replace the valid certificate with an expired one
/// (a deploy hook that copied the wrong file) keeps the running one: a
/// reload that cannot be applied changes nothing, and the refusal names the
/// file and when it expired. From review 23, finding 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_a_valid_certificate_rather_than_serve_an_expired_one() {
    let dir = tempfile::tempdir().unwrap();
    TestCert::write(dir.path(), "tls");
    let cfg = tls_config(dir.path());
    let h = start(&cfg).await;
    assert_eq!(h.app.certificate_problem(), None);
    // Same file names, a certificate that expired in 2025.
    TestCert::write_until(dir.path(), "tls", 2025, 1);
    let reloaded = h.reload().await.map_err(|e| e.to_string());
    let problem = h.app.certificate_problem();
    // The refusal is shown where a refused reload is: status and metrics.
    let (_, status) = admin(h.admin_addr, "GET", "/api/status").await;
    let refusals = sample(&metrics(h.admin_addr).await, "hookrelay_reload_failures_total");
    let url = format!("http://{}", h.admin_addr);
    let (_, shown, _) = cli_async(vec!["status".into(), "--admin".into(), url]).await;
    h.shutdown().await;
    assert_eq!(
        problem, None,
        "the reload ({reloaded:?}) put an expired certificate in place of a valid one"
    );
    let why = reloaded.expect_err("the reload is refused");
    assert!(why.contains("tls.crt") && why.contains("expired at 2025-"), "{why}");
    let last = &status["last_reload"];
    assert_eq!(
        (last["applied"].as_bool(), last["refused_because"].as_str()),
        (Some(false), Some(why.as_str())),
        "{status}"
    );
    assert_eq!(refusals, 1.0);
    assert!(
        shown.contains("last reload: REFUSED") && shown.contains("expired at 2025-"),
        "{shown}"
    );
}

/// A relay whose served certificate file has expired (the renewal failed,
/// or under the unit the credential copy of the start is stale) still
/// applies a reload that leaves that certificate alone: here the operator
/// locks down the admin API with a token. Refusing would protect nothing (the
/// expired certificate is served either way); the problem stays reported.
/// From review 26, finding 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_leaves_the_served_expired_certificate_alone_applies_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    TestCert::write_until(dir.path(), "tls", 2025, 1);
    let cfg = tls_config(dir.path());
    let h = start(&cfg).await;
    let before = h.app.certificate_problem();
    // Same certificate files; only the admin token is new.
    cfg.clone().admin_token("locked-down-now").write();
    let reloaded = h.reload().await.map_err(|e| e.to_string());
    let token_applied = h.app.live().config.admin.token.is_some();
    let still_served = h.app.certificate_problem();
    h.shutdown().await;
    assert!(before.is_some(), "the relay started serving the expired certificate");
    assert_eq!(before, still_served, "the served certificate is the same either way");
    assert!(
        reloaded.is_ok() && token_applied,
        "a reload that only sets admin.token was refused because the (unchanged, already served) \
         certificate is expired: {reloaded:?}; admin.token applied: {token_applied}"
    );
}

/// A reload refused for an unrelated reason (here a bad allowlist saved
/// earlier) also keeps a renewed certificate from being served (review 35,
/// finding 4): the refusal's error line says that the certificate files
/// changed and were not applied, naming the new and the served serial.
#[tokio::test]
async fn a_refused_reload_says_that_the_changed_certificate_files_were_not_applied() {
    refused_reload_names_the_unapplied_certificate(false).await;
}

/// The same with the new file saved with a byte order mark (a Windows
/// editor): the line named nothing, or a chain's CA, the mark hiding the
/// leaf from that reader (change review, stop 66).
#[tokio::test]
async fn a_refused_reload_names_a_changed_certificate_saved_with_a_byte_order_mark() {
    refused_reload_names_the_unapplied_certificate(true).await;
}

async fn refused_reload_names_the_unapplied_certificate(bom: bool) {
    let dir = tempfile::tempdir().unwrap();
    let old = TestCert::write(dir.path(), "tls");
    let cfg = tls_config(dir.path());
    let bin = Bin::start(&cfg.write(), &[]);
    let saved = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
    let (old_crt, old_key) = (saved("tls.crt"), saved("tls.key"));
    let new = TestCert::write(dir.path(), "tls");
    if bom {
        let marked = [b"\xEF\xBB\xBF".as_slice(), &saved("tls.crt")].concat();
        std::fs::write(dir.path().join("tls.crt"), marked).unwrap();
    }
    cfg.clone().edit_route("t", |r| r.allow_ips(["nonsense"])).write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "reload refused", secs(10)).await;
    let log = bin.log_text();
    let line = log.lines().find(|l| l.contains("reload refused")).unwrap();
    let serial = |c: &TestCert| hookrelay::tls::CertInfo::from_der(&c.der).unwrap().serial;
    for said in [
        "ERROR".to_string(),
        "routes[0].allow_ips[0]".to_string(),
        "the certificate files changed and were NOT applied".to_string(),
        format!("holds serial {}", serial(&new)),
        format!("old certificate (serial {}", serial(&old)),
    ] {
        assert!(line.contains(&said), "{said:?} not in {line}");
    }
    // Nothing changed on disk: a refusal says nothing about the certificate.
    std::fs::write(dir.path().join("tls.crt"), old_crt).unwrap();
    std::fs::write(dir.path().join("tls.key"), old_key).unwrap();
    bin.signal("HUP");
    second_reload_logs(&bin, "reload refused").await;
    let log = bin.log_text();
    assert_eq!(log.matches("NOT applied").count(), 1, "{log}");
}

/// A reload that swaps in a certificate for none of the names the served
/// one had (the wrong file linked) logs a warning naming both sets (review
/// 35, finding 6).
#[tokio::test]
async fn a_reload_warns_when_the_new_certificate_covers_none_of_the_served_names() {
    let dir = tempfile::tempdir().unwrap();
    TestCert::write(dir.path(), "tls");
    let cfg = tls_config(dir.path());
    let bin = Bin::start(&cfg.write(), &[]);
    TestCert::write_for(dir.path(), "tls", &["other.example"]);
    bin.signal("HUP");
    log_until(|| bin.log_text(), "covers none of the names", secs(10)).await;
    let log = bin.log_text();
    let line = log.lines().find(|l| l.contains("covers none of the names")).unwrap();
    assert!(
        line.contains("WARN") && line.contains("localhost") && line.contains("other.example"),
        "{line}"
    );
    // The same names again: no warning.
    TestCert::write_for(dir.path(), "tls", &["other.example", "more.example"]);
    bin.signal("HUP");
    second_reload_logs(&bin, "certificate files read again").await;
    tokio::time::sleep(ms(200)).await;
    assert_eq!(bin.log_text().matches("covers none of the names").count(), 1);
}

/// A certificate that expires while the daemon runs is said in the log: a
/// warning once its end is near (a sixth of its lifetime left, at most 14
/// days), an error once it expired. Before, only the metric and the status
/// API said it; the journal stayed silent (TLS review, stop 79).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_expires_while_the_daemon_runs_is_warned_about_and_said_expired() {
    let dir = tempfile::tempdir().unwrap();
    // Valid for 60 s before the start and 8 s after: its last sixth is
    // under way already.
    let cert = TestCert::write_expiring_in(dir.path(), "tls", 8);
    let bin = Bin::start(&tls_config(dir.path()).write(), &[]);
    let serial = hookrelay::tls::CertInfo::from_der(&cert.der).unwrap().serial;
    log_until(|| bin.log_text(), "expires at", Duration::from_secs(10)).await;
    log_until(|| bin.log_text(), "expired at", Duration::from_secs(20)).await;
    let log = bin.log_text();
    let lines = |what: &str| log.lines().filter(|l| l.contains(what)).collect::<Vec<_>>();
    let (near, expired) = (lines("expires at"), lines("expired at"));
    assert!(
        near.len() == 1 && near[0].contains("WARN") && near[0].contains(&serial) && near[0].contains("reload"),
        "{log}"
    );
    assert!(
        expired.len() == 1 && expired[0].contains("ERROR") && expired[0].contains("every handshake fails"),
        "{log}"
    );
}

/// A config serving the certificate files `tls.crt` and `tls.key` in `dir`,
/// its one subscriber down.
fn tls_config(dir: &Path) -> TestConfig {
    TestConfig::new(dir)
        .tls(&dir.join("tls.crt"), &dir.join("tls.key"))
        .subscriber(Subscriber::new("s", DOWN))
}

/// Wait (up to 10 s) until the log says `what` a second time: the second
/// reload was read.
async fn second_reload_logs(bin: &Bin, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while bin.log_text().matches(what).count() < 2 {
        assert!(Instant::now() < deadline, "second reload: {}", bin.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
