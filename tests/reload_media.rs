//! Reload and the media archive: its settings apply to the next download; a
//! reload or a restart that moves the media store names both stores; a
//! changed `store.path` keeps the archive's default directory until the
//! restart.

use crate::common;
use crate::reload::until_new_route_answers;

use std::path::Path;
use std::time::Duration;

use common::*;
use http::StatusCode;

#[tokio::test]
async fn a_reload_applies_the_media_settings() {
    let s = common::files::FileServer::start(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)).await;
    let dir = tempfile::tempdir().unwrap();
    let route = preset_route("runway", "kie-runway").subscriber(Subscriber::new("s", DOWN));
    let cfg = media_config(dir.path(), Media::new()).route(route);
    let h = start(&cfg).await;
    let runway = |task: &str, url: &str| runway_media(task, url, "").to_string();
    let wait = Duration::from_secs(30);
    let first = s.bytes("/k/1.mp4", b"one", "video/mp4");
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &runway("1", &first)).await;
    assert_eq!(wait_final(h.admin_addr, &id, wait).await[0]["state"], "failed");
    // SIGHUP's path: the file changes, the daemon reloads it.
    cfg.media(Media::new().allow_private()).write();
    h.reload().await.expect("reload");
    let second = s.bytes("/k/2.mp4", b"two", "video/mp4");
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &runway("2", &second)).await;
    let m = &wait_final(h.admin_addr, &id, wait).await[0];
    assert_eq!(
        (m["state"].as_str(), m["sha256"].as_str()),
        (Some("stored"), Some(common::files::sha256_hex(b"two").as_str()))
    );
    h.shutdown().await;
}

/// A reload that moves the media store says what happens to the files
/// archived before: they stay in the old store, neither served nor swept.
#[tokio::test]
async fn a_reload_that_moves_the_media_store_names_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("media-a"), dir.path().join("media-b"));
    let cfg = media_config(dir.path(), Media::new().dir(&old));
    let bin = Bin::start(&cfg.clone().write(), &[]);
    // Other media settings, the same store (min_free is the store's setting
    // too, not where it is): nothing said about moved files.
    cfg.clone()
        .media(Media::new().dir(&old).allow_private().min_free(1))
        .write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "configuration reloaded", secs(10)).await;
    assert!(!bin.log_text().contains("media.store changed"), "{}", bin.log_text());
    cfg.media(Media::new().dir(&new)).write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "media.store changed", secs(10)).await;
    let log = bin.log_text();
    let line = log.lines().find(|l| l.contains("media.store changed")).unwrap();
    assert!(
        line.contains("media-a") && line.contains("media-b") && line.contains("neither served nor deleted"),
        "{line}"
    );
}

/// A restart with another media store is noticed like a reload that moves
/// it: the relay remembers (under `store.path`) where it archived last.
#[tokio::test]
async fn a_restart_with_another_media_store_names_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("media-a"), dir.path().join("media-b"));
    let cfg = |m: &Path| {
        media_config(dir.path(), Media::new().dir(m))
            .route(preset_route("m", "kie-runway").subscriber(Subscriber::new("m-idle", DOWN)))
    };
    let changed = "media.store changed since the last start";
    for (store, warned) in [(&old, false), (&old, false), (&new, true), (&new, false)] {
        let mut bin = Bin::start(&cfg(store).write(), &[]);
        // Logged after the media store is known.
        log_until(|| bin.log_text(), "admin API listening", secs(10)).await;
        let log = bin.log_text();
        bin.kill9();
        let line = log.lines().find(|l| l.contains(changed));
        assert_eq!(line.is_some(), warned, "{store:?}: {log}");
        if let Some(line) = line {
            assert!(
                line.contains("media-a") && line.contains("media-b") && line.contains("neither served nor deleted"),
                "{line}"
            );
        }
    }
}

/// A reload that moved the media store is what the next start compares
/// with: a restart with the store the reload chose says nothing.
#[tokio::test]
async fn a_restart_after_a_reload_that_moved_the_media_store_compares_with_the_reloaded_one() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("media-a"), dir.path().join("media-b"));
    let cfg = |m: &Path| {
        media_config(dir.path(), Media::new().dir(m))
            .route(preset_route("m", "kie-runway").subscriber(Subscriber::new("m-idle", DOWN)))
    };
    let mut bin = Bin::start(&cfg(&old).write(), &[]);
    log_until(|| bin.log_text(), "admin API listening", secs(10)).await;
    cfg(&new).write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "configuration reloaded", secs(10)).await;
    bin.kill9();
    let bin = Bin::start(&cfg(&new).write(), &[]);
    log_until(|| bin.log_text(), "admin API listening", secs(10)).await;
    assert!(!bin.log_text().contains("media.store changed"), "{}", bin.log_text());
}

/// A reload that changes `store.path` leaves what follows it with the store
/// in use until the restart: the media archive's default directory under
/// it, and the floor measured on its disk (the archive moved at once,
/// making the new directory; then its floor fell to `media.min_free` alone,
/// the new path being on no disk yet).
#[tokio::test]
async fn a_changed_store_path_keeps_the_default_media_directory_until_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", DOWN))
        .min_free(512 << 20)
        .raw(|t| {
            let mut media = toml::Table::new();
            media.insert("min_free".into(), "1MiB".into());
            t.insert("media".into(), media.into());
        });
    let bin = Bin::start(&base.write(), &[]);
    let (status, before) = admin(bin.admin, "GET", "/api/media").await;
    assert_eq!(status, StatusCode::OK, "{before}");
    let moved = dir.path().join("moved-store");
    let path = moved.display().to_string();
    base.clone()
        .raw(move |t| {
            t["store"]
                .as_table_mut()
                .unwrap()
                .insert("path".into(), path.clone().into());
        })
        .edit_route("t", |r| r.path("/hooks/new"))
        .write();
    bin.signal("HUP");
    until_new_route_answers(&bin).await;
    let log = bin.log_text();
    assert!(
        log.contains("store.path changed; it takes effect after a restart"),
        "{log}"
    );
    assert!(!log.contains("media.store changed"), "{log}");
    assert!(!moved.exists(), "the new store path was used before the restart");
    let (_, after) = admin(bin.admin, "GET", "/api/media").await;
    assert_eq!(
        after["store"], before["store"],
        "the archive's directory or floor changed"
    );
}
