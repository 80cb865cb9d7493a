//! Reading a delivery's result in cluster mode: on any replica (a view may
//! lag a moment) or on the results bucket's leader, which holds every write
//! its quorum acknowledged (a message that comes again, a replay).

use super::{backoff, queue, Shared, StoreError};
use crate::store::result::ResultRow;

impl Shared {
    pub(super) async fn result(&self, key: &str) -> Result<Option<(ResultRow, u64)>, StoreError> {
        queue::get_json(&self.results()?, key).await
    }

    /// [`Self::result`] read on the results bucket's leader: every write its
    /// quorum acknowledged, where a replica may not have one yet.
    pub(super) async fn result_on_leader(&self, key: &str) -> Result<Option<(ResultRow, u64)>, StoreError> {
        queue::get_json_on_leader(&self.results()?, key).await
    }

    /// [`Self::result_on_leader`], asked again until `give_up` while the
    /// leader does not answer (an election: about 2–4 s); a row that cannot
    /// be read is no reason to ask again.
    pub(super) async fn result_on_leader_until(
        &self,
        key: &str,
        give_up: tokio::time::Instant,
    ) -> Result<Option<(ResultRow, u64)>, StoreError> {
        let mut backoff = backoff::Backoff::until(give_up);
        loop {
            match self.result_on_leader(key).await {
                Err(e) if !matches!(e, StoreError::Corrupt(_)) => {
                    if !backoff.wait().await {
                        return Err(e);
                    }
                }
                read => return read,
            }
        }
    }
}
