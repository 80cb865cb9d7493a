//! A reload while a callback's body is received, seen by that callback:
//! one that changed the route's checks (a leaked token revoked) refuses it
//! for a retry that the route in force checks (before, it was stored and
//! delivered: it had passed the checks of before the reload, up to
//! `read_timeout` earlier); one that renamed the route answers a duplicate
//! of a callback already stored as a duplicate (`200`), not `503` for a
//! retry that the renamed route, its dedupe history its own, would store
//! and deliver again, unless no route in force is there to check it (the
//! route renamed and moved: a request whose token that reload revoked
//! learns nothing).

use crate::common;

use common::*;
use http::StatusCode;

use crate::moved_route::{relay_with_a, route_renamed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_received_across_a_reload_that_revokes_its_token_is_refused() {
    let (_dir, a, base, h) = relay_with_a().await;
    let addr = h.ingest_addrs[0];
    let body = runway("across-the-revocation");
    let (c, tail) = common::client::half_sent_callback(addr, &body).await;
    // Begun under the config before the reload: its head is read.
    common::client::read_by_server(&c).await;
    base.clone().edit_route("t", |r| r.tokens(["fresh-token"])).write();
    h.reload().await.expect("reload");
    let answer = common::client::finish_half_sent(c, &tail).await.to_lowercase();
    assert!(
        answer.starts_with("http/1.1 503") && answer.contains("retry-after: 1\r\n"),
        "a callback sent with a token revoked while it was received was taken: {answer}"
    );
    // Its retry, with the revoked token, is refused; with the new one, taken.
    let (s, got) = callback(addr, &body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{got}");
    let (s, got) = callback_at(addr, "/hooks/t?token=fresh-token", &body).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    a.wait_for(secs(10), "the callback", |r| r.len() == 1).await;
    tokio::time::sleep(ms(300)).await;
    assert_eq!(a.all().len(), 1, "delivered once");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_received_across_a_route_rename_is_answered_as_a_duplicate() {
    let (_dir, a, base, h) = relay_with_a().await;
    let addr = h.ingest_addrs[0];
    let body = runway("stored-then-retried-across-the-rename");
    let id = accepted(addr, &body).await;
    a.wait_for(secs(10), "the callback", |r| r.len() == 1).await;
    // The provider's retry of it (its answer was lost) spans a rename.
    let (c, tail) = common::client::half_sent_callback(addr, &body).await;
    // Begun under the config before the reload: its head is read.
    common::client::read_by_server(&c).await;
    route_renamed(&base, "t_renamed").write();
    h.reload().await.expect("reload");
    let answer = common::client::finish_half_sent(c, &tail).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains(&id) && answer.contains(r#""duplicate":true"#),
        "a duplicate of a stored callback was not answered as one: {answer}"
    );
    tokio::time::sleep(ms(300)).await;
    assert_eq!(a.all().len(), 1, "delivered once");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_received_across_a_reload_that_leaves_no_route_to_check_it_is_refused() {
    let (_dir, a, base, h) = relay_with_a().await;
    let addr = h.ingest_addrs[0];
    let body = runway("stored-then-retried-across-the-move");
    accepted(addr, &body).await;
    a.wait_for(secs(10), "the callback", |r| r.len() == 1).await;
    let (c, tail) = common::client::half_sent_callback(addr, &body).await;
    // Begun under the config before the reload: its head is read.
    common::client::read_by_server(&c).await;
    // Renamed and moved: no route in force by its name or its path.
    route_renamed(&base.clone().edit_route("t", |r| r.path("/hooks/elsewhere")), "t_moved").write();
    h.reload().await.expect("reload");
    let answer = common::client::finish_half_sent(c, &tail).await;
    assert!(
        answer.starts_with("HTTP/1.1 503"),
        "answered for a route no longer there to check it: {answer}"
    );
    h.shutdown().await;
}
