//! A subscriber moved by a reload from route t to route u
//! (tests/moved_route.rs, tests/pull_to_push.rs, tests/nats_pull_acks.rs):
//! the two configurations, with push subscriber c on route t and b on route
//! u; for a pull subscriber `p`, a lease its forwarder `f1` holds across the
//! move.

use super::bodies::runway;
use super::client::{accepted, assert_hands_out};
use super::config::TestConfig;
use super::daemon::start;
use super::route::{Route, Subscriber};
use super::subscriber::Sub;

/// Route u (`/hooks/u`, token "tok") with `subs`.
pub fn route_u(subs: Vec<Subscriber>) -> Route {
    subs.into_iter().fold(
        Route::new("u", "/hooks/u")
            .tokens(["tok"])
            .dedupe_key(["/data/task_id"]),
        Route::subscriber,
    )
}

/// The configurations before (`on_t`) and after (`on_u`) the move, and the
/// push subscribers they name.
pub struct Move {
    pub on_t: TestConfig,
    pub on_u: TestConfig,
    pub b: Sub,
    pub c: Sub,
}

impl Move {
    /// `base` with c on route t and b on route u; the moved subscriber as
    /// `on_t` on route t in `on_t`, as `on_u` on route u in `on_u`.
    pub async fn new(base: TestConfig, on_t: Subscriber, on_u: Subscriber) -> Move {
        let (b, c) = (Sub::ok().await, Sub::ok().await);
        let base = base.subscriber(Subscriber::new("c", c.url()));
        let on_t = base
            .clone()
            .subscriber(on_t)
            .route(route_u(vec![Subscriber::new("b", b.url())]));
        let on_u = base.route(route_u(vec![Subscriber::new("b", b.url()), on_u]));
        Move { on_t, on_u, b, c }
    }

    /// Starts on `on_t`, has pull subscriber `p` lease one event of route t with `token`
    /// (forwarder f1), then reloads onto `on_u`: the relay and the leased id.
    pub async fn lease_then_move(&self, token: &str) -> (hookrelay::Handle, String) {
        let h = start(&self.on_t).await;
        let addr = h.ingest_addrs[0];
        let old = accepted(addr, &runway("old-lane")).await;
        assert_hands_out(addr, "/pull/p?wait=10s&max=5", token, "f1", &old).await;
        self.on_u.write();
        h.reload().await.expect("reload");
        (h, old)
    }
}
