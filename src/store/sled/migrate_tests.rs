//! Store-level tests of opening old and foreign stores: a 0.1 store is
//! migrated with its pending work, a newer schema, a compression switch and
//! another program's sled database are refused.

use sha2::{Digest, Sha256};

use super::tests::*;
use crate::store::*;

/// A 0.1 store written row by row as 0.1 wrote it (an independent reading of
/// its layout): one delivered event, one never tried, one retrying, one dead.
fn write_v1_store(path: &std::path::Path, t0: u64) -> Vec<EventId> {
    let db = ::sled::open(path).unwrap();
    let t = db.open_tree("hookrelay").unwrap();
    let mut ids = Vec::new();
    for (i, task) in ["delivered", "fresh", "retrying", "dead"].iter().enumerate() {
        let id = EventId::from_parts(t0 + i as u64, 7);
        let hash = hex::encode(Sha256::digest(task.as_bytes()));
        let meta = serde_json::json!({
            "route": "runway", "received_ms": t0 + i as u64, "source": "203.0.113.7",
            "content_type": "application/json", "headers": [["user-agent", "kie"]],
            "subscribers": ["a"], "dedupe": hash, "dedupe_fallback": false
        });
        let m = serde_json::to_vec(&meta).unwrap();
        let mut v = (m.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(&m);
        v.extend_from_slice(format!(r#"{{"task":"{task}"}}"#).as_bytes());
        t.insert([&[b'E'][..], &id.bytes()].concat(), v).unwrap();
        t.insert([&b"Drunway\0"[..], &hex::decode(&hash).unwrap()].concat(), &id.bytes())
            .unwrap();
        let attempt = |n: u32, status: u16| {
            let k = [&[b'A'][..], &id.bytes(), b"a\0", &u64::from(n).to_be_bytes()].concat();
            let a = serde_json::json!({"attempt": n, "at_ms": t0 + 100 * u64::from(n), "duration_ms": 5, "status": status, "error": null});
            t.insert(k, serde_json::to_vec(&a).unwrap()).unwrap();
        };
        let state = |s: &str, n: u32| {
            let st = serde_json::json!({"state": s, "at_ms": t0 + 1000, "attempts": n, "last_error": if s == "dead" { Some("HTTP 500") } else { None }});
            t.insert(
                [&[b'S'][..], &id.bytes(), b"a"].concat(),
                serde_json::to_vec(&st).unwrap(),
            )
            .unwrap();
        };
        let job = |due: u64, step: u32, n: u32| {
            let k = [&b"Ja\0"[..], &due.to_be_bytes(), &id.bytes()].concat();
            t.insert(k, [step.to_be_bytes(), n.to_be_bytes()].concat()).unwrap();
        };
        match *task {
            "delivered" => {
                attempt(1, 200);
                state("delivered", 1);
            }
            "fresh" => job(t0 + 1, 0, 0),
            "retrying" => {
                attempt(1, 500);
                attempt(2, 503);
                job(t0 + 5000, 2, 2);
            }
            _ => {
                attempt(1, 500);
                state("dead", 1);
                let dl = serde_json::json!({"event": id.to_string(), "subscriber": "a", "at_ms": t0 + 1000, "attempts": 1, "last_error": "HTTP 500"});
                t.insert([&b"Xa\0"[..], &id.bytes()].concat(), serde_json::to_vec(&dl).unwrap())
                    .unwrap();
            }
        }
        ids.push(id);
    }
    db.flush().unwrap();
    ids
}

#[tokio::test]
async fn a_v1_store_is_migrated_with_its_pending_work() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = crate::clock::now_ms() - 60_000;
    let ids = write_v1_store(&dir.path().join("data"), t0);
    let store = open(dir.path(), &["a"]).await;
    let view = store.event_view(ids[0]).await.unwrap().unwrap();
    assert_eq!(view.event.meta.source, Some("203.0.113.7".parse().unwrap()));
    assert_eq!(&view.event.body[..], br#"{"task":"delivered"}"#);
    assert_eq!(
        (view.deliveries[0].state.name(), view.deliveries[0].history.len()),
        ("delivered", 1)
    );
    let dead = store.dead_letters(None, 10).await.unwrap().letters;
    assert_eq!(dead.iter().map(|d| d.event).collect::<Vec<_>>(), vec![ids[3]]);
    // Dedupe keys survive.
    let mut dup = event("fresh", &["a"], t0);
    dup.dedupe_hash = Sha256::digest(b"fresh").into();
    assert_eq!(
        store.append(dup).await.unwrap(),
        Accepted {
            id: ids[1],
            duplicate: true
        }
    );
    // Pending jobs are delivered, with their retry state.
    let mut src = store.work_source("a").unwrap();
    assert_eq!(src.depth(), 2);
    let work = src.take(8, crate::clock::now_ms()).await.unwrap();
    let got: Vec<_> = work.iter().map(|w| (w.event.id, w.step, w.attempts)).collect();
    assert_eq!(got, vec![(ids[1], 0, 0), (ids[2], 2, 2)]);
    store.close().await;
    drop((store, src));
    // The old tree is gone; opening again does not migrate twice.
    let store = open(dir.path(), &["a"]).await;
    assert_eq!(store.work_source("a").unwrap().depth(), 2);
    store.close().await;
}

#[tokio::test]
async fn a_newer_store_and_a_compression_switch_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &["a"]).await;
    store.close().await;
    drop(store);
    let mut o = opts(dir.path());
    o.compression = true;
    let e = Store::open_sled(&o).err().expect("refused").to_string();
    assert!(
        e.contains("store.compression = false") && e.contains("cannot switch"),
        "{e}"
    );
    {
        let db = open_raw(&dir.path().join("data"));
        db.open_tree("hookrelay-v2")
            .unwrap()
            .insert(b"Vversion", &9u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let e = Store::open_sled(&opts(dir.path())).err().expect("refused").to_string();
    assert!(e.contains("newer hookrelay (schema 9)"), "{e}");
}

#[tokio::test]
async fn another_programs_sled_database_is_refused_without_a_tree_of_hookrelays_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let write = |tree: Option<&str>| {
        let db = open_raw(&path);
        match tree {
            Some(t) => db.open_tree(t).unwrap().insert(b"k", b"v").unwrap(),
            None => db.insert(b"k", b"v").unwrap(),
        };
        db.flush().unwrap();
    };
    let names = || {
        let db = open_raw(&path);
        let mut n: Vec<String> = db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        n.sort();
        n
    };
    write(Some("sessions"));
    let e = Store::open_sled(&opts(dir.path())).err().expect("refused").to_string();
    assert!(
        e.contains("another program wrote")
            && e.contains("the trees \"sessions\"")
            && e.contains(&path.display().to_string()),
        "{e}"
    );
    assert_eq!(
        names(),
        ["__sled__default", "sessions"],
        "no tree of hookrelay's written into it"
    );
    write(None);
    for t in ["t1", "t2", "t3", "t4", "t5", "t6"] {
        write(Some(t));
    }
    let e = Store::open_sled(&opts(dir.path())).err().expect("refused").to_string();
    assert!(
        e.contains("rows in sled's default tree and the trees \"sessions\", \"t1\"") && e.contains("2 more"),
        "{e}"
    );
    assert_eq!(
        open_raw(&path).get(b"k").unwrap().as_deref(),
        Some(b"v".as_slice()),
        "its rows read as before"
    );

    // An empty sled database is taken (nothing to lose), and a store
    // hookrelay made stays its own whatever else is written beside it.
    let other = tempfile::tempdir().unwrap();
    drop(open_raw(&other.path().join("data")));
    let store = open(other.path(), &["a"]).await;
    store.close().await;
    drop(store);
    {
        let db = open_raw(&other.path().join("data"));
        db.open_tree("extra").unwrap().insert(b"k", b"v").unwrap();
        db.flush().unwrap();
    }
    let store = open(other.path(), &["a"]).await;
    store.close().await;
}
