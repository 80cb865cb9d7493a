//! A hookrelay 0.1 store written row by row, as 0.1 wrote it (tree
//! `hookrelay`: `E` event rows with a JSON header, `D` dedupe rows, `J` job
//! rows, `S`/`A` states and attempts, `X` dead letters) — an independent
//! reading of the old layout, to test the upgrade.

use std::path::Path;

use sha2::{Digest, Sha256};

/// Open a sled database the test itself writes. A store the test (or an
/// in-process CLI) closed a moment ago may still hold its lock: sled's I/O
/// threads let go of it last, after the store is dropped (the daemon retries
/// the same way); try again for up to 10 s.
pub fn open(path: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{} stayed locked: {e}",
                    path.display()
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("open {}: {e}", path.display()),
        }
    }
}

/// One event of the old store: its id, body and what happened to it.
pub struct V1Event {
    pub id: String,
    pub body: String,
}

/// Write a 0.1 store at `path` for route `t` and subscriber `s`: `pending`
/// events never tried, one retrying event (two failed attempts), one
/// delivered and one dead letter. Returns them in that order.
pub fn write(path: &Path, pending: usize) -> Vec<V1Event> {
    let db = open(path);
    let t = db.open_tree("hookrelay").unwrap();
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 60_000;
    let mut out = Vec::new();
    let kinds: Vec<String> = (0..pending)
        .map(|i| format!("fresh-{i}"))
        .chain(["retrying", "delivered", "dead"].map(String::from))
        .collect();
    for (i, task) in kinds.iter().enumerate() {
        let id = ulid::Ulid::from_parts(t0 + i as u64, 42);
        let body = format!(r#"{{"code":200,"msg":"ok","data":{{"task_id":"{task}"}}}}"#);
        // The route's dedupe key is /data/task_id + /code (0.1's pointer hash).
        let mut h = Sha256::new();
        h.update(b"pointers\0");
        h.update(format!("\"{task}\"").as_bytes());
        h.update([0x1f]);
        h.update(b"200");
        h.update([0x1f]);
        let hash: [u8; 32] = h.finalize().into();
        let meta = serde_json::json!({
            "route": "t", "received_ms": t0 + i as u64, "source": "203.0.113.7",
            "content_type": "application/json", "headers": [["user-agent", "kie"]],
            "subscribers": ["s"], "dedupe": hex::encode(hash), "dedupe_fallback": false
        });
        let m = serde_json::to_vec(&meta).unwrap();
        let mut v = (m.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(&m);
        v.extend_from_slice(body.as_bytes());
        let idb = id.to_bytes();
        t.insert([&b"E"[..], &idb].concat(), v).unwrap();
        t.insert([&b"Dt\0"[..], &hash].concat(), &idb).unwrap();
        let attempt = |n: u64, status: u16| {
            let a = serde_json::json!({"attempt": n, "at_ms": t0 + 100 * n, "duration_ms": 5, "status": status, "error": null});
            let k = [&b"A"[..], &idb, b"s\0", &n.to_be_bytes()].concat();
            t.insert(k, serde_json::to_vec(&a).unwrap()).unwrap();
        };
        let job = |step: u32, tried: u32| {
            let k = [&b"Js\0"[..], &(t0 + i as u64).to_be_bytes(), &idb].concat();
            t.insert(k, [step.to_be_bytes(), tried.to_be_bytes()].concat()).unwrap();
        };
        let state = |s: &str| {
            let st = serde_json::json!({"state": s, "at_ms": t0 + 1000, "attempts": 1, "last_error": null});
            t.insert([&b"S"[..], &idb, b"s"].concat(), serde_json::to_vec(&st).unwrap())
                .unwrap();
        };
        match task.as_str() {
            "retrying" => {
                attempt(1, 500);
                attempt(2, 503);
                job(2, 2);
            }
            "delivered" => {
                attempt(1, 200);
                state("delivered");
            }
            "dead" => {
                attempt(1, 500);
                state("dead");
                let dl = serde_json::json!({"event": format!("evt_{id}"), "subscriber": "s", "at_ms": t0 + 1000, "attempts": 1, "last_error": "HTTP 500"});
                t.insert([&b"Xs\0"[..], &idb].concat(), serde_json::to_vec(&dl).unwrap())
                    .unwrap();
            }
            _ => job(0, 0),
        }
        out.push(V1Event {
            id: format!("evt_{id}"),
            body,
        });
    }
    db.flush().unwrap();
    out
}
