//! SIGTERM: requests in flight finish within `server.shutdown_grace`, and
//! the stop as a whole is bounded by that grace plus a margin for closing
//! the store. (A shutdown while a reload's lane waits: `shutdown_handover`.)

use crate::common;

use std::time::Duration;

use common::*;

/// `server.shutdown_grace` is how long SIGTERM waits for requests in flight;
/// the whole stop is bounded by the grace plus a margin for closing the store
/// (not a fixed 8 s). With a grace of 12 s (its stop fits the shipped unit's
/// `TimeoutStopSec=15s`), a callback still uploading 10 s after SIGTERM is
/// answered, and the store is closed. From review 23, finding 5.
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
    assert!(
        log.contains("stopped") && !log.contains("shutdown took longer"),
        "the stop was cut short:\n{log}"
    );
}

/// The shipped unit's `TimeoutStopSec` is the one the relay's stop bound is
/// checked against: a grace whose stop (grace + margin) outlasts it gets a
/// warning (systemd would kill the relay before it closed the store).
#[test]
fn check_config_warns_of_a_grace_the_shipped_units_stop_timeout_cuts() {
    use hookrelay::supervise::{SHUTDOWN_MARGIN, UNIT_TIMEOUT_STOP};
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/hookrelay.service")).unwrap();
    let stop: Vec<&str> = unit.lines().filter_map(|l| l.strip_prefix("TimeoutStopSec=")).collect();
    assert_eq!(stop, [format!("{}s", UNIT_TIMEOUT_STOP.as_secs())]);
    let dir = tempfile::tempdir().unwrap();
    let fits = UNIT_TIMEOUT_STOP - SHUTDOWN_MARGIN;
    for (grace, warned) in [(secs(5), false), (fits, false), (fits + secs(1), true)] {
        let path = TestConfig::new(dir.path())
            .shutdown_grace(grace)
            .subscriber(Subscriber::new("s", DOWN))
            .write();
        let cfg = hookrelay::Config::load(&path).unwrap();
        let warning = cfg
            .warnings
            .iter()
            .find(|w| w.contains("server.shutdown_grace") && w.contains("TimeoutStopSec"));
        assert_eq!(warning.is_some(), warned, "grace {grace:?}: {:?}", cfg.warnings);
        // It names the shipped unit's value (it cannot see a raised one) and how to raise it.
        if let Some(w) = warning {
            let shipped = format!("the shipped unit's TimeoutStopSec={}s", UNIT_TIMEOUT_STOP.as_secs());
            let raise = format!("TimeoutStopSec={}s", (fits + secs(1) + SHUTDOWN_MARGIN).as_secs());
            assert!(
                w.contains(&shipped) && w.contains("systemctl edit hookrelay") && w.contains(&raise),
                "{w}"
            );
        }
    }
}

/// A huge `server.shutdown_grace` (`"18446744073709551615s"`, which
/// humantime accepts) is refused with a located error: adding the 3 s margin
/// to it (the warning above, the bound at SIGTERM) used to panic
/// `Config::parse`, against the fuzz target's contract ("a Config or a
/// located error, never a panic"). A grace above 1 h is refused, and so is
/// any duration above 100 years (a deadline `now + timeout` would overflow).
/// From review 26, finding 4.
#[test]
fn a_huge_shutdown_grace_is_refused_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", DOWN))
        .render();
    for (line, says) in [
        ("shutdown_grace = \"18446744073709551615s\"", "longer than 100 years"),
        ("shutdown_grace = \"2h\"", "at most 1h"),
        ("idle_timeout = \"18446744073709551615s\"", "longer than 100 years"),
    ] {
        let text = base.replacen("[server]", &format!("[server]\n{line}"), 1);
        let parsed = std::panic::catch_unwind(|| {
            hookrelay::Config::parse(std::path::Path::new("fuzz.toml"), &text)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        match parsed {
            Ok(Ok(())) => panic!("{line} was accepted"),
            Ok(Err(e)) => assert!(e.starts_with("fuzz.toml") && e.contains(says), "{line}: {e}"),
            Err(p) => panic!(
                "Config::parse panicked on {line}: {:?}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            ),
        }
    }
}

/// A clean stop repeats no delivery: at SIGTERM no attempt starts any more,
/// and those in flight have the grace to be answered and recorded. Each
/// attempt the stop abandoned (the lanes went on starting them while the
/// listeners drained, and dropped all in flight) was sent again after the
/// restart: every `systemctl restart` repeated a few (hostile review, stop 65).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_sends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::always(Behaviour::Slow(ms(300))).await;
    let path = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()).concurrency(4))
        .write();
    let bin = Bin::start(&path, &[]);
    for i in 0..20 {
        accepted(bin.addr, &runway(&format!("stop-{i}"))).await;
    }
    sub.wait_for(secs(10), "attempts under way", |r| r.len() >= 6).await;
    bin.signal("TERM");
    let (_, bin) = bin.exit().await;
    let log = bin.log_text();
    let before = sub.count();
    let bin = Bin::start(&path, &[]);
    sub.wait_for(secs(30), "all 20 delivered", |_| seen_ids(&sub).len() == 20)
        .await;
    // A repeat would come with the first attempts after the restart.
    tokio::time::sleep(ms(500)).await;
    let repeated: Vec<_> = seen_ids(&sub).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(
        repeated.is_empty(),
        "sent twice across a clean stop: {repeated:?} ({before} sent before it)\nlog:\n{log}"
    );
    drop(bin);
}

/// An attempt not sending yet at SIGTERM (here waiting for the provider's
/// record of a `verify = "fetch"` route) is dropped then, its work left in
/// the store: it sent during the grace, was cut off at its end and was sent
/// again after the restart (change review, stop 65).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_not_sent_at_the_stop_is_sent_once_after_the_restart() {
    use common::provider::{FakeOptions, FakeProvider, TaskPlan};
    use hookrelay::provider::Product;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::always(Behaviour::Slow(secs(3))).await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, addr) =
        common::tasks::tasks_config(dir.path(), vec![common::tasks::signed_verify_route(&fake, &sub.url())]);
    let path = cfg.shutdown_grace(secs(2)).write();
    let task = fake.create(Product::Runway, TaskPlan::success().lose(), None);
    fake.wait_until("the task to finish", secs(5), |f| f.is_finished(&task))
        .await;
    let bin = Bin::start(&path, &[]);
    fake.hold_status();
    let body = fake.final_callback(&task);
    let id = fake.post_signed(addr, "/hooks/runway", &task, &body).await;
    fake.wait_until("the look-up to be held", secs(10), |f| f.status_held() >= 1)
        .await;
    bin.signal("TERM");
    // The record comes during the grace.
    tokio::time::sleep(ms(300)).await;
    fake.release_status();
    let (_, bin) = bin.exit().await;
    let log = bin.log_text();
    let during = sub.count();
    let bin = Bin::start(&path, &[]);
    sub.wait_for(secs(20), "the delivery after the restart", |r| !r.is_empty())
        .await;
    tokio::time::sleep(ms(500)).await;
    let got = sub.all();
    assert!(
        got.len() == 1 && got[0].header("webhook-id") == id,
        "{during} sent during the stop, {} in all:\n{log}",
        got.len()
    );
    drop(bin);
}
