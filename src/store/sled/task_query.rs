//! Reads of expected tasks for the admin API, the CLI, the metrics and the
//! reconciler's schedule. Straight from the tree; callers run them off the
//! async workers ([`super::SledStore::blocking`]).

use super::task_codec as tc;
use super::SledStore;
use crate::store::tasks::Newest;
use crate::store::{NewTask, StoreError, Task, TaskQuery, TaskState, TaskStats};

impl SledStore {
    fn task_at(&self, route: u32, task_id: &str) -> Result<Option<Task>, StoreError> {
        let name = super::read_lock(&self.inner.registry)
            .route_name(route)
            .unwrap_or_default()
            .to_string();
        Ok(self
            .inner
            .tree
            .get(tc::task(route, task_id))?
            .and_then(|v| tc::decode(&v, &name, task_id)))
    }

    /// The task a due schedule row names. Its row unreadable (written torn,
    /// say): a stand-in, registered at `due`, so that it is still polled and
    /// the poll's outcome replaces the row (see `unreadable_task` in
    /// [`super::tasks`], which logs it); skipped, it was never polled again.
    fn due_task_at(&self, route: u32, task_id: &str, due: u64) -> Result<Option<Task>, StoreError> {
        let Some(v) = self.inner.tree.get(tc::task(route, task_id))? else {
            return Ok(None);
        };
        let name = super::read_lock(&self.inner.registry)
            .route_name(route)
            .unwrap_or_default()
            .to_string();
        Ok(Some(tc::decode(&v, &name, task_id).unwrap_or_else(|| {
            Task::new(&NewTask {
                route: name,
                task_id: task_id.to_string(),
                now_ms: due,
                first_poll_ms: Some(due),
                terminal_keys: Vec::new(),
            })
        })))
    }

    pub fn task(&self, route: Option<&str>, task_id: &str) -> Result<Option<Task>, StoreError> {
        let routes = {
            let reg = super::read_lock(&self.inner.registry);
            match route {
                Some(name) => reg.route(name).into_iter().collect(),
                None => reg.route_numbers(),
            }
        };
        for r in routes {
            if let Some(t) = self.task_at(r, task_id)? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    pub fn tasks(&self, q: &TaskQuery) -> Result<Vec<Task>, StoreError> {
        let (prefix, reg) = {
            let reg = super::read_lock(&self.inner.registry).clone();
            let prefix = match q.route.as_deref() {
                Some(name) => match reg.route(name) {
                    Some(r) => tc::task_prefix(r),
                    None => return Ok(Vec::new()),
                },
                None => vec![tc::G],
            };
            (prefix, reg)
        };
        // Only the newest `limit` are held while the scan goes on (a store
        // keeps every task for `store.retention`: collecting them all, the
        // console's refreshing task list held hundreds of MiB each time).
        let mut newest = Newest::new(q.limit);
        for item in self.inner.tree.scan_prefix(prefix) {
            let (k, v) = item?;
            let Some((route, id)) = tc::parse_task(&k) else {
                continue;
            };
            let Some(task) = tc::decode(&v, reg.route_name(route).unwrap_or_default(), &id) else {
                continue;
            };
            if q.state.is_none_or(|s| s == task.state) {
                newest.offer(task);
            }
        }
        Ok(newest.into_vec())
    }

    pub fn due_tasks(&self, now_ms: u64, limit: usize) -> Result<(Vec<Task>, Option<u64>), StoreError> {
        let mut out = Vec::new();
        // A stand-in for an unreadable row matches every schedule row of its
        // task (stale ones, from before this fix, too): one per task a round.
        let mut seen = std::collections::HashSet::new();
        for item in self.inner.tree.scan_prefix([tc::P]).keys() {
            let k = item?;
            let Some((due, route, id)) = tc::parse_task_due(&k) else {
                continue;
            };
            if due > now_ms || out.len() >= limit {
                return Ok((out, Some(due)));
            }
            // A schedule row whose task is gone or settled is stale: skip it
            // (the writer removes it with the next change of that task).
            if let Some(t) = self.due_task_at(route, &id, due)? {
                if !t.state.is_final() && t.next_poll_ms == Some(due) && seen.insert((route, id)) {
                    out.push(t);
                }
            }
        }
        Ok((out, None))
    }

    pub fn task_stats(&self) -> Result<TaskStats, StoreError> {
        let mut counts = [0u64; 5];
        let mut oldest: Option<u64> = None;
        for item in self.inner.tree.scan_prefix([tc::G]).values() {
            let Some(row) = tc::decode(&item?, "", "") else {
                continue;
            };
            let i = TaskState::ALL.iter().position(|s| *s == row.state).unwrap_or(0);
            counts[i] += 1;
            if !row.state.is_final() {
                oldest = Some(oldest.map_or(row.registered_ms, |o| o.min(row.registered_ms)));
            }
        }
        Ok(TaskStats {
            by_state: TaskState::ALL.into_iter().zip(counts).collect(),
            oldest_open_ms: oldest,
        })
    }
}
