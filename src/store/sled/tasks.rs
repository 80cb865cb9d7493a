//! Expected tasks on the writer thread: registering, settling a task with
//! the event appended for it (in that event's own batch), recording polls
//! that did not settle it, and task retention (`Task::expired`: never an
//! open task that is still polled). The rows are in
//! [`super::task_codec`]; reads in [`super::task_query`].
//!
//! Settling rules (`mark_task`): a terminal callback marks an open task
//! `called_back`; a terminal polled record marks it `recovered` when it was
//! new, `called_back` when it duplicated a callback already stored (so a poll
//! after a real callback creates nothing) — unless its mark says `if_new`
//! (a `verify = "fetch"` route's first write: the task stays open). A final task is never reopened;
//! a late callback for a given-up task marks it `called_back` (it did come).
//! A task registered after its final event was stored (the callback beat
//! the submit proxy's registration) registers settled by that event.

use super::group_commit::{Batch, Writer};
use super::task_codec as tc;
use super::SledStore;
use crate::store::{Accepted, EventId, NewTask, Origin, StoreError, Task, TaskMark, TaskUpdate};

/// A task operation sent to the writer.
pub(super) enum TaskOp {
    Register(NewTask),
    Update {
        route: String,
        task_id: String,
        update: TaskUpdate,
        now_ms: u64,
    },
}

/// Task rows looked at per retention step (the caller loops; small in
/// tests so that they cross steps).
const SWEEP_CHUNK: usize = if cfg!(test) { 3 } else { 1000 };
/// Task rows looked at per scheduling step (the caller loops; small in
/// tests so that they cross steps).
const SCHEDULE_CHUNK: usize = if cfg!(test) { 3 } else { 10_000 };

/// The first final event of a task being registered that is already stored
/// (its callback came first): found by the dedupe rows of its final
/// callbacks' keys, which live as long as the events.
fn stored_final(b: &Batch<'_>, route: u32, keys: &[[u8; 32]]) -> Result<Option<(EventId, Origin)>, StoreError> {
    let mut first: Option<(EventId, Origin)> = None;
    for hash in keys {
        let mut h = [0u8; 16];
        h.copy_from_slice(&hash[..16]);
        let Some(id) = b
            .get(&super::keys::dedupe(route, &h))?
            .and_then(|v| EventId::from_slice(&v))
        else {
            continue;
        };
        let Some(row) = b.get(&super::keys::log(route, id))? else {
            continue;
        };
        let Some((header, _)) = super::codec::decode_header(&row) else {
            continue;
        };
        if first.is_none_or(|(f, _)| id < f) {
            first = Some((id, header.meta.origin));
        }
    }
    Ok(first)
}

impl Writer {
    /// Apply one task operation in the current data batch.
    pub(super) fn task_op(&mut self, b: &mut Batch<'_>, op: &TaskOp) -> Result<Option<Task>, StoreError> {
        match op {
            TaskOp::Register(t) => {
                let (route, _) = self.numbers(b, &t.route, &[]);
                let key = tc::task(route, &t.task_id);
                if let Some(v) = b.get(&key)? {
                    match tc::decode(&v, &t.route, &t.task_id) {
                        Some(row) => return Ok(Some(row)),
                        None => {
                            tracing::error!(route = %t.route, task_id = %t.task_id,
                                row = %hex::encode(&v[..v.len().min(64)]),
                                "unreadable expected-task row; registered again on a new row");
                            // Its schedule rows go with it: left behind, one
                            // is read as the new row's (a settled task
                            // polled again once its row is torn again).
                            self.drop_schedule_rows(b, route, &t.task_id)?;
                        }
                    }
                }
                let row = match stored_final(b, route, &t.terminal_keys)? {
                    Some((event, origin)) => Task::found_settled(t, event, origin),
                    None => {
                        if let Some(due) = t.first_poll_ms {
                            b.put(tc::task_due(due, route, &t.task_id), Vec::new());
                        }
                        Task::new(t)
                    }
                };
                b.put(key, tc::encode(&row));
                Ok(Some(row))
            }
            TaskOp::Update {
                route: name,
                task_id,
                update,
                now_ms,
            } => {
                let route = match super::read_lock(&self.inner.registry).route(name) {
                    Some(r) => r,
                    None => return Ok(None),
                };
                let key = tc::task(route, task_id);
                let mut row = match b.get(&key)? {
                    None => return Ok(None),
                    Some(v) => match tc::decode(&v, name, task_id) {
                        Some(row) => row,
                        None => self.unreadable_task(b, route, &v, task_id, *now_ms, "recording this poll")?,
                    },
                };
                if !update.applies_to(row.state) {
                    return Ok(Some(row));
                }
                if let Some(due) = row.next_poll_ms {
                    b.del(tc::task_due(due, route, task_id));
                }
                row.polled(update, *now_ms);
                if let Some(due) = row.next_poll_ms {
                    b.put(tc::task_due(due, route, task_id), Vec::new());
                }
                b.put(key, tc::encode(&row));
                Ok(Some(row))
            }
        }
    }

    /// Settle the route's expected task with the event just appended (or
    /// found as a duplicate), in the same batch.
    pub(super) fn mark_task(
        &mut self,
        b: &mut Batch<'_>,
        route: u32,
        mark: &TaskMark,
        origin: Origin,
        accepted: Accepted,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        if !mark.settles(&accepted) {
            return Ok(());
        }
        let key = tc::task(route, &mark.task_id);
        let mut row = match b.get(&key)? {
            None => return Ok(()),
            Some(v) => match tc::decode(&v, "", &mark.task_id) {
                Some(row) => row,
                None => self.unreadable_task(b, route, &v, &mark.task_id, now_ms, "settled by this event")?,
            },
        };
        let due = row.next_poll_ms;
        if !row.settle(mark, origin, &accepted, now_ms) {
            return Ok(());
        }
        if let Some(due) = due {
            b.del(tc::task_due(due, route, &mark.task_id));
        }
        b.put(key, tc::encode(&row));
        Ok(())
    }

    /// A task row that does not decode, met by the event that settles it or
    /// by a poll's outcome (`then` says which, for the log): the task goes on
    /// on a fresh row (its registration time, polls and history are lost; a
    /// poll's `give_up` counts from now), and its schedule rows go. Failing
    /// instead answered the callback 503 for ever, though its event was
    /// stored and delivered, and left a polled task's row unreadable and its
    /// schedule row read on every round.
    fn unreadable_task(
        &mut self,
        b: &mut Batch<'_>,
        route: u32,
        v: &[u8],
        task_id: &str,
        now_ms: u64,
        then: &str,
    ) -> Result<Task, StoreError> {
        let name = super::read_lock(&self.inner.registry)
            .route_name(route)
            .unwrap_or_default()
            .to_string();
        tracing::error!(route = %name, task_id = %task_id, key = %hex::encode(tc::task(route, task_id)),
            row = %hex::encode(&v[..v.len().min(64)]),
            "unreadable expected-task row; it is replaced, {then} (its history is lost)");
        self.drop_schedule_rows(b, route, task_id)?;
        Ok(Task::new(&NewTask {
            route: name,
            task_id: task_id.to_string(),
            now_ms,
            first_poll_ms: None,
            // Settled or polled at once: nothing to look up.
            terminal_keys: Vec::new(),
        }))
    }

    /// Every schedule row of the task goes, in the batch.
    fn drop_schedule_rows(&mut self, b: &mut Batch<'_>, route: u32, task_id: &str) -> Result<(), StoreError> {
        for item in self.inner.tree.scan_prefix([tc::P]).keys() {
            let k = item?;
            if tc::parse_task_due(&k).is_some_and(|(_, r, id)| r == route && id == task_id) {
                b.del(k.to_vec());
            }
        }
        Ok(())
    }

    /// One bounded retention step from `from` (None: the first task): the
    /// tasks [`Task::expired`] at `cutoff_ms` go, with their schedule rows.
    /// Returns how many were removed and the key to go on from.
    pub(super) fn task_sweep_step(
        &mut self,
        cutoff_ms: u64,
        from: Option<Vec<u8>>,
    ) -> Result<(usize, Option<Vec<u8>>), StoreError> {
        let tree = self.inner.tree.clone();
        let mut b = Batch::new(&tree);
        let mut removed = 0;
        let mut next = None;
        let start = from.unwrap_or_else(|| vec![tc::G]);
        for (seen, item) in tree.range(start..super::keys::prefix_end(&[tc::G])).enumerate() {
            let (k, v) = item?;
            if seen >= SWEEP_CHUNK {
                next = Some(k.to_vec());
                break;
            }
            let Some((route, id)) = tc::parse_task(&k) else {
                continue;
            };
            let Some(row) = tc::decode(&v, "", &id) else { continue };
            if !row.expired(cutoff_ms) {
                continue;
            }
            if let Some(due) = row.next_poll_ms {
                b.del(tc::task_due(due, route, &id));
            }
            b.del(k.to_vec());
            removed += 1;
        }
        if removed > 0 {
            self.commit(b)?;
        }
        Ok((removed, next))
    }

    /// One bounded step over `route`'s tasks from `from`: every open task
    /// without a next poll (registered while the route did not reconcile)
    /// is scheduled `after_ms` past its registration, or now if that has
    /// passed. Returns how many, and the key to go on from.
    pub(super) fn task_schedule_step(
        &mut self,
        route: &str,
        after_ms: u64,
        now_ms: u64,
        from: Option<Vec<u8>>,
    ) -> Result<(usize, Option<Vec<u8>>), StoreError> {
        let Some(no) = super::read_lock(&self.inner.registry).route(route) else {
            return Ok((0, None));
        };
        let tree = self.inner.tree.clone();
        let mut b = Batch::new(&tree);
        let prefix = tc::task_prefix(no);
        let start = from.unwrap_or_else(|| prefix.clone());
        let mut scheduled = 0;
        let mut next = None;
        for (seen, item) in tree.range(start..super::keys::prefix_end(&prefix)).enumerate() {
            let (k, v) = item?;
            if seen >= SCHEDULE_CHUNK {
                next = Some(k.to_vec());
                break;
            }
            let Some((_, id)) = tc::parse_task(&k) else { continue };
            let Some(mut row) = tc::decode(&v, route, &id) else {
                continue;
            };
            if !row.unscheduled() {
                continue;
            }
            let due = row.schedule_first_poll(after_ms, now_ms);
            b.put(tc::task_due(due, no, &id), Vec::new());
            b.put(k.to_vec(), tc::encode(&row));
            scheduled += 1;
        }
        if scheduled > 0 {
            self.commit(b)?;
        }
        Ok((scheduled, next))
    }
}

impl SledStore {
    pub async fn register_task(&self, task: NewTask) -> Result<Task, StoreError> {
        let op = TaskOp::Register(task);
        self.call(|reply| super::group_commit::Msg::Task(Box::new(op), reply))
            .await?
            .ok_or_else(|| StoreError::Engine("the task was not registered".into()))
    }

    pub async fn update_task(
        &self,
        route: &str,
        task_id: &str,
        update: TaskUpdate,
    ) -> Result<Option<Task>, StoreError> {
        let op = TaskOp::Update {
            route: route.to_string(),
            task_id: task_id.to_string(),
            update,
            now_ms: crate::clock::now_ms(),
        };
        self.call(|reply| super::group_commit::Msg::Task(Box::new(op), reply))
            .await
    }

    pub async fn schedule_tasks(&self, route: &str, after_ms: u64) -> Result<usize, StoreError> {
        let mut total = 0;
        let mut from = None;
        loop {
            let (name, now_ms) = (route.to_string(), crate::clock::now_ms());
            let (n, next) = self
                .call(|reply| super::group_commit::Msg::TaskSchedule {
                    route: name,
                    after_ms,
                    now_ms,
                    from,
                    reply,
                })
                .await?;
            total += n;
            match next {
                Some(k) => from = Some(k),
                None => return Ok(total),
            }
            tokio::task::yield_now().await;
        }
    }

    pub async fn sweep_tasks(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        let mut total = 0;
        let mut from = None;
        loop {
            let (n, next) = self
                .call(|reply| super::group_commit::Msg::TaskSweep { cutoff_ms, from, reply })
                .await?;
            total += n;
            match next {
                Some(k) => from = Some(k),
                None => return Ok(total),
            }
            tokio::task::yield_now().await;
        }
    }
}
