//! Review 34: failing tests for the findings in /work/notes/review34.md.

use crate::common;

use common::*;

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
