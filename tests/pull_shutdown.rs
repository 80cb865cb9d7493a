//! A clean stop with a message leased to a forwarder that never answers
//! (crashed): the stop waits the grace for its acknowledgement, says in the
//! log that what is still leased is offered again, and the restarted relay
//! offers it with the same id (soak re-run, stop 67: the log said only
//! "stopped", and a message sent twice was not explained).

use crate::common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_a_lease_never_acknowledged_says_it_is_offered_again() {
    const TOKEN: &str = "pull-token-0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::pull("p", TOKEN))
        .shutdown_grace(secs(1));
    let bin = Bin::start(&cfg.write(), &[]);
    let id = accepted(bin.addr, &runway("leased")).await;
    assert_hands_out(bin.addr, "/pull/p?wait=5s", TOKEN, "f1", &id).await;
    let began = std::time::Instant::now();
    bin.signal("TERM");
    let (status, bin) = bin.exit().await;
    let log = bin.log_text();
    assert!(status.success(), "{status:?}: {log}");
    assert!(
        began.elapsed() >= ms(900),
        "the stop waited the grace for the acknowledgement"
    );
    let line = log
        .lines()
        .find(|l| l.contains("stopping with messages leased to forwarders"))
        .unwrap_or_else(|| panic!("not said:\n{log}"));
    assert!(line.contains("leased=1") && line.contains("offered again"), "{line}");
    let bin = Bin::start(&cfg.write(), &[]);
    assert_hands_out(bin.addr, "/pull/p?wait=5s", TOKEN, "f2", &id).await;
}
