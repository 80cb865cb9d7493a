//! `store.path` a file, or under one: `check-config` said OK and the start
//! failed ("cannot open the store at …: Not a directory", naming neither the
//! config file nor the key); both now refuse the file naming `store.path`.

use crate::common;

use common::*;

#[tokio::test]
async fn check_config_and_run_refuse_a_store_path_that_is_or_is_under_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a store").unwrap();
    let cases = [
        (file.clone(), format!("{} is not a directory", file.display())),
        (
            file.join("data"),
            format!(
                "{} is under {}, which is not a directory",
                file.join("data").display(),
                file.display()
            ),
        ),
    ];
    for (path, problem) in cases {
        let config = TestConfig::new(dir.path())
            .subscriber(Subscriber::new("s", DOWN))
            .store_path(&path)
            .write();
        let config = config.to_str().unwrap();
        for args in [["check-config", "--config", config], ["run", "--config", config]] {
            let out = cli_output(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains(config) && err.contains("key `store.path` (line ") && err.contains(&problem),
                "{args:?}: the error names the file, `store.path` and {problem:?}:\n{err}"
            );
        }
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a store");
}

/// A store directory the operator made open to other users (0755, as
/// `mkdir` under the usual umask makes it) is named at start: its files
/// (0644 from sled under that umask) hold every callback body. One the
/// relay made (0700) is not.
#[tokio::test]
async fn a_store_directory_open_to_other_users_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("open-store");
    std::fs::create_dir(&store).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = TestConfig::new(dir.path())
        .store_path(&store)
        .subscriber(Subscriber::new("s", DOWN));
    let bin = Bin::start(&cfg.write(), &[]);
    log_until(
        || bin.log_text(),
        "is open to other users of this machine (mode 755)",
        secs(10),
    )
    .await;
    assert!(bin.log_text().contains("chmod 700"), "{}", bin.log_text());
    drop(bin);
    let own = TestConfig::new(dir.path())
        .store_path(&dir.path().join("own-store"))
        .subscriber(Subscriber::new("s", DOWN));
    let bin = Bin::start(&own.write(), &[]);
    assert!(!bin.log_text().contains("open to other users"), "{}", bin.log_text());
}

/// A `store.min_free` larger than the whole disk is never met: every
/// callback would be refused. `check-config` said OK and nothing else
/// (stop 66's Left); it names the key, and so does the start's log.
#[tokio::test]
async fn a_store_floor_larger_than_the_disk_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", DOWN))
        .min_free(1 << 62);
    let config = cfg.write();
    let out = cli_output(&["check-config", "--config", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "a warning, not a refusal: {err}");
    assert!(
        err.contains("warning: ") && err.contains("key `store.min_free`") && err.contains("never met"),
        "{err}"
    );
    let bin = Bin::start(&config, &[]);
    log_until(|| bin.log_text(), "is never met, so every callback", secs(10)).await;
}
