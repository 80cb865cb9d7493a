//! The daemon under test: in-process (`start`, on the library's `start`) or as
//! the real binary (`Bin`: kill -9, signals, RSS, captured log, an address-space
//! limit). Configs come from `config::TestConfig`; traffic from `client`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::TestConfig;
use super::route::Subscriber;
use super::subscriber::Sub;

/// Write `cfg` and start the daemon in-process with it.
pub async fn start(cfg: &TestConfig) -> hookrelay::Handle {
    let path = cfg.write();
    let loaded = hookrelay::Config::load(&path).unwrap_or_else(|e| panic!("test config invalid: {e}"));
    hookrelay::start(loaded).await.expect("daemon starts")
}

/// A daemon with route `t` and one subscriber `s` that answers 200.
pub async fn with_ok_subscriber() -> (tempfile::TempDir, Sub, hookrelay::Handle) {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(&TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()))).await;
    (dir, sub, h)
}

/// The real binary, started with a config file; its stderr collected.
pub struct Bin {
    /// The process: killed with SIGKILL or signalled, and reaped on drop.
    pub child: Child,
    /// The ingest address it logged (it listens on port 0).
    pub addr: SocketAddr,
    /// The admin address it logged.
    pub admin: SocketAddr,
    /// Every stderr line, collected by a thread: tests search it for secrets.
    pub log: Arc<Mutex<Vec<String>>>,
    /// Told when that thread has read the last line (the process's stderr closed).
    log_read: std::sync::mpsc::Receiver<()>,
}

impl Bin {
    pub fn start(config_path: &Path, envs: &[(&str, &str)]) -> Bin {
        Self::spawn(Command::new(env!("CARGO_BIN_EXE_hookrelay")), config_path, envs)
    }

    /// Started in `dir` with `--config` relative to it (`-c config.toml`,
    /// as a user in the config's directory types it).
    pub fn start_in(dir: &Path, config: &Path) -> Bin {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookrelay"));
        cmd.current_dir(dir);
        Self::spawn(cmd, config, &[])
    }

    /// Started under `prlimit --as=BYTES`: allocations past that address-space
    /// size fail (as they would under strict overcommit or a memory limit).
    pub fn start_with_address_space(config_path: &Path, bytes: u64) -> Bin {
        Self::start_under_prlimit(config_path, &format!("--as={bytes}"))
    }

    /// Started under `prlimit LIMIT` (e.g. `--nofile=256:4096`).
    pub fn start_under_prlimit(config_path: &Path, limit: &str) -> Bin {
        assert!(
            Command::new("prlimit").arg("--version").output().is_ok(),
            "prlimit (util-linux) is needed for this test"
        );
        let mut cmd = Command::new("prlimit");
        cmd.arg(limit).arg("--").arg(env!("CARGO_BIN_EXE_hookrelay"));
        Self::spawn(cmd, config_path, &[])
    }

    /// Started in a mount namespace of its own whose `/proc` shows
    /// processes only (`subset=pid`: no `/proc/sys`), as systemd's
    /// `ProcSubset=pid` in the shipped unit makes it. None where that cannot
    /// be made (not root, no `unshare`).
    pub fn start_with_proc_subset_pid(config_path: &Path) -> Option<Bin> {
        let script = "mount -t proc -o subset=pid proc /proc && exec \"$0\" \"$@\"";
        let probe = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", script, "true"])
            .status();
        if !probe.is_ok_and(|s| s.success()) {
            return None;
        }
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", script])
            .arg(env!("CARGO_BIN_EXE_hookrelay"));
        Some(Self::spawn(cmd, config_path, &[]))
    }

    fn spawn(mut cmd: Command, config_path: &Path, envs: &[(&str, &str)]) -> Bin {
        cmd.args(["run", "--config"])
            .arg(config_path)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .env("RUST_LOG", "info")
            // Two request workers whatever the machine's cores (tokio's
            // default is one per core): the tests that bound its memory
            // measure the same daemon on any CI machine.
            .env("TOKIO_WORKER_THREADS", "2");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn hookrelay");
        let stderr = child.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel::<(Option<SocketAddr>, Option<SocketAddr>)>();
        let log2 = log.clone();
        let (read_tx, log_read) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let _done = DoneOnDrop(read_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Human lines say `addr=1.2.3.4:5`, JSON lines `"addr":"1.2.3.4:5"`.
                let addr = |marker: &str| -> Option<SocketAddr> {
                    if !line.contains(marker) {
                        return None;
                    }
                    if let Some(rest) = line.split("addr=").nth(1) {
                        return rest.split_whitespace().next()?.parse().ok();
                    }
                    line.split("\"addr\":\"").nth(1)?.split('"').next()?.parse().ok()
                };
                let _ = tx.send((addr("listening for callbacks"), addr("admin API listening")));
                log2.lock().unwrap().push(line);
            }
        });
        let (mut addr, mut admin) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while addr.is_none() || admin.is_none() {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok((a, b)) => {
                    addr = addr.or(a);
                    admin = admin.or(b);
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("hookrelay exited early ({status}): {:?}", log.lock().unwrap());
                    }
                    assert!(
                        Instant::now() < deadline,
                        "hookrelay did not start: {:?}",
                        log.lock().unwrap()
                    );
                }
            }
        }
        Bin {
            child,
            addr: addr.unwrap(),
            admin: admin.unwrap(),
            log,
            log_read,
        }
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
        self.log_complete();
    }

    /// Wait (at most 10 s) until the log holds the exited process's last
    /// line: a test searching it for a secret, or for what the stop said,
    /// reads all of it, not what the reader thread had got to.
    fn log_complete(&self) {
        let _ = self.log_read.recv_timeout(Duration::from_secs(10));
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Wait (off the async workers) for the process to exit; its status, and
    /// the `Bin` for its log.
    pub async fn exit(mut self) -> (ExitStatus, Bin) {
        tokio::task::spawn_blocking(move || {
            let s = self.child.wait().unwrap();
            self.log_complete();
            (s, self)
        })
        .await
        .unwrap()
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmRSS:").unwrap_or(0)
    }

    /// Peak resident set size (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM:").expect("VmHWM in /proc/PID/status")
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// Sends when dropped: the log reader's end, however it ends.
struct DoneOnDrop(std::sync::mpsc::Sender<()>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until a collected log (`log`: a `Bin`'s or a `Forwarder`'s
/// `log_text`, filled by a reader thread) contains `needle`; panics with the
/// log after `limit`.
pub async fn log_until(log: impl Fn() -> String, needle: &str, limit: Duration) {
    log_lines_until(log, needle, 1, limit).await;
}

/// Wait until `n` lines of a collected log contain `needle` (a test that
/// makes the same line appear again waits for its own, not for an earlier
/// one the reader thread already took in); panics with the log after `limit`.
pub async fn log_lines_until(log: impl Fn() -> String, needle: &str, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while log().lines().filter(|l| l.contains(needle)).count() < n {
        assert!(
            Instant::now() < deadline,
            "{needle:?} not logged {n} time(s) within {limit:?}:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `/proc/PID/status` field (`"VmRSS:"`, `"VmHWM:"`, …) in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
