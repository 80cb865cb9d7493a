//! Review 34: failing tests for the findings in /work/notes/review34.md.

use crate::common;

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{task_route, tasks_config};
use common::*;
use hookrelay::provider::Product;
use http::StatusCode;
use serde_json::{json, Value};

async fn send(addr: std::net::SocketAddr, path: &str, body: &Value) -> Value {
    let (s, _, b) = post(addr, path, &[("content-type", "application/json")], body.to_string()).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}

/// Finding 1: a claim won by a *contesting* event lives only in memory; the
/// store lookup only covers "the owner was let go". After a restart the
/// owner (settled as `duplicate:`) re-verifies on "replay all dead letters"
/// (a replay that does not release), claims its own family (it is the
/// owner: no store lookup at all) and is delivered too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_owner_replayed_after_a_restart_is_delivered_a_second_time() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("market", "kie-market", &fake, &sub.url()).verify("fetch");
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let url = format!("http://{addr}/hooks/market");
    let task = fake.create(Product::Market, TaskPlan::success().step(secs(2)), Some(&url));
    let short = json!({"code": 200, "msg": "done (a stranger's)", "data": {"taskId": task}});
    let a = send(addr, "/hooks/market", &short).await;
    assert_eq!(a["duplicate"], false, "{a}");
    fake.wait_until("the genuine final callback", secs(20), |f| {
        f.callbacks(&task).iter().any(|c| c.kind == "final" && c.delivered())
    })
    .await;
    let dead = admin_until(h.admin_addr, "/api/dead-letters", secs(20), |v| {
        v.to_string().contains("duplicate:")
    })
    .await;
    assert!(
        dead.to_string().contains("duplicate:"),
        "the short form settled as a duplicate: {dead}"
    );
    assert_eq!(sub.all().len(), 1, "once before the restart");
    h.shutdown().await;

    let h = start(&cfg).await;
    let (s, v) = admin(h.admin_addr, "POST", "/api/dead-letters/replay").await;
    assert!(s.is_success(), "{s} {v}");
    tokio::time::sleep(secs(6)).await;
    let got = sub.all();
    h.shutdown().await;
    let bodies: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(
        got.len(),
        1,
        "one task, one success: delivered {} times: {bodies:#?}",
        got.len()
    );
}

/// Finding 4: `hookrelay forward` exits 2 on a pull answered `200` with
/// something that is not a pull answer, to stop leasing messages into a
/// captive portal; the shipped unit (`Restart=on-failure`, `RestartSec=30s`)
/// restarts it every 30 s, each start pulling (and leasing) again. Exit 2 is
/// also the refused-token exit, so the unit cannot tell them apart.
#[test]
fn the_forward_unit_does_not_restart_a_forwarder_that_stopped_for_a_non_pull_answer() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/hookrelay-forward.service"
    ))
    .unwrap();
    let restarts_on_failure = unit.lines().any(|l| l.trim() == "Restart=on-failure");
    let prevented = unit
        .lines()
        .any(|l| l.trim_start().starts_with("RestartPreventExitStatus="));
    assert!(
        !restarts_on_failure || prevented,
        "the unit restarts `hookrelay forward` after the exit meant to stop it (no RestartPreventExitStatus=)"
    );
}
