//! Reads of expected tasks in cluster mode for the admin API, the CLI and
//! the metrics: one task, a listing, the counts per state, straight from
//! the `hr_tasks` bucket (every row: also what retention goes through,
//! `tasks.rs`); torn rows are not shown (`torn_task.rs`).

use super::tasks::{TaskRow, SCAN_LIMIT};
use super::torn_task::TaskEntry;
use super::{layout, read, NatsStore, Shared};
use crate::store::tasks::Newest;
use crate::store::{StoreError, Task, TaskQuery, TaskState, TaskStats};

impl Shared {
    /// `visit` every readable task, streamed (none held; torn rows left out).
    async fn each_task(&self, mut visit: impl FnMut(Task)) -> Result<(), StoreError> {
        self.each_latest(layout::TASKS, "t.", |_, v| {
            if let Ok(row) = serde_json::from_slice::<TaskRow>(&v) {
                visit(row.task);
            }
            true
        })
        .await
    }

    /// Every task row (up to [`SCAN_LIMIT`]).
    pub(super) async fn task_rows(&self) -> Result<Vec<TaskRow>, StoreError> {
        let values = self.latest_values(layout::TASKS, "t.", SCAN_LIMIT).await?;
        Ok(values
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }
}

impl NatsStore {
    /// One task; without `route`, the first route (in the config's order)
    /// that has this task id.
    pub async fn task(&self, route: Option<String>, task_id: String) -> Result<Option<Task>, StoreError> {
        let routes: Vec<String> = match route {
            Some(r) => vec![r],
            None => read(&self.shared.topology).routes.into_iter().map(|(r, _)| r).collect(),
        };
        for r in routes {
            // A torn row is not shown (as in the embedded store) until a
            // registration, its event or a poll replaces it.
            if let Some(TaskEntry::Row(row, _)) = self.shared.task_entry(&layout::task_hash(&r, &task_id)).await? {
                return Ok(Some(row.task));
            }
        }
        Ok(None)
    }

    /// Tasks matching the query, most recently registered first: every row
    /// is looked at (streamed, the newest `limit` held), not the first
    /// [`SCAN_LIMIT`] (the rows written longest ago: past that many tasks
    /// the newest were left out, with `more: false`).
    pub async fn tasks(&self, q: TaskQuery) -> Result<Vec<Task>, StoreError> {
        let mut newest = Newest::new(q.limit);
        self.shared
            .each_task(|t| {
                if q.route.as_ref().is_none_or(|r| *r == t.route) && q.state.is_none_or(|s| s == t.state) {
                    newest.offer(t);
                }
            })
            .await?;
        Ok(newest.into_vec())
    }

    /// Tasks per state and the oldest open one, across the cluster: every
    /// row counted as it streams by (none held).
    pub async fn task_stats(&self) -> Result<TaskStats, StoreError> {
        let mut counts = vec![0u64; TaskState::ALL.len()];
        let mut oldest_open_ms: Option<u64> = None;
        self.shared
            .each_task(|t| {
                if let Some(i) = TaskState::ALL.iter().position(|s| *s == t.state) {
                    counts[i] += 1;
                }
                if !t.state.is_final() {
                    oldest_open_ms = Some(oldest_open_ms.map_or(t.registered_ms, |o| o.min(t.registered_ms)));
                }
            })
            .await?;
        Ok(TaskStats {
            by_state: TaskState::ALL.iter().copied().zip(counts).collect(),
            oldest_open_ms,
        })
    }
}
