//! When things go wrong: crash loops, duplicate storms, broken subscribers,
//! a full disk and hostile HTTP. Each must end with a clear answer or a closed
//! connection, nothing acknowledged lost, and the daemon still serving.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_under_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg_path = dir.path().join("config.toml");
    let sub = Sub::start(Arc::new(|_, _| Behaviour::Slow(Duration::from_millis(2)))).await;
    write_config(
        dir.path(),
        &config(&data, "", &subscriber_toml("s", &sub.url(), "concurrency = 4")),
    );
    let mut acked = Vec::new();
    for round in 0..3 {
        let mut bin = Bin::start(&cfg_path, &[("RUST_LOG", "warn,hookrelay::app=info")]);
        let addr = bin.addr;
        // kill -9 while the load is running.
        let load =
            tokio::spawn(async move { load_until(addr, 8, &format!("crash{round}"), Duration::from_secs(3)).await });
        tokio::time::sleep(Duration::from_millis(400)).await;
        bin.kill9();
        acked.extend(load.await.unwrap());
    }
    assert!(acked.len() > 100, "load was under way ({} acked)", acked.len());
    let bin = Bin::start(&cfg_path, &[("RUST_LOG", "warn,hookrelay::app=info")]);
    let want: HashSet<String> = acked.iter().map(|(id, _)| id.clone()).collect();
    sub.wait_for(Duration::from_secs(60), "every acknowledged callback delivered", |_| {
        let seen = seen_ids(&sub);
        want.iter().all(|id| seen.contains_key(id))
    })
    .await;
    // Dedupe keys survived every crash.
    for (id, body) in acked.iter().step_by(acked.len() / 20) {
        let (s, v) = callback(bin.addr, body).await;
        assert_eq!(
            (s, v["duplicate"].as_bool(), v["id"].as_str()),
            (StatusCode::OK, Some(true), Some(id.as_str()))
        );
    }
}

#[tokio::test]
async fn duplicate_storm_delivers_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = Sub::ok().await;
    let b = Sub::ok().await;
    let subs = subscriber_toml("a", &a.url(), "") + &subscriber_toml("b", &b.url(), "");
    let h = start(dir.path(), &config(&dir.path().join("data"), "", &subs)).await;
    let addr = h.ingest_addrs[0];
    let mut tasks = Vec::new();
    for i in 0..150 {
        for _ in 0..3 {
            tasks.push(tokio::spawn(async move {
                callback(addr, &runway(&format!("storm-{i}"))).await
            }));
        }
    }
    let mut ids = HashSet::new();
    let mut fresh = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert_eq!(s, StatusCode::OK);
        ids.insert(v["id"].as_str().unwrap().to_string());
        fresh += usize::from(v["duplicate"] == false);
    }
    assert_eq!((ids.len(), fresh), (150, 150));
    for sub in [&a, &b] {
        sub.wait_for(Duration::from_secs(10), "150 deliveries", |r| r.len() >= 150)
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for sub in [&a, &b] {
        let seen = seen_ids(sub);
        assert_eq!(seen.len(), 150);
        assert!(seen.values().all(|n| *n == 1), "an event was delivered twice");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn subscriber_that_drops_connections_mid_response_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let attempts = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = attempts.clone();
    tokio::spawn(async move {
        for n in 0.. {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let len = s.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..len]).to_string();
            let id = req
                .lines()
                .find_map(|l| l.strip_prefix("webhook-id: "))
                .unwrap_or("")
                .to_string();
            seen.lock().unwrap().push(id);
            match n {
                0 => {}                                                            // close without a word
                1 => s.write_all(b"HTTP/1.1 20").await.unwrap(),                   // half a status line
                2 => s.write_all(b"HTTP/1.1 200 OK\r\ncontent-le").await.unwrap(), // half the headers
                _ => s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await
                    .unwrap(),
            }
            let _ = s.shutdown().await;
        }
    });
    let subs = subscriber_toml(
        "flaky",
        &format!("http://{addr}/"),
        "retry = [\"50ms\", \"50ms\", \"50ms\", \"50ms\"]\ncircuit_threshold = 100",
    );
    let h = start(dir.path(), &config(&dir.path().join("data"), "", &subs)).await;
    let (_, v) = callback(h.ingest_addrs[0], &runway("flaky")).await;
    let id = v["id"].as_str().unwrap().to_string();
    let mut state = serde_json::Value::Null;
    for _ in 0..200 {
        state = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await.1;
        if state["subscribers"][0]["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state["subscribers"][0]["state"], "delivered", "{state}");
    let tries = state["subscribers"][0]["attempts"].as_array().unwrap().clone();
    assert_eq!(tries.len(), 4, "{state}");
    assert!(
        tries[..3]
            .iter()
            .all(|a| a["error"].as_str().unwrap().contains("connection error")),
        "{state}"
    );
    assert!(attempts.lock().unwrap().iter().all(|x| *x == id));
    h.shutdown().await;
}

struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .ok()?
            .success();
        ok.then(|| Tmpfs(path.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_answers_503_loses_nothing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    let Some(_tmpfs) = Tmpfs::mount(&mnt, "24m") else {
        // Needs root (CI runs as root); say so rather than pass silently.
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        return;
    };
    let data = mnt.join("data");
    let cfg_path = dir.path().join("config.toml");
    let big_body = |i: usize| {
        format!(
            r#"{{"code":200,"data":{{"task_id":"full-{i}","pad":"{}"}}}}"#,
            "x".repeat(60_000)
        )
    };
    write_config(
        dir.path(),
        &config(
            &data,
            "",
            &subscriber_toml("s", "http://127.0.0.1:9/", "retry = [\"1h\"]"),
        )
        .replace("[store]", "[store]\ncache = \"1MiB\"\nmin_free = \"4MiB\""),
    );
    let bin = Bin::start(&cfg_path, &[("RUST_LOG", "warn,hookrelay::app=info")]);
    // Fill the disk with a file we can delete later, leaving a little room.
    let filler = mnt.join("filler");
    let free_kib = || {
        let out = Command::new("df")
            .args(["-k", "--output=avail"])
            .arg(&mnt)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    // Leave min_free (4 MiB) + 3 MiB: a few dozen callbacks fit, then 503s
    // before sled itself could run out of space.
    let fill = (free_kib().saturating_sub(7 * 1024)) as usize * 1024;
    std::fs::write(&filler, vec![0u8; fill]).unwrap();
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..200 {
        let (s, v) = callback(bin.addr, &big_body(i)).await;
        match s {
            StatusCode::OK => acked.push(v["id"].as_str().unwrap().to_string()),
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("unexpected answer {other} while the disk fills"),
        }
    }
    assert!(refused >= 5, "the disk never filled ({} acked)", acked.len());
    assert!(!acked.is_empty());
    // Still alive, and honest about it.
    assert_eq!(admin(bin.admin, "GET", "/healthz").await.0, StatusCode::OK);
    assert_eq!(
        admin(bin.admin, "GET", "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Space returns: ingest recovers.
    std::fs::remove_file(&filler).unwrap();
    let mut recovered = false;
    for i in 1000..1100 {
        let (s, v) = callback(bin.addr, &runway(&format!("after-full-{i}"))).await;
        if s == StatusCode::OK {
            acked.push(v["id"].as_str().unwrap().to_string());
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "ingest did not recover after space returned: {}",
        bin.log_text()
    );
    assert_eq!(admin(bin.admin, "GET", "/readyz").await.0, StatusCode::OK);
    drop(bin);
    // Nothing acknowledged was lost.
    let store = open_store(&data);
    for id in &acked {
        assert!(
            store.event(id.parse().unwrap()).await.unwrap().is_some(),
            "acknowledged {id} lost"
        );
    }
}

async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.write_all(bytes)).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http_gets_clear_answers_and_the_daemon_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg_path = dir.path().join("config.toml");
    write_config(
        dir.path(),
        &config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), "")),
    );
    let bin = Bin::start(&cfg_path, &[("RUST_LOG", "warn,hookrelay::app=info")]);
    let addr = bin.addr;

    // CL + TE request smuggling: never two requests out of one.
    let smuggle = b"POST /hooks/t?token=tok HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nPOST /hooks/t?token=tok HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}";
    let answer = raw(addr, smuggle).await;
    assert!(
        answer.matches("HTTP/1.1 ").count() <= 1,
        "smuggled a second request: {answer}"
    );
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Two content lengths.
    let answer = raw(
        addr,
        b"POST /hooks/t?token=tok HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 5\r\n\r\n{}",
    )
    .await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Random bytes.
    let mut rng = fastrand::Rng::with_seed(7);
    let junk: Vec<u8> = (0..65536).map(|_| rng.u8(..)).collect();
    let answer = raw(addr, &junk).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");
    // 100k-deep JSON within max_body: 400, not a stack overflow.
    let (s, _, _) = post(
        addr,
        "/hooks/t?token=tok",
        &[],
        "[".repeat(100_000) + &"]".repeat(100_000),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // A flood of wrong tokens: answered, memory bounded, real callbacks still fast.
    let rss_before = bin.rss_kib();
    let flood_end = Instant::now() + Duration::from_secs(3);
    let mut flood = Vec::new();
    for _ in 0..16 {
        flood.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < flood_end {
                let (s, _, _) = post(addr, "/hooks/t?token=guess", &[], runway("f")).await;
                assert_eq!(s, StatusCode::UNAUTHORIZED);
                n += 1;
            }
            n
        }));
    }
    let mut latencies = Vec::new();
    while Instant::now() < flood_end {
        let t = Instant::now();
        let (s, _) = callback(addr, &runway(&format!("real-{}", latencies.len()))).await;
        assert_eq!(s, StatusCode::OK);
        latencies.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut total = 0;
    for f in flood {
        total += f.await.unwrap();
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let rss_after = bin.rss_kib();
    eprintln!("wrong-token flood: {total} requests; real callbacks p99 {p99:?}; RSS {rss_before} -> {rss_after} KiB");
    assert!(total > 1000, "flood too small to mean anything: {total}");
    assert!(
        p99 < Duration::from_millis(500),
        "real callbacks slowed to p99 {p99:?} under the flood"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew {rss_before} -> {rss_after} KiB"
    );
    // Still serving.
    assert_eq!(callback(addr, &runway("after-all")).await.0, StatusCode::OK);
}
