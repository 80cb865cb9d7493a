//! The shipped systemd unit files as `systemd-analyze security` scores them.
//! What a unit must contain is each test's own list.

use std::process::Command;

/// The `systemd-analyze security --offline` exposure score of a unit file;
/// None when systemd-analyze is missing or too old to score a file.
pub fn unit_exposure(unit: &str) -> Option<f64> {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", unit])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.contains("Overall exposure level"))?;
    line.split(':').nth(1)?.split_whitespace().next()?.parse().ok()
}
