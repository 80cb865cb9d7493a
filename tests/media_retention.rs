//! Media retention under faults: a file retention released (no URL refers
//! to it any more) that could not be deleted then (the S3 store down, the
//! pass cut short by a shutdown or a crash) is deleted by a later pass, not
//! kept for good once its index rows are gone.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::files::FileServer;
use common::*;
use serde_json::json;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(30);

/// A TCP proxy to `upstream` that can be cut: while down it closes every
/// connection it has passed on and every new one at once (an S3 endpoint
/// that went away, pooled connections included).
struct Cut {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Cut {
    async fn start(upstream: SocketAddr) -> Cut {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (is_up, held) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                if !is_up.load(Ordering::SeqCst) {
                    drop(c);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut u) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                    }
                });
                held.lock().unwrap().push(task);
            }
        });
        Cut { addr, up, conns }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Object keys in `bucket` on moto (read directly, not through the proxy).
async fn keys(moto: &Moto, bucket: &str) -> Vec<String> {
    let (status, _, body) = request(
        moto.addr,
        None,
        "GET",
        &format!("/{bucket}?list-type=2"),
        &[],
        Bytes::new(),
    )
    .await;
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "{body}");
    body.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(str::to_string)
        .collect()
}

/// Retention releases a file while the S3 store is down: its URL row goes,
/// the deletion fails. Once the store is back, the next pass deletes it (it
/// was kept in the bucket for good, with nothing left to name it).
#[tokio::test]
async fn a_file_retention_could_not_delete_is_deleted_by_a_later_pass() {
    let moto = Moto::start().await;
    moto.create_bucket("media").await;
    let cut = Cut::start(moto.addr).await;
    let s = FileServer::start(LOCAL).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = moto
        .store("media", "AKIATEST", "moto-secret")
        .endpoint(&cut.endpoint())
        .prefix("hookrelay/");
    let cfg = media_config(dir.path(), Media::new().allow_private().s3(bucket))
        .route(preset_route("runway", "kie-runway").subscriber(Subscriber::new("s", DOWN)));
    let h = start(&cfg).await;
    let video_url = s.bytes("/k/r1.mp4", b"the video bytes", "video/mp4");
    let cover_url = s.bytes("/m/r1.png", b"the cover bytes", "image/png");
    let body = json!({"code": 200, "msg": "ok", "data": {
        "task_id": "r1", "video_url": video_url, "image_url": cover_url}});
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &body.to_string()).await;
    let media = wait_final(h.admin_addr, &id, WAIT).await;
    assert!(media.iter().all(|m| m["state"] == "stored"), "{media:#?}");
    let stored = |k: &Vec<String>| k.iter().filter(|k| !k.contains("/tmp/")).count();
    assert_eq!(stored(&keys(&moto, "media").await), 2);

    // The store goes away; a retention pass forgets both URLs but cannot
    // delete their files.
    cut.down();
    let later = hookrelay::clock::now_ms() + 1;
    assert_eq!(hookrelay::retention::sweep_media(&h.app, later).await, (2, 0));
    assert_eq!(stored(&keys(&moto, "media").await), 2, "nothing deleted while down");

    // Back: the next pass deletes them.
    cut.up();
    let later = hookrelay::clock::now_ms() + 1;
    assert_eq!(
        hookrelay::retention::sweep_media(&h.app, later).await,
        (0, 2),
        "the files retention could not delete are deleted once the store is back"
    );
    let left = keys(&moto, "media").await;
    assert_eq!(stored(&left), 0, "{left:?}");
    // And only once: a third pass has nothing left to do.
    assert_eq!(hookrelay::retention::sweep_media(&h.app, later).await, (0, 0));
    h.shutdown().await;
}
