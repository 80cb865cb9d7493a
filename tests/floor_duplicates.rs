//! Near `store.min_free`, each new event spends its share of the room above
//! the floor, but a duplicate writes nothing: a provider resending a
//! callback already stored still gets its `200` with the first event's id,
//! even when a new callback of that size is refused (`503`). A real daemon
//! with its store on a small tmpfs.

use crate::common;

use common::*;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_near_the_floor_gets_its_200() {
    let dir = tempfile::tempdir().unwrap();
    let Some((tmpfs, mnt, cfg)) = tmpfs::store_near_the_floor(dir.path()) else {
        return;
    };
    let cfg = cfg.max_body(8 << 20);
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "warn,hookrelay::app=info")]);
    let body = |tag: &str| {
        format!(
            r#"{{"code":200,"data":{{"task_id":"{tag}","pad":"{}"}}}}"#,
            "y".repeat(3 << 20)
        )
    };
    let path = "/hooks/t?token=tok";
    let json = [("content-type", "application/json")];
    let (status, _, first) = post(bin.addr, path, &json, body("floor-a")).await;
    assert_eq!(status, StatusCode::OK, "{first:?}");
    let first: serde_json::Value = serde_json::from_slice(&first).unwrap();
    // About 3 MiB above the floor: less than a new 3 MiB event's share.
    let filler = mnt.join("filler");
    let fill = (tmpfs.free_kib().saturating_sub(11 * 1024)) as usize * 1024;
    std::fs::write(&filler, vec![0u8; fill]).unwrap();
    let (status, _, again) = post(bin.addr, path, &json, body("floor-a")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the duplicate: {}",
        String::from_utf8_lossy(&again)
    );
    let again: serde_json::Value = serde_json::from_slice(&again).unwrap();
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["id"], first["id"], "{again}");
    let (status, _, new) = post(bin.addr, path, &json, body("floor-b")).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a new event of that size: {}",
        String::from_utf8_lossy(&new)
    );
    drop(bin);
    std::fs::remove_file(&filler).unwrap();
}

/// Under `store.min_free` (every new callback refused, the relay not
/// ready) a provider's resend of a callback stored before still gets its
/// `200` with the first event's id: it writes nothing. Before, every
/// callback got the `503`, and the provider spent its retries on one
/// already kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_under_the_floor_gets_its_200() {
    let dir = tempfile::tempdir().unwrap();
    let Some((tmpfs, mnt, cfg)) = tmpfs::store_near_the_floor(dir.path()) else {
        return;
    };
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "warn,hookrelay::app=info")]);
    let first = accepted(bin.addr, &runway("under-a")).await;
    let filler = mnt.join("filler");
    tmpfs.fill_leaving(&filler, 4 * 1024);
    let (status, again) = callback(bin.addr, &runway("under-a")).await;
    assert_eq!(status, StatusCode::OK, "the duplicate: {again}");
    assert_eq!(
        (&again["duplicate"], &again["id"]),
        (&true.into(), &first.into()),
        "{again}"
    );
    let (status, new) = callback(bin.addr, &runway("under-b")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a new callback: {new}");
    assert!(new.to_string().contains("disk is nearly full"), "{new}");
    // The same new callback twice in one go: neither taken for the other's
    // duplicate.
    let c = runway("under-c");
    let (a, b) = tokio::join!(callback(bin.addr, &c), callback(bin.addr, &c));
    assert_eq!(
        (a.0, b.0),
        (StatusCode::SERVICE_UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE)
    );
    drop(bin);
    std::fs::remove_file(&filler).unwrap();
}
