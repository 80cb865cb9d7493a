//! Tests of [`super`]: what `hookrelay status` prints.

use super::*;

#[test]
fn durations_keep_their_two_largest_units() {
    let d = |n: u64| secs(&Value::from(n));
    assert_eq!(d(0), "0s");
    assert_eq!(d(42), "42s");
    assert_eq!(d(3 * 60 + 5), "3m 5s");
    assert_eq!(d(5 * 3600 + 3 * 60 + 9), "5h 3m");
    assert_eq!(d(29 * 86_400 + 23 * 3600 + 59 * 60), "29d 23h");
    assert_eq!(d(2 * 86_400 + 5 * 60), "2d 0h");
    assert_eq!(secs(&Value::Null), "-");
}

/// An ACME stand-in not fully valid (review 39, finding 5) is named by
/// `hookrelay status`, with why.
#[test]
fn an_acme_stand_in_not_fully_valid_is_named_with_why() {
    let status = |stand_in: Value| {
        render_status(&serde_json::json!({
            "certificates": [{
                "source": "acme",
                "certificate": {"names": ["a.example"], "not_before": "x", "not_after": "y", "serial": "1",
                    "expired": false, "expires_in_seconds": 3600},
                "acme": {"domains": ["a.example", "b.example"], "directory": "https://ca/dir",
                    "renew_at": "now", "failures": 0, "consecutive_failures": 0, "stand_in": stand_in},
            }]
        }))
    };
    let out = status(serde_json::json!("does not cover b.example"));
    assert!(
        out.contains("STAND-IN:  not fully valid: it does not cover b.example"),
        "{out}"
    );
    assert!(!status(Value::Null).contains("STAND-IN"));
}

/// A relay not ready is shown with why (it said `NOT READY` alone, though
/// the API says why).
#[test]
fn not_ready_is_shown_with_why() {
    let out = render_status(&serde_json::json!({"ready": false, "not_ready_because": "disk nearly full"}));
    assert!(out.contains("NOT READY: disk nearly full"), "{out}");
    let out = render_status(&serde_json::json!({"ready": true, "not_ready_because": null}));
    assert!(out.contains(", ready\n"), "{out}");
}

/// A certificate not valid yet, and an ACME order held back by the daily
/// cap, are named (the first was shown with "expires in", the second with
/// no next attempt at all; TLS review, stop 66).
#[test]
fn a_certificate_not_valid_yet_and_an_order_held_by_the_daily_cap_are_named() {
    let out = render_status(&serde_json::json!({
        "certificates": [{
            "source": "acme",
            "certificate": {"names": ["a.example"], "not_before": "x", "not_after": "y", "serial": "1",
                "expired": false, "expires_in_seconds": 5_184_000, "not_yet_valid": true,
                "valid_in_seconds": 2_592_000},
            "acme": {"domains": ["a.example"], "directory": "https://ca/dir", "renew_at": "now",
                "failures": 0, "consecutive_failures": 0, "next_attempt": "2026-12-07T07:56:45Z"},
        }]
    }));
    assert!(
        out.contains("(NOT VALID YET, for 30d 0h: TLS handshakes fail)"),
        "{out}"
    );
    assert!(!out.contains("expires in"), "{out}");
    assert!(
        out.contains("failures:  0 since start; next order 2026-12-07T07:56:45Z (as many certificates"),
        "{out}"
    );
}
