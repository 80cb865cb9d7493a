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
