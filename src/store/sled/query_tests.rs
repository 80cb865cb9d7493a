//! Listings of the embedded store: a filter that matches few events stops
//! after [`super::query::SCAN_BUDGET`] events left out (20 in tests), and
//! following its `cut_at` reaches every match.

use std::sync::Arc;

use super::query::SCAN_BUDGET;
use super::tests::{event, opts};
use crate::store::*;

/// 50 events on two routes, alternating; the tasks `t0` and `t45` match.
async fn two_routes(dir: &std::path::Path) -> (Store, Vec<EventId>) {
    let store = Store::open_sled(&opts(dir)).unwrap();
    let topology = Topology {
        routes: vec![("runway".into(), vec!["a".into()]), ("kling".into(), vec!["b".into()])],
    };
    store.register(&topology).await.unwrap();
    let now = crate::clock::now_ms();
    let mut ids = Vec::new();
    for i in 0..50u64 {
        let mut e = event(&format!("t{i}"), &["a"], now + i);
        if i % 2 == 1 {
            e.meta.route = "kling".into();
            e.meta.subscribers = vec!["b".into()];
        }
        ids.push(store.append(e).await.unwrap().id);
    }
    (store, ids)
}

fn wanted() -> EventFilter {
    EventFilter(Arc::new(|ev: &Event| {
        let body = String::from_utf8_lossy(&ev.body);
        body.contains("\"t0\"") || body.contains("\"t45\"")
    }))
}

#[tokio::test]
async fn a_filter_matching_few_events_stops_at_its_budget_and_goes_on_from_its_cut() {
    assert_eq!(SCAN_BUDGET, 20);
    let dir = tempfile::tempdir().unwrap();
    let (store, ids) = two_routes(dir.path()).await;
    let page = |before: Option<EventId>| {
        store.recent_events(EventQuery {
            matching: Some(wanted()),
            before,
            limit: 10,
            ..Default::default()
        })
    };
    // Newest first: t49..t46 left out (4), t45 listed, t44..t29 left out
    // (16 more: 20), stopped there; t29 the last looked at.
    let first = page(None).await.unwrap();
    let listed: Vec<EventId> = first.events.iter().map(|l| l.view.event.id).collect();
    assert_eq!(listed, [ids[45]]);
    assert_eq!(first.cut_at, Some(ids[29]));
    // The next page walks on below it: t28..t9 left out, cut at t9.
    let second = page(first.cut_at).await.unwrap();
    assert!(second.events.is_empty());
    assert_eq!(second.cut_at, Some(ids[9]));
    // The last: t8..t1 left out, t0 listed, the log's end: no cut.
    let third = page(second.cut_at).await.unwrap();
    let listed: Vec<EventId> = third.events.iter().map(|l| l.view.event.id).collect();
    assert_eq!(listed, [ids[0]]);
    assert_eq!(third.cut_at, None);
    store.close().await;
}

#[tokio::test]
async fn events_listed_do_not_count_against_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ids) = two_routes(dir.path()).await;
    // Unfiltered, a page of 40 (more than the budget) is full, the walk
    // not cut; one route's 25 likewise, the other route's never looked at.
    let all = store
        .recent_events(EventQuery {
            limit: 40,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.events.len(), 40);
    assert_eq!(all.events.last().unwrap().view.event.id, ids[10]);
    assert_eq!(all.cut_at, None);
    let kling = store
        .recent_events(EventQuery {
            route: Some("kling".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(kling.events.len(), 25);
    assert_eq!(kling.cut_at, None);
    // By status: all 50 pending; "delivered" matches none: cut after 20.
    let delivered = store
        .recent_events(EventQuery {
            status: Some("delivered".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(delivered.events.is_empty());
    assert_eq!(delivered.cut_at, Some(ids[30]));
    store.close().await;
}
