//! What a relay's `409` on an acknowledgement says of the ids it refused
//! as not leased: recorded as delivered already (an earlier
//! acknowledgement got there, its answer did not: confirmed), not known
//! (the relay could not tell: kept unconfirmed, a later offer of a later
//! attempt is asked about), or neither (the lease ended first: the relay
//! offers the message again with the same id).

use std::collections::BTreeMap;

use super::unacked::Unacked;

/// Take in what the `409` named of `late` (the ids refused), for the
/// attempts `tried`.
pub(super) fn take_in(
    unacked: &Unacked,
    late: &[String],
    delivered: &[String],
    unknown: &[String],
    tried: &BTreeMap<String, u32>,
) {
    if !delivered.is_empty() {
        // Done, and a later offer of a later attempt is an operator's replay.
        tracing::info!(ids = ?delivered, "the relay had recorded these as delivered already (the answer to an \
            earlier acknowledgement was lost)");
        unacked.confirmed(delivered, tried);
    }
    if !unknown.is_empty() {
        tracing::warn!(ids = ?unknown, "the relay could not tell whether it had recorded these (its store did not \
            answer, their record is unreadable, or more were refused than it looks up at once); kept unconfirmed");
    }
    let expired: Vec<&String> = late
        .iter()
        .filter(|id| !delivered.contains(id) && !unknown.contains(id))
        .collect();
    if !expired.is_empty() {
        tracing::warn!(ids = ?expired, "no relay holds these leases any more, as far as the relay asked could tell \
            (they expired: a failed attempt each; the relay restarted; or, in cluster mode, the relay holding them \
            did not answer in time: paused or cut off, it applies the acknowledgement if it runs again before they \
            end); those not applied are offered again with the same id");
    }
}
