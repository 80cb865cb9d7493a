//! The media archive's store in cluster mode, against one real NATS server.
//!
//! An archiver's outcome is written only over the row it took its work
//! from. A relay that stalled past `takeover` while it fetched a URL (its
//! hold lapsed, another relay took the work and finished it) found the row
//! stored or failed by then and wrote its own stale try over it: a retry
//! left the URL pending under a message already acknowledged, so nothing
//! ever fetched it again and its file was no longer named. Each take now
//! writes the row, so the stalled take's outcome is dropped whichever of
//! the two ends first (with only the row read at take, a stalled relay
//! ending first won and the other relay's file was dropped).
//!
//! An operator's retry of an event whose media waits for the callback's
//! verification finds nothing of the archive's to retry (the API's `409`).

use crate::ingest::contested::crash_tests::{event, open_nats, rt, NatsServer};
use crate::store::*;

const URL: &str = "https://cdn.example/stalled.mp4";

async fn take_one(source: &mut MediaSource) -> MediaWork {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(w) = source.take(1, crate::clock::now_ms()).await.unwrap().pop() {
            return w;
        }
        assert!(std::time::Instant::now() < end, "the media work never came");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn stored(sha: &str) -> MediaOutcome {
    MediaOutcome::Stored(StoredFile {
        location: format!("/media/{sha}"),
        sha256: sha.repeat(32),
        size: 3,
        content_type: Some("video/mp4".into()),
    })
}

fn retry() -> MediaOutcome {
    MediaOutcome::Retry {
        due_ms: crate::clock::now_ms() + 60_000,
        error: "connection reset".into(),
    }
}

/// A relay takes a URL's work, then stops holding it (as a relay paused
/// past `takeover` does) and another relay takes it; the two outcomes are
/// recorded, the stalled relay's (`stalled_try`) first when
/// `stalled_first`. The URL's media as it ends, and the files released to
/// media retention.
fn two_takes(stalled_first: bool, stalled_try: MediaOutcome) -> (Vec<MediaItem>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    rt().block_on(async {
        let stalled = open_nats(&nats.1).await;
        let other = open_nats(&nats.1).await;
        let mut e = event(Origin::Callback, URL, None);
        e.media = vec![URL.to_string()];
        let id = stalled.append(e).await.unwrap().id;
        let mut source = stalled.media_source();
        let late = take_one(&mut source).await;
        drop(source);
        let mut elsewhere = other.media_source();
        let work = take_one(&mut elsewhere).await;
        if stalled_first {
            stalled.record_media(&late.ticket, stalled_try).await.unwrap();
            other.record_media(&work.ticket, stored("ab")).await.unwrap();
        } else {
            other.record_media(&work.ticket, stored("ab")).await.unwrap();
            stalled.record_media(&late.ticket, stalled_try).await.unwrap();
        }
        let media = other.event_media(id).await.unwrap().unwrap();
        let (_, released) = other.sweep_media(0).await.unwrap();
        stalled.close().await;
        other.close().await;
        (media, released)
    })
}

#[test]
fn a_stalled_archivers_try_does_not_overwrite_the_work_another_relay_finished() {
    for stalled_first in [false, true] {
        let (media, released) = two_takes(stalled_first, retry());
        assert!(
            matches!(&media[0].state, MediaState::Stored(f) if f.sha256 == "ab".repeat(32)),
            "stalled relay first: {stalled_first}: {media:?}"
        );
        assert_eq!(released, Vec::<String>::new());
    }
    // A file the stalled relay stored, not the one the row names: released.
    let (media, released) = two_takes(false, stored("cd"));
    assert!(
        matches!(&media[0].state, MediaState::Stored(f) if f.sha256 == "ab".repeat(32)),
        "{media:?}"
    );
    assert_eq!(released, ["cd".repeat(32)]);
    // Stored while the other relay still works on the URL (most likely the
    // same bytes, which it records): not released.
    let (media, released) = two_takes(true, stored("ab"));
    assert!(matches!(&media[0].state, MediaState::Stored(_)), "{media:?}");
    assert_eq!(released, Vec::<String>::new());
}

#[test]
fn an_operators_retry_waits_for_the_callbacks_verification() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    rt().block_on(async {
        let s = open_nats(&nats.1).await;
        let mut e = event(Origin::Callback, URL, None);
        e.media = vec![URL.to_string()];
        e.media_after_verify = true;
        let id = s.append(e).await.unwrap().id;
        assert_eq!(s.retry_media(id).await.unwrap(), None, "waits for its verification");
        s.add_verified_media(id, "runway", vec![URL.into()]).await.unwrap();
        assert_eq!(s.retry_media(id).await.unwrap(), Some(0), "pending, not failed");
        s.close().await;
    });
}

/// A callback of its own naming `url`, and its media work taken.
async fn named(s: &Store, source: &mut MediaSource, url: &str) -> MediaWork {
    use sha2::{Digest, Sha256};
    let mut e = event(Origin::Callback, url, None);
    e.dedupe_hash = Sha256::digest(url.as_bytes()).into();
    e.media = vec![url.to_string()];
    s.append(e).await.unwrap();
    let w = take_one(source).await;
    assert_eq!(w.url, url);
    w
}

/// Archive `url` (its own event) as a file whose digest is `sha` repeated.
async fn archive(s: &Store, source: &mut MediaSource, url: &str, sha: &str) {
    let w = named(s, source, url).await;
    s.record_media(&w.ticket, stored(sha)).await.unwrap();
    source.done(&w.ticket).await;
}

/// Review of stop 55: media retention read the URL rows through a listing
/// cut at `SCAN_LIMIT` rows, the rows written longest ago first, so a URL
/// archived lately to the same bytes as one retention forgets was not seen:
/// the file it names was released and deleted. Every row is read now.
#[test]
fn retention_keeps_a_file_named_by_a_row_past_a_listings_limit() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    rt().block_on(async {
        let s = open_nats(&nats.1).await;
        let mut source = s.media_source();
        // The same bytes under two URLs: the first row written and the last.
        archive(&s, &mut source, "https://cdn.example/old/same.mp4", "dd").await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let cutoff = crate::clock::now_ms();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        for i in 0..super::media::SCAN_LIMIT {
            let url = format!("https://cdn.example/filler/{i:03}.png");
            archive(&s, &mut source, &url, &format!("{i:02x}")).await;
        }
        archive(&s, &mut source, "https://cdn.example/new/same.mp4", "dd").await;
        let (removed, _released) = s.sweep_media(cutoff).await.unwrap();
        assert_eq!(removed, 1, "the old URL is forgotten");
        // Released or not, the check under its lock before a deletion finds it named.
        let same = "dd".repeat(32);
        let named = s.media_referenced(vec![same.clone()]).await.unwrap();
        assert!(named.contains(&same), "{named:?}");
        assert!(s.media_file(same).await.unwrap().is_some(), "its file row is gone");
        s.close().await;
    });
}

/// Review of stop 55: a try whose URL row was written `stored` and whose
/// file row was not (NATS failed in between) left the file unservable for
/// good: the work, back after `takeover`, found its row final and was
/// settled without the file row. It writes the file row now.
#[test]
fn a_file_row_left_unwritten_is_written_when_the_work_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    rt().block_on(async {
        let s = open_nats(&nats.1).await;
        let mut source = s.media_source();
        let w = named(&s, &mut source, URL).await;
        super::media::FAIL_FILE_ROW.with(|f| f.set(true));
        assert!(s.record_media(&w.ticket, stored("ef")).await.is_err());
        let sha = "ef".repeat(32);
        assert!(s.media_file(sha.clone()).await.unwrap().is_none());
        // The message comes again after `takeover` (1 s here).
        let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while s.media_file(sha.clone()).await.unwrap().is_none() {
            assert!(std::time::Instant::now() < end, "the file row was never written");
            assert!(
                source.take(1, crate::clock::now_ms()).await.unwrap().is_empty(),
                "final: no new try"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        s.close().await;
    });
}

/// Review of stop 55: a retention pass cut short after it purged a URL row
/// and before it released its file (NATS failing, the relay stopping)
/// left the file for good: no later pass looked at a file no URL names.
/// The file is released before the row goes.
#[test]
fn a_retention_pass_cut_short_leaves_its_file_to_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    rt().block_on(async {
        let s = open_nats(&nats.1).await;
        let mut source = s.media_source();
        archive(&s, &mut source, "https://cdn.example/cut/short.mp4", "c5").await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let cutoff = crate::clock::now_ms();
        super::media_sweep::FAIL_AFTER_PURGE.with(|f| f.set(true));
        assert!(s.sweep_media(cutoff).await.is_err());
        let (removed, released) = s.sweep_media(cutoff).await.unwrap();
        assert_eq!(removed, 0, "purged by the first pass");
        assert_eq!(released, ["c5".repeat(32)], "the file is left to nobody");
        s.close().await;
    });
}

/// The media review of stop 59, in cluster mode: a URL that failed under one
/// route and is named again by a callback of another route (with a provider
/// key) is tried as that route's, whose key refreshes it if it expired; an
/// operator's retry of the first event's media is the first route's again.
#[test]
fn a_failed_url_tried_again_for_another_route_is_that_routes() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    rt().block_on(async {
        let s = open_nats(&nats.1).await;
        s.register(&Topology {
            routes: vec![("runway".into(), vec!["s".into()]), ("keyed".into(), vec!["k".into()])],
        })
        .await
        .unwrap();
        let mut source = s.media_source();
        let failed = || MediaOutcome::Failed { error: "gone".into() };
        let mut e = event(Origin::Callback, URL, None);
        e.media = vec![URL.to_string()];
        let first = s.append(e).await.unwrap().id;
        let w = take_one(&mut source).await;
        assert_eq!(w.route, "runway");
        s.record_media(&w.ticket, failed()).await.unwrap();
        source.done(&w.ticket).await;
        let mut keyed = event(Origin::Callback, URL, None);
        keyed.meta.route = "keyed".into();
        keyed.meta.subscribers = vec!["k".into()];
        keyed.media = vec![URL.to_string()];
        s.append(keyed).await.unwrap();
        let w = take_one(&mut source).await;
        assert_eq!((w.url.as_str(), w.route.as_str()), (URL, "keyed"));
        s.record_media(&w.ticket, failed()).await.unwrap();
        source.done(&w.ticket).await;
        assert_eq!(s.retry_media(first).await.unwrap(), Some(1));
        let w = take_one(&mut source).await;
        assert_eq!(w.route, "runway");
        s.close().await;
    });
}
