//! The owner tag of a relay's partial media files (`tmp/ULID-OWNER.part`)
//! names its host, also under the shipped systemd unit, whose
//! `ProcSubset=pid` hides `/proc/sys`: relays sharing a media directory
//! (each with the packaged `store.path`) must not take each other's
//! downloads in flight for their own and remove them at a start.

use crate::common;

use common::*;
use sha2::{Digest, Sha256};

/// Operator review (stop 53): the host name was read from
/// `/proc/sys/kernel/hostname`, which the unit hides, so every relay tagged
/// its files with the same empty host name: a relay starting removed at once
/// the fresh partial file of a download another relay had in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_under_proc_subset_pid_keeps_another_relays_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let config = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .write();
    // Another host's relay with the same store.path, and no host name to
    // tell (the old tag: an empty host name).
    let store_path = dir.path().join("data");
    let mut h = Sha256::new();
    h.update(b"");
    h.update([0]);
    h.update(store_path.as_os_str().as_encoded_bytes());
    let other = hex::encode(&h.finalize()[..8]);
    let tmp = store_path.join("media/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let part = tmp.join(format!("01HZZY0000000000000000000-{other}.part"));
    std::fs::write(&part, b"half a video").unwrap();
    let Some(bin) = Bin::start_with_proc_subset_pid(&config) else {
        eprintln!("skipped: a mount namespace with /proc subset=pid needs root and unshare");
        return;
    };
    admin_expect(bin.admin, "/readyz", secs(10), "ready", |_| true).await;
    assert!(
        part.exists(),
        "the fresh partial file of another relay's download was removed at the start: {:?}",
        bin.log_text()
    );
}
