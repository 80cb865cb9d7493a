//! Large bodies in rows of their own ([`super::body_rows`]): delivered,
//! shown and removed whole, byte for byte, and a schema 2 store raised to 3
//! so an older hookrelay refuses it.

use bytes::Bytes;

use super::tests::{deliver_all, event, open, opts, topology};
use super::{codec, keys, read_lock, SledStore};
use crate::store::NewEvent;

fn with_body(task: &str, len: usize) -> NewEvent {
    let mut ev = event(task, &["a"], crate::clock::now_ms() - 30 * 86_400_000);
    ev.body = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    ev
}

fn rows_with_tag(s: &SledStore, tag: u8) -> usize {
    s.inner.tree.scan_prefix([tag]).count()
}

#[tokio::test]
async fn large_bodies_are_delivered_shown_and_removed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [
        0,
        100,
        super::body_rows::INLINE_MAX,
        super::body_rows::INLINE_MAX + 1,
        100_000,
        1 << 20,
    ];
    let mut ids = Vec::new();
    {
        let store = open(dir.path(), &["a"]).await;
        for (i, len) in sizes.iter().enumerate() {
            ids.push(store.append(with_body(&format!("t{i}"), *len)).await.unwrap().id);
        }
        for (id, len) in ids.iter().zip(sizes) {
            let ev = store.event(*id).await.unwrap().expect("stored");
            assert_eq!(ev.body, with_body("x", len).body, "{len} bytes shown whole");
        }
        store.close().await;
    }
    let s = SledStore::open(&opts(dir.path())).unwrap();
    s.register(&topology(&["a"])).await.unwrap();
    // A part per 4 KiB of each body over 8 KiB, and its log row small.
    let parts: usize = [8193usize, 100_000, 1 << 20]
        .iter()
        .map(|n| n.div_ceil(super::body_rows::PART))
        .sum();
    assert_eq!(rows_with_tag(&s, keys::B), parts);
    let route = read_lock(&s.inner.registry).route("runway").unwrap();
    let row = s.inner.tree.get(keys::log(route, ids[5])).unwrap().unwrap();
    assert!(row.len() < 100, "a 1 MiB body's log row holds {} bytes", row.len());
    assert_eq!(codec::decode_header(&row).unwrap().1, codec::BodyAt::Rows(1 << 20));
    s.close().await;
    drop(s);
    let store = open(dir.path(), &["a"]).await;
    let mut src = store.work_source("a").unwrap();
    let mut got = Vec::new();
    for w in src.take(16, crate::clock::now_ms()).await.unwrap() {
        got.push((w.event.id, w.event.body.clone()));
    }
    assert_eq!(got.len(), sizes.len());
    for ((id, body), len) in got.iter().zip(sizes) {
        assert_eq!(body, &with_body("x", len).body, "{id}: {len} bytes sent whole");
    }
    drop(src);
    let mut src = store.work_source("a").unwrap();
    deliver_all(&store, &mut src, crate::clock::now_ms()).await;
    // Retention removes the parts with their events.
    assert_eq!(store.sweep(crate::clock::now_ms()).await.unwrap(), sizes.len());
    drop(src);
    store.close().await;
    drop(store);
    let s = SledStore::open(&opts(dir.path())).unwrap();
    assert_eq!(rows_with_tag(&s, keys::B), 0, "parts left behind");
    s.close().await;
}

#[tokio::test]
async fn a_schema_2_store_is_raised_to_3_so_an_older_hookrelay_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(&opts(dir.path())).unwrap();
        s.inner.tree.insert(keys::VERSION_KEY, &2u32.to_be_bytes()).unwrap();
        s.close().await;
    }
    let s = SledStore::open(&opts(dir.path())).unwrap();
    let v = s.inner.tree.get(keys::VERSION_KEY).unwrap().unwrap();
    assert_eq!(v.as_ref(), 3u32.to_be_bytes());
    s.close().await;
}

/// A store with one event whose body is in three parts, received `now`.
async fn one_event_in_parts(dir: &std::path::Path) -> (SledStore, crate::store::EventId, u64) {
    let s = SledStore::open(&opts(dir)).unwrap();
    s.register(&topology(&["a"])).await.unwrap();
    let now = crate::clock::now_ms();
    let mut ev = with_body("t1", 3 * super::body_rows::PART);
    ev.meta.received_ms = now;
    let id = s.append(ev).await.unwrap().id;
    (s, id, now)
}

/// Its second part torn (cut to four bytes) or missing.
fn damage_part(s: &SledStore, route: u32, id: crate::store::EventId, damage: &str) {
    let part = keys::body_part(route, id, 1);
    match damage {
        "torn" => s.inner.tree.insert(part, b"torn".to_vec()).map(drop).unwrap(),
        _ => s.inner.tree.remove(part).map(drop).unwrap(),
    }
}

/// A waiting retry of an event whose body rows are damaged (a part torn or
/// missing while its log row is there): dead-lettered with the error, as an
/// unreadable log row is. It failed every take of the lane instead (a torn
/// part: no later delivery of the subscriber went out, for ever), or was
/// taken for removed by retention and forgotten (a missing part: `Gone`,
/// its result left `Retrying`, never listed).
#[tokio::test]
async fn a_retry_whose_body_rows_are_damaged_is_dead_lettered() {
    use crate::store::{Outcome, Ticket};
    for damage in ["torn", "missing"] {
        let dir = tempfile::tempdir().unwrap();
        let (s, id, now) = one_event_in_parts(dir.path()).await;
        let mut c = s.work_source("a").unwrap();
        let w = c.take(10, now).await.unwrap().remove(0);
        let Ticket::Sled(t) = &w.ticket else {
            panic!("not a sled ticket")
        };
        s.record(
            t,
            Some(super::tests::attempt(1, 503, now)),
            Outcome::Retry { due_ms: now },
        )
        .await
        .unwrap();
        c.done(t).await;
        damage_part(&s, t.route, id, damage);
        // A later event of the subscriber still goes out.
        let mut later = with_body("t2", 10);
        later.meta.received_ms = now + 1;
        let next = s.append(later).await.unwrap().id;
        let got = c.take(10, now + 2).await.unwrap_or_else(|e| panic!("{damage}: {e}"));
        assert_eq!(got.iter().map(|w| w.event.id).collect::<Vec<_>>(), [next], "{damage}");
        let dead = s.dead_letters(Some("a"), 10).unwrap();
        assert_eq!(
            dead.letters.iter().map(|d| d.event).collect::<Vec<_>>(),
            [id],
            "{damage}: not dead-lettered"
        );
        assert!(
            dead.letters[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("unreadable")),
            "{damage}: {:?}",
            dead.letters[0].last_error
        );
        s.close().await;
    }
}

/// An event read from the log whose body rows are damaged is skipped (as an
/// unreadable log row is), without failing the take: the events after it
/// still go out.
#[tokio::test]
async fn an_event_whose_body_rows_are_damaged_does_not_fail_the_lane() {
    for damage in ["torn", "missing"] {
        let dir = tempfile::tempdir().unwrap();
        let (s, id, now) = one_event_in_parts(dir.path()).await;
        let mut later = with_body("t2", 10);
        later.meta.received_ms = now + 1;
        let next = s.append(later).await.unwrap().id;
        let route = read_lock(&s.inner.registry).route("runway").unwrap();
        damage_part(&s, route, id, damage);
        let mut c = s.work_source("a").unwrap();
        let got = c.take(10, now + 2).await.unwrap_or_else(|e| panic!("{damage}: {e}"));
        assert_eq!(got.iter().map(|w| w.event.id).collect::<Vec<_>>(), [next], "{damage}");
        s.close().await;
    }
}

/// A listing filtered by status reads the body only of the events the
/// status lets through (it read every one first: a status matching few
/// events read the whole store at each of the console's refreshes). The
/// body parts removed here, as if unreadable: a read would say so.
#[tokio::test]
async fn a_listing_by_status_reads_no_body_of_an_event_it_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &["a"]).await;
    let id = store.append(with_body("big", 100_000)).await.unwrap().id;
    let s = super::tests::sled(&store);
    let route = read_lock(&s.inner.registry).route("runway").unwrap();
    let row = s.inner.tree.get(keys::log(route, id)).unwrap().unwrap();
    let at = codec::decode_header(&row).unwrap().1;
    for k in super::body_rows::part_keys(route, id, at) {
        s.inner.tree.remove(k).unwrap();
    }
    let listed = |status: &str| {
        s.recent_events(&crate::store::EventQuery {
            status: Some(status.into()),
            limit: 10,
            ..Default::default()
        })
    };
    assert!(listed("dead").unwrap().events.is_empty(), "a pending event is not dead");
    assert!(listed("pending").is_err(), "a listed event's body is read");
    store.close().await;
}
