//! Review 40: regressions in the fixes of reviews 36 and 37 (f36, f37).

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::StatusCode;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// README, Logs: refused ingest requests are logged "the first of a while at
/// `info` (`no route` or `callback refused`, with its reason), the others at
/// `debug`, summed up at `warn`". The "first of a while" is shared between
/// strangers' requests to paths with no route and a route's own refusals,
/// and a summary starts the next window without an `info` line. A public
/// relay is probed all the time (scanners: `GET /wp-login.php`, `/.env`):
/// with one probe every few seconds the window never closes, so when the
/// provider's genuine callbacks start being refused (a rotated token or
/// signing secret not yet in the config: every callback `401`) no line at
/// `info` or above ever names the route or the reason; the summary only
/// says "N requests refused … (M of them to a path with no route)". Before
/// f37 each such refusal was logged at `info` with route and reason.
#[tokio::test]
async fn a_route_refusing_every_genuine_callback_is_named_in_the_log_despite_scanner_noise() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "info")]);
    let addr = bin.addr;
    // The scanner was there first (it always is) and keeps probing.
    let scanner = tokio::spawn(async move {
        loop {
            let (s, _, _) = request(addr, None, "GET", "/wp-login.php", &[], Bytes::new()).await;
            assert_eq!(s, StatusCode::NOT_FOUND);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The provider's callbacks, with a token the route no longer accepts,
    // for 12 s (past one 10 s summary).
    for i in 0..12 {
        let (s, _) = callback_at(addr, "/hooks/t?token=rotated", &runway(&format!("r40-log-{i}"))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "the callback is refused");
        tokio::time::sleep(secs(1)).await;
    }
    scanner.abort();
    let log = bin.log_text();
    let visible: Vec<_> = log
        .lines()
        .filter(|l| (l.contains(" INFO ") || l.contains(" WARN ") || l.contains(" ERROR ")) && l.contains("refused"))
        .collect();
    assert!(
        visible.iter().any(|l| l.contains("route=t")),
        "12 s of genuine callbacks refused 401 by route `t`: no line at info or above names the route \
         (or its reason); the lines about refusals at info/warn were: {visible:#?}"
    );
}

/// The same log, without continuous noise: `RefusedRequests` keeps the
/// count of a window that ended long ago, and the next refusal, however
/// much later, is turned into that window's summary (`refused > 0`) and
/// itself logged at `debug` only. Two probes to unknown paths in one second,
/// then quiet for 11 s (it could be hours); then the provider's first
/// callback refused by route `t` (rotated token): the only line at `warn`
/// is "2 requests refused in the last 11s (1 of them to a path with no
/// route)" (the first probe was the window's `info` line) — the route and
/// the reason of the new problem are not logged, although it is "the first
/// of a while", and "the last 11s" would read "the last 21600s" after six
/// quiet hours.
#[tokio::test]
async fn the_first_route_refusal_after_a_quiet_while_is_logged_with_its_route() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "info")]);
    let addr = bin.addr;
    for path in ["/.env", "/wp-login.php"] {
        let (s, _, _) = request(addr, None, "GET", path, &[], Bytes::new()).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    tokio::time::sleep(secs(11)).await;
    let (s, _) = callback_at(addr, "/hooks/t?token=rotated", &runway("r40-quiet")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the callback is refused");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = bin.log_text();
    let visible: Vec<_> = log
        .lines()
        .filter(|l| (l.contains(" INFO ") || l.contains(" WARN ")) && l.contains("refused"))
        .collect();
    assert!(
        visible.iter().any(|l| l.contains("route=t")),
        "the first refusal by route `t` after 11 quiet seconds is not logged at info (nor named at warn): {visible:#?}"
    );
}
