//! A reload is judged by the listeners as they are bound, not by the new
//! file's `listen` addresses (a reload does not move listeners: they move at
//! the next restart): a file that puts the admin API or the public listener
//! on loopback cannot drop the admin token, or bring back the shipped
//! example token, while they still listen where other hosts can reach them.

use crate::common;

use std::net::{Ipv4Addr, SocketAddr};

use common::*;
use http::StatusCode;

/// The same port on 127.0.0.1 (the tests send nowhere else).
fn loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
}

/// Stop 53's review: the reload validated the file's `admin.listen`
/// (loopback, where no token is needed) and applied it, the API still bound
/// to 0.0.0.0: it then answered anyone there without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_cannot_drop_the_admin_token_while_the_api_listens_publicly() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let base = || TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let h = start(&base().admin_listen("0.0.0.0:0").admin_token("adm1n-t0ken-b0und-zq")).await;
    let admin_addr = loopback(h.admin_addr);
    assert_eq!(
        admin(admin_addr, "GET", "/api/events").await.0,
        StatusCode::UNAUTHORIZED
    );
    base().admin_listen("127.0.0.1:0").write();
    let refused = h
        .reload()
        .await
        .expect_err("a reload dropping the token of a public admin API");
    let said = refused.to_string();
    assert!(said.contains("admin.token") && said.contains("0.0.0.0"), "{said}");
    assert_eq!(
        admin(admin_addr, "GET", "/api/events").await.0,
        StatusCode::UNAUTHORIZED,
        "the admin API answers without its token after the reload"
    );
    h.shutdown().await;
}

/// The same for the public listener: a file on loopback may keep the
/// shipped example token `change-me`; the listener bound to 0.0.0.0 may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_cannot_bring_back_the_example_token_while_ingest_listens_publicly() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let base = || TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let h = start(
        &base()
            .listen("0.0.0.0:0")
            .edit_route("t", |r| r.tokens(["r0ute-t0ken-b0und-zq"])),
    )
    .await;
    let addr = loopback(h.ingest_addrs[0]);
    let example = base()
        .listen("127.0.0.1:0")
        .edit_route("t", |r| r.tokens(["change-me"]));
    example.write();
    let refused = h
        .reload()
        .await
        .expect_err("a reload bringing back change-me on a public listener");
    assert!(refused.to_string().contains("routes[0].tokens[0]"), "{refused}");
    let json = ("content-type", "application/json");
    let (status, _, _) = post(addr, "/hooks/t?token=change-me", &[json], runway("example")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the example token is taken after the reload"
    );
    h.shutdown().await;
}

/// The other way round: the file's own addresses are judged too (the next
/// start binds them, and would refuse the file: the relay would be down
/// after a restart nobody was warned about). The first cut of the fix judged
/// by the bound addresses alone and let both reloads through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_is_refused_what_the_next_start_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let base = || {
        TestConfig::new(dir.path())
            .subscriber(Subscriber::new("s", sub.url()))
            .edit_route("t", |r| r.tokens(["change-me"]))
    };
    // On loopback: no admin token needed, the example token allowed.
    let h = start(&base()).await;
    base().admin_listen("0.0.0.0:0").write();
    let refused = h
        .reload()
        .await
        .expect_err("a reload putting a tokenless admin API on 0.0.0.0");
    assert!(refused.to_string().contains("admin.token"), "{refused}");
    base().listen("0.0.0.0:0").write();
    let refused = h.reload().await.expect_err("a reload putting change-me on 0.0.0.0");
    assert!(refused.to_string().contains("routes[0].tokens[0]"), "{refused}");
    h.shutdown().await;
}
