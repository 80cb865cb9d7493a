//! Tests of [`super::Leases`]: who may hold and claim a message, and when
//! it expires, lapses and is offered again.

use std::time::Duration;

use super::*;

fn id(n: u64) -> EventId {
    EventId::from_parts(1_700_000_000_000 + n, 0)
}

fn with(n: u64) -> Leases<()> {
    let mut l = Leases::default();
    for i in 0..n {
        l.push_ready(id(i), (), 1);
    }
    l
}

#[test]
fn a_message_is_leased_to_one_puller_at_a_time() {
    let now = Instant::now();
    let mut l = with(3);
    let a = l.lease(2, "a", now, Duration::from_secs(60), 0);
    let b = l.lease(5, "b", now, Duration::from_secs(60), 0);
    assert_eq!(a, vec![id(0), id(1)]);
    assert_eq!(b, vec![id(2)], "only what a does not hold");
    assert_eq!(l.lease(5, "c", now, Duration::ZERO, 0), Vec::<EventId>::new());
    assert_eq!((l.leased(), l.ready()), (3, 0));
    assert!(l.holds(&id(2)) && !l.holds(&id(3)));
}

#[test]
fn what_fits_in_a_budget_is_counted_in_order_and_is_never_nothing() {
    let mut l = Leases::default();
    for (i, size) in [40usize, 40, 30, 5].into_iter().enumerate() {
        l.push_ready(id(i as u64), size, 1);
    }
    assert_eq!(l.fitting(10, 100, |s| *s), 2, "the third would pass 100");
    assert_eq!(l.fitting(1, 100, |s| *s), 1, "max counts too");
    assert_eq!(
        l.fitting(10, 10, |s| *s),
        1,
        "a message larger than the budget goes alone"
    );
    assert_eq!(l.fitting(10, 1000, |s| *s), 4);
    assert_eq!(Leases::<usize>::default().fitting(10, 100, |s| *s), 0);
    // What did not fit stays ready, first in line.
    l.lease(2, "a", Instant::now(), Duration::from_secs(1), 0);
    assert_eq!(l.ready_offers().map(|o| o.id).collect::<Vec<_>>(), vec![id(2), id(3)]);
}

#[test]
fn claims_are_all_or_nothing_and_only_for_the_holder() {
    let now = Instant::now();
    let mut l = with(3);
    l.lease(2, "a", now, Duration::from_secs(60), 0);
    l.lease(1, "b", now, Duration::from_secs(60), 0);
    // One id of b's and one never handed out: nothing changes.
    assert_eq!(
        l.claim("a", &[id(0), id(2), id(9)], now).unwrap_err(),
        vec![id(2), id(9)]
    );
    assert_eq!(l.leased(), 3);
    let got = l.claim("a", &[id(0), id(1)], now).unwrap();
    assert_eq!(
        got.iter().map(|(_, lapsed)| *lapsed).collect::<Vec<_>>(),
        vec![None, None]
    );
    assert_eq!(l.claim("a", &[id(0)], now).unwrap_err(), vec![id(0)], "claimed once");
    assert_eq!(l.leased(), 1);
}

#[test]
fn a_partial_claim_takes_what_the_holder_holds_and_names_the_rest() {
    let now = Instant::now();
    let mut l = with(3);
    l.lease(2, "a", now, Duration::from_secs(60), 0);
    l.lease(1, "b", now, Duration::from_secs(60), 0);
    let (got, others) = l.claim_held("a", &[id(0), id(2), id(9)], now);
    assert_eq!(got.iter().map(|x| x.0.offer.id).collect::<Vec<_>>(), vec![id(0)]);
    assert_eq!(
        others,
        vec![id(2), id(9)],
        "b's and one never handed out, in the order given"
    );
    assert_eq!((l.leased(), l.get(&id(2)).map(|x| x.holder.as_str())), (2, Some("b")));
    let (got, others) = l.claim_held("a", &[id(0), id(1)], now);
    assert_eq!((got.len(), others), (1, vec![id(0)]), "claimed once");
}

#[test]
fn expired_leases_are_taken_out_in_deadline_order() {
    let now = Instant::now();
    let mut l = with(3);
    l.lease(1, "a", now, Duration::from_secs(10), 7);
    l.lease(1, "a", now, Duration::from_secs(20), 8);
    assert_eq!(l.next_deadline(), Some(now + Duration::from_secs(10)));
    assert!(l.expire(now + Duration::from_secs(9)).is_empty());
    let gone = l.expire(now + Duration::from_secs(20));
    let got: Vec<_> = gone.iter().map(|x| (x.offer.id, x.offer.attempt, x.at_ms)).collect();
    assert_eq!(got, vec![(id(0), 1, 7), (id(1), 1, 8)], "with what their record needs");
    // An acknowledgement after expiry is refused; they are not offered again from here.
    assert_eq!(l.claim("a", &[id(0)], now).unwrap_err(), vec![id(0)]);
    assert_eq!((l.leased(), l.ready(), l.next_deadline()), (0, 1, None));
    assert!(!l.holds(&id(0)));
    assert_eq!(l.lease(3, "b", now, Duration::from_secs(60), 0), vec![id(2)]);
}

#[test]
fn a_lease_at_its_deadline_cannot_be_claimed() {
    let now = Instant::now();
    let mut l = with(1);
    l.lease(1, "a", now, Duration::ZERO, 0);
    assert_eq!(l.claim("a", &[id(0)], now).unwrap_err(), vec![id(0)]);
}

#[test]
fn hand_outs_that_reached_nobody_keep_their_attempt() {
    let now = Instant::now();
    let mut l = with(2);
    let ids = l.lease(2, "a", now, Duration::from_secs(5), 0);
    l.give_back(&ids);
    assert_eq!((l.leased(), l.ready(), l.next_deadline()), (0, 2, None));
    assert_eq!(l.lease(1, "b", now, Duration::ZERO, 0), vec![id(0)]);
    assert_eq!(l.get(&id(0)).unwrap().offer.attempt, 1);
    assert_eq!(l.drain().len(), 2);
}

#[test]
fn a_lapsed_lease_is_offered_to_nobody_and_claimable_by_its_holder_until_its_lapse_ends() {
    let now = Instant::now();
    let mut l = with(2);
    l.lease(2, "a", now, Duration::from_secs(10), 0);
    let mut gone = l.expire(now + Duration::from_secs(10));
    assert_eq!(gone.len(), 2);
    let end = now + Duration::from_secs(15);
    l.lapse(gone.pop().unwrap(), end, 7);
    l.lapse(gone.pop().unwrap(), end, 7);
    assert_eq!(l.next_deadline(), Some(end));
    assert!(l.holds(&id(0)) && l.holds(&id(1)), "not taken from the store again");
    assert!(
        l.lease(5, "b", now, Duration::from_secs(10), 0).is_empty(),
        "offered to nobody"
    );
    assert_eq!(l.claim("b", &[id(0)], now).unwrap_err(), vec![id(0)], "only its holder");
    let late = l.claim("a", &[id(0)], now + Duration::from_secs(12)).unwrap();
    assert_eq!(
        (late[0].0.offer.id, late[0].0.length, late[0].1),
        (id(0), Duration::from_secs(10), Some(Lapse { end, due_ms: 7 })),
        "with when the retry of its expiry is due"
    );
    assert!(l.lapses_over(now + Duration::from_secs(14)).is_empty());
    let over = l.lapses_over(end);
    assert_eq!(
        over.iter().map(|(x, due)| (x.offer.id, *due)).collect::<Vec<_>>(),
        vec![(id(1), 7)]
    );
    assert_eq!((l.next_deadline(), l.holds(&id(1))), (None, false));
    assert_eq!(
        l.claim("a", &[id(1)], end).unwrap_err(),
        vec![id(1)],
        "over: no longer claimable"
    );
}

#[test]
fn a_claimed_lease_put_back_is_as_it_was() {
    let now = Instant::now();
    let end = now + Duration::from_secs(15);
    let mut l = with(2);
    l.lease(2, "a", now, Duration::from_secs(10), 5);
    let claimed = l.claim("a", &[id(0), id(1)], now).unwrap();
    assert_eq!((l.leased(), l.holds(&id(0))), (0, false));
    for c in claimed {
        l.restore(c);
    }
    assert_eq!(l.leased(), 2, "leased again");
    let back = l.get(&id(0)).unwrap();
    assert_eq!(
        (back.holder.as_str(), back.until, back.at_ms),
        ("a", now + Duration::from_secs(10), 5),
        "same holder, deadline and hand-out"
    );
    assert!(
        l.lease(5, "b", now, Duration::from_secs(10), 0).is_empty(),
        "offered to nobody else"
    );
    assert_eq!(l.claim("b", &[id(0)], now).unwrap_err(), vec![id(0)], "only its holder");
    // It expires at its own deadline, as if never claimed.
    assert!(l.expire(now + Duration::from_secs(9)).is_empty());
    assert_eq!(l.expire(now + Duration::from_secs(10)).len(), 2);

    // A lapsed one goes back to its lapse: same end, same due retry.
    let mut l = with(1);
    l.lease(1, "a", now, Duration::from_secs(10), 0);
    let gone = l.expire(now + Duration::from_secs(10)).pop().unwrap();
    l.lapse(gone, end, 7);
    let claimed = l.claim("a", &[id(0)], now + Duration::from_secs(12)).unwrap();
    for c in claimed {
        l.restore(c);
    }
    assert_eq!((l.leased(), l.holds(&id(0)), l.next_deadline()), (0, true, Some(end)));
    let over = l.lapses_over(end);
    assert_eq!(
        over.iter().map(|(x, due)| (x.offer.id, *due)).collect::<Vec<_>>(),
        vec![(id(0), 7)]
    );
}

#[test]
fn a_pinned_lease_outlives_its_deadline_for_a_claim_that_came_in_time() {
    let now = Instant::now();
    let mut l = with(3);
    l.lease(3, "a", now, Duration::from_secs(1), 0);
    let came = now + Duration::from_millis(500);
    // id(2)'s claim came after its deadline: not pinned.
    l.pin(&[id(0), id(1)], came, "a");
    l.pin(&[id(2)], now + Duration::from_secs(2), "a");
    // Another puller's acknowledgement pins nothing of a's.
    l.pin(&[id(2)], came, "b");
    assert_eq!(
        l.next_deadline(),
        Some(now + Duration::from_secs(1)),
        "only id(2) wakes"
    );
    let later = now + Duration::from_secs(3);
    let expired: Vec<EventId> = l.expire(later).iter().map(|x| x.offer.id).collect();
    assert_eq!(expired, vec![id(2)]);
    assert_eq!(l.next_deadline(), None, "nothing wakes for a pinned lease");
    // Judged when the claim came, not now.
    assert!(l.claim("a", &[id(0)], later).is_err());
    assert_eq!(l.claim("a", &[id(0)], came).map(|c| c.len()), Ok(1));
    // Unpinned, it expires at its deadline again.
    l.unpin(&[id(0), id(1)]);
    let expired: Vec<EventId> = l.expire(later).iter().map(|x| x.offer.id).collect();
    assert_eq!(expired, vec![id(1)]);
}
