//! Signals while the daemon waits for NATS (cluster mode): a reload that sets
//! up new streams and consumers waits for NATS (up to 10 s); a start waits
//! for the connection and the set-up. SIGTERM during either stops the daemon
//! promptly, without losing what it acknowledged; a second SIGHUP during a
//! reload reads the file again once the reload ends; the watchdog goes on.

use crate::common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::nats::NatsCluster;
use common::slow_proxy::latency_proxy;
use common::*;
use http::StatusCode;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// The daemon's sd_notify messages, read from a socket of the test's own.
struct Notify(UnixDatagram);

impl Notify {
    fn bind(dir: &Path) -> (Notify, String) {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        (Notify(sock), path.to_str().unwrap().to_string())
    }

    /// The next message other than a watchdog ping; how many pings came first.
    fn next(&self) -> (String, usize) {
        let mut buf = [0u8; 512];
        let mut pings = 0;
        loop {
            let n = self.0.recv(&mut buf).expect("a notification");
            let m = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
            if m != "WATCHDOG=1" {
                return (m, pings);
            }
            pings += 1;
        }
    }

    fn expect(&self, what: &str) -> usize {
        let (m, pings) = self.next();
        assert!(m.contains(what), "expected {what}, got {m}");
        pings
    }
}

/// A relay on a one-node cluster, the route's subscriber `s` at `url`.
fn relay(nats: &NatsCluster, dir: &Path, url: &str) -> TestConfig {
    nats.relay_with_one_subscriber(dir, url)
        .shutdown_grace(secs(1))
        .delivery_retry([ms(300)])
}

/// SIGTERM while a reload waits for a slow NATS (each answer 1.5 s late, so
/// setting up the added subscriber's consumer takes the reload's full 10 s)
/// stops the daemon within the shutdown bound (grace 1 s plus 3 s), not
/// after the reload; the watchdog is pinged meanwhile; a callback
/// acknowledged before is delivered after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_reload_waiting_for_nats_stops_promptly() {
    let nats = NatsCluster::start(1).await;
    let upstream = nats.url(0).trim_start_matches("nats://").parse().unwrap();
    let (proxy, latency) = latency_proxy(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    let (notify, sock) = Notify::bind(dir.path());
    let base = relay(&nats, dir.path(), DOWN).nats(vec![format!("nats://{proxy}")], 1);
    let bin = Bin::start(&base.write(), &[("NOTIFY_SOCKET", &sock), ("WATCHDOG_USEC", "400000")]);
    notify.expect("READY=1");
    accepted(bin.addr, &runway("before-the-reload")).await;

    base.clone().subscriber(Subscriber::new("s2", DOWN)).write();
    latency.store(1500, std::sync::atomic::Ordering::Relaxed);
    bin.signal("HUP");
    notify.expect("RELOADING=1");
    // The watchdog does not wait for the reload (pings every 200 ms).
    let mut buf = [0u8; 64];
    let n = notify.0.recv(&mut buf).unwrap();
    let ping = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(ping.trim_end(), "WATCHDOG=1");

    let asked = Instant::now();
    bin.signal("TERM");
    let (next, _) = notify.next();
    assert!(
        next.contains("STOPPING=1"),
        "the stop waited for the reload to end: {next}"
    );
    let (status, bin) = bin.exit().await;
    let took = asked.elapsed();
    let log = bin.log_text();
    assert!(status.success(), "{status}: {log}");
    assert!(
        took < Duration::from_secs(6),
        "a stop waited {took:?} for a reload waiting for NATS (systemd kills after TimeoutStopSec): {log}"
    );
    assert!(
        log.contains("stopping during a reload: the reload is abandoned"),
        "{log}"
    );
    assert!(!log.contains("configuration reloaded"), "{log}");

    // Nothing acknowledged is lost: after a restart the event is delivered.
    let sub = Sub::ok().await;
    let again = Bin::start(&relay(&nats, dir.path(), &sub.url()).write(), &[]);
    sub.wait_for(secs(20), "the event accepted before the stop", |r| !r.is_empty())
        .await;
    drop(again);
}

/// A SIGHUP while a reload waits for NATS is not lost: the file is read
/// again once that reload ends, and the later file is the one in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sighup_during_a_reload_reads_the_file_again_after_it() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let (notify, sock) = Notify::bind(dir.path());
    let base = relay(&nats, dir.path(), DOWN);
    let bin = Bin::start(&base.write(), &[("NOTIFY_SOCKET", &sock)]);
    notify.expect("READY=1");

    let added = base.clone().subscriber(Subscriber::new("s2", DOWN));
    added.write();
    nats.signal(0, "STOP");
    bin.signal("HUP");
    notify.expect("RELOADING=1");
    added.clone().edit_route("t", |r| r.path("/hooks/moved")).write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "SIGHUP during a reload", secs(5)).await;
    nats.signal(0, "CONT");
    // One reload after the other, then ready.
    loop {
        let (m, _) = notify.next();
        if m.contains("READY=1") {
            break;
        }
        assert!(m.contains("RELOADING=1"), "{m}");
    }
    // The log is read from the daemon's stderr by another thread: it may
    // lag the notification a little.
    let deadline = Instant::now() + secs(5);
    let log = loop {
        let log = bin.log_text();
        if log.matches("configuration reloaded").count() >= 2 || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(ms(50)).await;
    };
    assert_eq!(log.matches("configuration reloaded").count(), 2, "{log}");
    let deadline = Instant::now() + secs(15);
    loop {
        let (status, _, _) = post(bin.addr, "/hooks/moved?token=tok", &[], runway("moved")).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second file was not applied: {status}: {log}"
        );
        tokio::time::sleep(ms(200)).await;
    }
    bin.signal("TERM");
    let (status, bin) = bin.exit().await;
    assert!(status.success(), "{status}: {}", bin.log_text());
}

/// A NATS server that lets clients connect (INFO, PONG) and answers nothing
/// else: a cluster whose JetStream does not answer. Sends a line on `seen`
/// for every command a client sends.
async fn silent_nats() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((conn, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = conn.into_split();
                let info = format!(
                    "INFO {{\"server_id\":\"silent\",\"server_name\":\"silent\",\"version\":\"2.10.0\",\
                     \"proto\":1,\"host\":\"127.0.0.1\",\"port\":{port},\"headers\":true,\
                     \"max_payload\":1048576,\"jetstream\":true,\"client_id\":1}}\r\n"
                );
                if w.write_all(info.as_bytes()).await.is_err() {
                    return;
                }
                let mut lines = tokio::io::BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("PING") && w.write_all(b"PONG\r\n").await.is_err() {
                        return;
                    }
                    let _ = tx.send(line);
                }
            });
        }
    });
    (format!("nats://127.0.0.1:{port}"), rx)
}

/// SIGTERM while the start waits for NATS to set the streams up (connected,
/// JetStream not answering: up to 10 s) stops the daemon at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_start_waiting_for_nats_stops_promptly() {
    let (url, mut seen) = silent_nats().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", DOWN))
        .nats(vec![url], 1)
        .write();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());
    // Connected, and asking JetStream (the set-up's first request).
    let asking = tokio::time::timeout(secs(10), async {
        while let Some(line) = seen.recv().await {
            if line.starts_with("PUB $JS.API") || line.starts_with("HPUB $JS.API") {
                return;
            }
        }
    })
    .await;
    assert!(asking.is_ok(), "the relay never asked JetStream");
    let asked = Instant::now();
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let took = asked.elapsed();
    let log = log.join().unwrap().join("\n");
    assert!(status.success(), "{status}: {log}");
    assert!(
        took < Duration::from_secs(2),
        "a stop during start-up waited {took:?} for NATS: {log}"
    );
    assert!(log.contains("stopped during start-up"), "{log}");
}
