//! Reload and a config file nobody writes (a FIFO, a stalled mount): the
//! reload is refused after 10 s, SIGTERM during it still stops the daemon,
//! and a SIGHUP while the config is read at start does not end it.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;

/// A reload whose config file is a FIFO nobody writes to (or a stalled
/// mount) neither holds a stop nor the daemon: SIGTERM during it stops the
/// daemon within its bound (it waited for the FIFO, and SIGTERM with it).
#[tokio::test]
async fn sigterm_while_a_reload_reads_a_fifo_stops_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (bin, _) = reloading_a_fifo(dir.path());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(callback(bin.addr, &runway("during")).await.0, StatusCode::OK);
    stops_on_sigterm(bin).await;
}

/// SIGTERM to `bin`: it exits 0 within 8 s (killed after 15 s, failing).
async fn stops_on_sigterm(mut bin: Bin) {
    let asked = Instant::now();
    bin.signal("TERM");
    let status = loop {
        if let Some(status) = bin.child.try_wait().unwrap() {
            break status;
        }
        if asked.elapsed() > Duration::from_secs(15) {
            bin.child.kill().unwrap();
            panic!("the daemon did not stop within 15 s of SIGTERM: {}", bin.log_text());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "{:?}: {}",
        asked.elapsed(),
        bin.log_text()
    );
    assert!(status.success(), "{status}: {}", bin.log_text());
}

/// Such a reload ends after 10 s, refused, saying why; the daemon keeps
/// its configuration and takes the next reload.
#[tokio::test]
async fn a_reload_reading_a_fifo_nobody_writes_to_is_refused_after_10_s() {
    let dir = tempfile::tempdir().unwrap();
    let (bin, path) = reloading_a_fifo(dir.path());
    log_until(|| bin.log_text(), "took longer than 10 s", secs(20)).await;
    assert!(
        bin.log_text()
            .contains("reload refused, keeping the running configuration"),
        "{}",
        bin.log_text()
    );
    assert_eq!(callback(bin.addr, &runway("after")).await.0, StatusCode::OK);
    // The file back: the next reload applies. (The thread still blocked on
    // the FIFO is let go: opening it for writing ends its wait.)
    let _ = std::fs::OpenOptions::new().write(true).open(&path);
    std::fs::remove_file(&path).unwrap();
    TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", DOWN))
        .write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "configuration reloaded", secs(10)).await;
}

/// A daemon started from its config file, which is then replaced by a FIFO
/// nobody writes to, and sent SIGHUP: its reload reads the FIFO.
fn reloading_a_fifo(dir: &std::path::Path) -> (Bin, std::path::PathBuf) {
    let path = TestConfig::new(dir).subscriber(Subscriber::new("s", DOWN)).write();
    let bin = Bin::start(&path, &[]);
    fifo_in_place_of(&path);
    bin.signal("HUP");
    (bin, path)
}

/// Replace the file at `path` by a FIFO.
fn fifo_in_place_of(path: &std::path::Path) {
    std::fs::remove_file(path).unwrap();
    assert!(std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success());
}

/// A SIGHUP while the daemon is still reading its config at start (here a
/// FIFO nobody writes to yet; a secret on a stalled mount alike) does not
/// end it: it ended with exit 129 and no log line (reload review, stop 61).
#[tokio::test]
async fn a_sighup_while_the_config_is_read_at_start_does_not_end_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let path = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", DOWN))
        .write();
    let text = std::fs::read_to_string(&path).unwrap();
    fifo_in_place_of(&path);
    let starting = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || Bin::start(&path, &[]))
    };
    // The daemon waits for the FIFO's writer: SIGHUP it there, once its
    // runtime's threads exist (the handler is set up with them, before the
    // config is read; an exec not that far yet is no part of the test).
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        let out = std::process::Command::new("pgrep")
            .args(["-f", &path.display().to_string()])
            .output()
            .unwrap();
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
        if !pid.is_empty() && threads > 2 {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not get as far as reading its config"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success(), "no daemon reading {}", path.display());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The config arrives; the daemon starts (Bin::start panics if it exited).
    // Opened without waiting: a FIFO with no reader left (the daemon gone)
    // is an error, not a wait for ever.
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000;
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(O_NONBLOCK)
        .open(&path)
        .unwrap_or_else(|e| panic!("the daemon no longer reads its config ({e}): SIGHUP ended it"));
    fifo.write_all(text.as_bytes()).unwrap();
    drop(fifo);
    let bin = starting.await.expect("the daemon started");
    assert_eq!(callback(bin.addr, &runway("after")).await.0, StatusCode::OK);
    // Its file back to a plain one: the SIGHUP's reload, or the next, applies.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, &text).unwrap();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "configuration reloaded", secs(20)).await;
}

/// A reload blocked on a file the config names (here the route token's
/// `{ file = … }`, a FIFO nobody writes to) is refused naming that file
/// (it named only the config); the next reload's read of that same file
/// fails at once, saying so, instead of leaving one more thread blocked on
/// it (reload review, stop 61); and once the FIFO is swapped for a plain
/// file, with its blocked reader still waiting, it is read again (a first
/// version refused until a restart: the change review).
#[tokio::test]
async fn a_reload_blocked_on_a_secret_file_names_it_and_blocks_no_second_thread() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("route-token");
    std::fs::write(&token, "tok").unwrap();
    let shown = token.display().to_string();
    let path = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", DOWN))
        .raw(move |t| {
            let route = t["routes"].as_array_mut().unwrap()[0].as_table_mut().unwrap();
            let mut file = toml::Table::new();
            file.insert("file".into(), toml::Value::String(shown.clone()));
            route.insert("tokens".into(), toml::Value::Array(vec![toml::Value::Table(file)]));
        })
        .write();
    let bin = Bin::start(&path, &[]);
    fifo_in_place_of(&token);
    bin.signal("HUP");
    log_until(|| bin.log_text(), "took longer than 10 s", secs(20)).await;
    let said = format!("reading {} took longer than 10 s", token.display());
    assert!(bin.log_text().contains(&said), "{}", bin.log_text());
    // Again: refused at once, no second thread blocked.
    bin.signal("HUP");
    log_until(
        || bin.log_text(),
        "an earlier reload's read of this file is still blocked",
        secs(5),
    )
    .await;
    let readers = || {
        std::fs::read_dir(format!("/proc/{}/task", bin.child.id()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
            .filter(|c| c.trim() == "config-read")
            .count()
    };
    assert_eq!(readers(), 1, "{}", bin.log_text());
    assert_eq!(callback(bin.addr, &runway("blocked")).await.0, StatusCode::OK);
    // The FIFO swapped for a plain file (its reader still blocked on the
    // old one): the next reload reads it.
    std::fs::remove_file(&token).unwrap();
    std::fs::write(&token, "tok").unwrap();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "configuration reloaded", secs(10)).await;
    assert_eq!(readers(), 1, "{}", bin.log_text());
}

/// A reload refused while the certificate file is a FIFO nobody writes to
/// (a stalled mount alike) does not hold a stop: the refusal's look at that
/// file for an unapplied renewal ran on the signal loop and blocked it for
/// as long as the file did, SIGTERM unanswered (the change review, stop 63).
#[tokio::test]
async fn sigterm_after_a_reload_blocked_on_the_certificate_file_stops_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let TestCert { cert, key, .. } = TestCert::write(dir.path(), "tls");
    let path = TestConfig::new(dir.path())
        .tls(&cert, &key)
        .subscriber(Subscriber::new("s", DOWN))
        .write();
    let bin = Bin::start(&path, &[]);
    fifo_in_place_of(&cert);
    bin.signal("HUP");
    // Refused at once (not a regular file); its look for a renewal blocks.
    log_until(|| bin.log_text(), "is not a file", secs(20)).await;
    stops_on_sigterm(bin).await;
}
