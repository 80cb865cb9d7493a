//! Review 30: pull subscribers / `hookrelay forward`, and the web console and
//! admin API. Each test proves one finding of /work/notes/review30.md and
//! fails on the code as reviewed.

use crate::common;

use crate::common::browser;


use common::*;

const TOKEN: &str = "r30-pull-token";

/// Finding 2 (console) and finding 3: in a real Chromium, the Events page
/// shows the newest 100 of 105 events with nothing that says others exist
/// or a way to see them; the Subscribers page does not show a pull
/// subscriber's last pull (design: "the console shows pull subscribers
/// like the others (backlog, in flight = leased, last pull)").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r30_the_console_says_rows_are_left_out_and_shows_the_last_pull() {
    let _ = browser::chromium();
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(
        &TestConfig::new(dir.path())
            .subscriber(Subscriber::new("s", sub.url()))
            .subscriber(Subscriber::pull("laptop", TOKEN).lease(secs(60))),
    )
    .await;
    for i in 0..105 {
        accepted(h.ingest_addrs[0], &runway(&format!("r30-console-{i}"))).await;
    }
    // One pull, so the relay has a last pull to show.
    let (s, _, _) = request(
        h.ingest_addrs[0],
        None,
        "GET",
        "/pull/laptop?wait=0&max=1",
        &[("authorization", &format!("Bearer {TOKEN}"))],
        Default::default(),
    )
    .await;
    assert_eq!(s, http::StatusCode::OK);
    let env = [("ADMIN_URL", format!("http://{}", h.admin_addr))];
    browser::run_script("review30.mjs", &env, secs(90), "REVIEW30 OK").await;
}
