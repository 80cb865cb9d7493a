//! A store (or its ACME state beside it) on a path the relay cannot write
//! says where it can: under the shipped unit only `/var/lib/hookrelay` is
//! writable, and a store moved elsewhere failed with a bare "Read-only file
//! system" (packaging review, stop 62).

use crate::common;

use common::tmpfs::Tmpfs;
use common::*;
use std::process::Command;

#[test]
fn a_store_on_a_read_only_filesystem_is_refused_saying_where_the_unit_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("ro");
    let Some(_tmpfs) = Tmpfs::mount(&mnt, "4m") else {
        return;
    };
    // One the operator made beforehand, and one the relay would make.
    std::fs::create_dir(mnt.join("existing")).unwrap();
    let remounted = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(remounted.success());
    for (store, says) in [
        ("data", "cannot create the store directory"),
        ("existing", "Read-only file system"),
    ] {
        let path = TestConfig::new(dir.path())
            .store_path(&mnt.join(store))
            .subscriber(Subscriber::new("s", DOWN))
            .write();
        let out = cli_output(&["run", "--config", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(says)
                && err.contains("Read-only file system")
                && err.contains("keep store.path under it, e.g. /var/lib/hookrelay/data"),
            "{store}: {err}"
        );
    }
}
