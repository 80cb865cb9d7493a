//! Tests of the connection cap, the clients' shares and the crowding.

use super::*;

#[tokio::test]
async fn the_cap_follows_its_limit() {
    let limit = ConnLimit::new(1);
    let (first, _) = limit.acquire().await;
    let waiting = tokio::spawn({
        let limit = limit.clone();
        async move { limit.acquire().await.0 }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    limit.set_limit(2);
    let second = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .unwrap()
        .unwrap();
    // Lowered below what is open: nothing new until enough have closed.
    limit.set_limit(1);
    let third = tokio::spawn({
        let limit = limit.clone();
        async move { limit.acquire().await.0 }
    });
    drop(first);
    tokio::task::yield_now().await;
    assert!(!third.is_finished(), "two were open, the cap is one");
    drop(second);
    tokio::time::timeout(Duration::from_secs(1), third)
        .await
        .unwrap()
        .unwrap();
}

/// A connection waiting for a slot crowds the listeners (the call that
/// began it says so) until a sixteenth of the slots is free: not after
/// each slot, which would wake every connection at each accept.
#[tokio::test]
async fn a_wait_for_a_slot_crowds_the_listeners_until_a_sixteenth_is_free() {
    let limit = ConnLimit::new(32);
    let crowding = limit.crowding();
    let mut held = Vec::new();
    for _ in 0..32 {
        let (p, began) = limit.acquire().await;
        assert!(!began);
        held.push(p);
    }
    assert!(!*crowding.borrow());
    let waiting = tokio::spawn({
        let limit = limit.clone();
        async move { limit.acquire().await }
    });
    while !*crowding.borrow() {
        tokio::task::yield_now().await;
    }
    held.pop();
    let (p, began) = waiting.await.unwrap();
    assert!(began, "the waiting call began the crowding");
    held.push(p);
    held.pop();
    assert!(*crowding.borrow(), "one slot free of 32: still crowded");
    held.pop();
    assert!(!*crowding.borrow(), "two free: no longer");
    // The cap raised past what is open ends a crowding too.
    let (p, _) = limit.acquire().await;
    held.push(p);
    let (p, _) = limit.acquire().await;
    held.push(p);
    let waiting = tokio::spawn({
        let limit = limit.clone();
        async move { limit.acquire().await }
    });
    while !*crowding.borrow() {
        tokio::task::yield_now().await;
    }
    limit.set_limit(64);
    assert!(!*crowding.borrow());
    assert!(waiting.await.unwrap().1);
}

/// The public listeners' cap and the admin listener's each warn once a
/// minute: crowding one does not hide the other (review, stop 68).
#[test]
fn each_cap_warns_of_its_crowding_once_a_minute() {
    let (public, admin) = (ConnLimit::new(8), ConnLimit::new(8));
    assert_eq!(admin.crowding_noted(), Some(0));
    assert_eq!(admin.crowding_noted(), None);
    assert_eq!(public.crowding_noted(), Some(0));
    assert_eq!(admin.crowding_noted(), None);
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn one_client_holds_at_most_a_quarter_and_gets_it_back_on_close() {
    let limit = ConnLimit::new(8);
    assert_eq!(share_of(8), 2);
    let a1 = limit.acquire().await.0.claim(ip("192.0.2.1")).unwrap();
    let a2 = limit.acquire().await.0.claim(ip("192.0.2.1")).unwrap();
    // Past its share: refused, and the global slot it took is free again.
    let refused = limit.acquire().await.0.claim(ip("192.0.2.1")).err();
    assert_eq!(refused, Some(OverShare { share: 2, warn: true }));
    assert_eq!(limit.open.load(Ordering::Acquire), 2);
    // The IPv4-mapped form of the address is the same client; the next
    // refusal within a minute is not logged at warn again.
    let refused = limit.acquire().await.0.claim(ip("::ffff:192.0.2.1")).err();
    assert_eq!(refused, Some(OverShare { share: 2, warn: false }));
    // Others have their own share.
    let b = limit.acquire().await.0.claim(ip("192.0.2.2")).unwrap();
    // A closed connection gives its client's slot back.
    drop(a1);
    assert_eq!(limit.held_by(Client::of(Some(ip("192.0.2.1")))), 1);
    let a3 = limit.acquire().await.0.claim(ip("192.0.2.1")).unwrap();
    drop((a2, a3, b));
    assert!(limit.shares().held.is_empty(), "no entry left for clients holding none");
    assert_eq!(limit.open.load(Ordering::Acquire), 0);
}

#[tokio::test]
async fn an_ipv6_slash_64_is_one_client() {
    let limit = ConnLimit::new(4);
    let one = limit.acquire().await.0.claim(ip("2001:db8:0:1::1")).unwrap();
    // Another address in the same /64: the same client, whose share is one.
    assert!(limit.acquire().await.0.claim(ip("2001:db8:0:1:ffff::2")).is_err());
    // The next /64 is another client.
    let other = limit.acquire().await.0.claim(ip("2001:db8:0:2::1")).unwrap();
    drop(one);
    let again = limit.acquire().await.0.claim(ip("2001:db8:0:1:ffff::2")).unwrap();
    drop((other, again));
    assert!(limit.shares().held.is_empty());
}

#[test]
fn the_share_is_a_quarter_rounded_up() {
    assert_eq!(share_of(4096), 1024);
    assert_eq!(share_of(64), 16);
    assert_eq!(share_of(9), 3);
    assert_eq!(share_of(2), 1);
    assert_eq!(share_of(1), 1);
}

#[tokio::test]
async fn a_lowered_cap_lowers_the_share_and_keeps_what_is_held() {
    let limit = ConnLimit::new(8);
    let mut permits = Vec::new();
    for _ in 0..2 {
        permits.push(limit.acquire().await.0.claim(ip("192.0.2.1")).unwrap());
    }
    limit.set_limit(4);
    assert!(
        limit.acquire().await.0.claim(ip("192.0.2.1")).is_err(),
        "share now 1, holds 2"
    );
    drop(permits.pop());
    assert!(limit.acquire().await.0.claim(ip("192.0.2.1")).is_err(), "holds 1");
    drop(permits);
    assert!(limit.acquire().await.0.claim(ip("192.0.2.1")).is_ok());
}
