//! Reads of expected tasks in cluster mode for the admin API, the CLI and
//! the metrics: one task, a listing, the counts per state, straight from
//! the `hr_tasks` bucket (every row: also what retention goes through,
//! `tasks.rs`); torn rows are not shown (`torn_task.rs`).

use super::tasks::{TaskRow, SCAN_LIMIT};
use super::torn_task::TaskEntry;
use super::{layout, read, NatsStore, Shared};
use crate::store::{StoreError, Task, TaskQuery, TaskState, TaskStats};

impl Shared {
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

    /// Tasks matching the query, most recently registered first.
    pub async fn tasks(&self, q: TaskQuery) -> Result<Vec<Task>, StoreError> {
        let mut out: Vec<Task> = self
            .shared
            .task_rows()
            .await?
            .into_iter()
            .map(|r| r.task)
            .filter(|t| q.route.as_ref().is_none_or(|r| *r == t.route))
            .filter(|t| q.state.is_none_or(|s| s == t.state))
            .collect();
        out.sort_by_key(|t| std::cmp::Reverse(t.registered_ms));
        out.truncate(q.limit);
        Ok(out)
    }

    /// Tasks per state and the oldest open one, across the cluster.
    pub async fn task_stats(&self) -> Result<TaskStats, StoreError> {
        let rows = self.shared.task_rows().await?;
        let by_state = TaskState::ALL
            .iter()
            .map(|s| (*s, rows.iter().filter(|r| r.task.state == *s).count() as u64))
            .collect();
        let oldest_open_ms = rows
            .iter()
            .filter(|r| !r.task.state.is_final())
            .map(|r| r.task.registered_ms)
            .min();
        Ok(TaskStats {
            by_state,
            oldest_open_ms,
        })
    }
}
