//! Unreadable expected-task rows in cluster mode: a row of the `hr_tasks`
//! bucket that does not decode (written torn, say). It is treated as the
//! embedded store treats its unreadable task rows (`sled/tasks.rs`): a
//! registration, a settling event or a poll's outcome replaces it with a
//! fresh row (logged, its history lost), and the reconciler still polls the
//! task (a stand-in, once a round: `task_work.rs`). Until then it is not
//! shown.

use async_nats::jetstream::kv;
use bytes::Bytes;

use super::tasks::{encode, TaskRow};
use super::{layout, unavailable, Shared};
use crate::store::{NewTask, StoreError, Task};

/// A task row as read from the bucket: readable, or torn.
pub(super) enum TaskEntry {
    Row(TaskRow, u64),
    /// Its revision and its first bytes, for the log.
    Torn(u64, Bytes),
}

/// Log a torn task row met by `then`.
pub(super) fn log_torn(route: &str, task_id: &str, hash: &str, v: &[u8], then: &str) {
    tracing::error!(route = %route, task_id = %task_id, key = %layout::task_key(hash),
        row = %hex::encode(&v[..v.len().min(64)]),
        "unreadable expected-task row; it is replaced, {then} (its history is lost)");
}

/// The task of the fresh row that replaces a torn one (at `now_ms`): open,
/// with no next poll and no final keys of its own.
pub(super) fn fresh_task(route: &str, task_id: &str, now_ms: u64) -> Task {
    Task::new(&NewTask {
        route: route.to_string(),
        task_id: task_id.to_string(),
        now_ms,
        first_poll_ms: None,
        terminal_keys: Vec::new(),
    })
}

impl Shared {
    /// A task row, readable or torn.
    pub(super) async fn task_entry(&self, hash: &str) -> Result<Option<TaskEntry>, StoreError> {
        let bucket = self.tasks_bucket()?;
        match bucket.entry(layout::task_key(hash)).await.map_err(unavailable)? {
            Some(e) if e.operation == kv::Operation::Put => Ok(Some(match serde_json::from_slice(&e.value) {
                Ok(row) => TaskEntry::Row(row, e.revision),
                Err(_) => TaskEntry::Torn(e.revision, e.value),
            })),
            _ => Ok(None),
        }
    }

    /// Write a new task's row over nothing (`torn` None) or over a torn row
    /// at that revision; false when someone wrote it meanwhile.
    pub(super) async fn write_new_task_row(
        &self,
        hash: &str,
        row: &TaskRow,
        torn: Option<u64>,
    ) -> Result<bool, StoreError> {
        let Some(revision) = torn else {
            return self.create_task_row(hash, row).await;
        };
        let updated = self
            .tasks_bucket()?
            .update(layout::task_key(hash), encode(row), revision)
            .await
            .is_ok();
        self.wrote(u64::from(updated));
        Ok(updated)
    }
}
