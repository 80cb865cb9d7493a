//! Expected tasks in cluster mode: one row per task in the `hr_tasks`
//! bucket, and one message per task in the `HR_TASKS` work queue that the
//! reconcilers of every relay share, NAKed with the delay until its next
//! poll — so each task is polled by one relay at a time, and a relay that
//! dies mid-poll hands its tasks over after `takeover`.
//!
//! The settling rules are the embedded store's (`sled/tasks.rs`): a terminal
//! callback marks an open task `called_back`; a terminal polled record marks
//! it `recovered` when it was new, `called_back` when it duplicated a stored
//! callback; a final task is never reopened. Here the mark follows the
//! event's publish instead of sharing its write: a relay that dies in
//! between leaves the task open, its next poll finds the result, whose event
//! is then a duplicate, and the task is marked `called_back` or `recovered`
//! as it should have been.

use std::sync::atomic::Ordering;

use async_nats::jetstream::consumer::{pull, PullConsumer};
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{stream, AckKind};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::queue::{create_json, get_json};
use super::torn_task::{fresh_task, log_torn, TaskEntry};
use super::{layout, read, unavailable, NatsStore, Shared};
use crate::store::{Accepted, EventId, NewTask, Origin, StoreError, Task, TaskMark, TaskUpdate};

/// Times a settling mark reads and writes a task row that keeps changing.
const MARK_TRIES: usize = 3;

#[cfg(test)]
thread_local! {
    /// Tests: every settling write of a mark on this thread fails, as when
    /// the task row keeps changing under it or NATS fails each try.
    pub(crate) static FAIL_MARK_WRITES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Tests: the next poll's write on this thread finds its task row
    /// settled (`called_back`) since it read it, as a callback's mark
    /// landing in between does.
    pub(crate) static SETTLE_BEFORE_POLL_WRITE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
/// Rows a listing, a count or a retention pass looks at, at most.
pub(super) const SCAN_LIMIT: usize = 100_000;

/// A task as the bucket keeps it: the task, and which work message polls it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TaskRow {
    /// The sequence of the work message in charge of polling it.
    pub work: u64,
    pub task: Task,
}

/// What the work message carries: the registration, to write the row if the
/// relay that published it died before it could.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct TaskWork {
    pub route: String,
    pub task_id: String,
    pub registered_ms: u64,
    pub first_poll_ms: u64,
}

/// The reconcilers' shared consumer, set up by `set_up`.
pub(super) async fn existing_reconciler(shared: &Shared) -> Result<PullConsumer, String> {
    let s = read(&shared.task_work).ok_or("the task work stream is not set up yet")?;
    s.get_consumer::<pull::Config>(layout::RECONCILER)
        .await
        .map_err(|e| format!("consumer {}: {e}", layout::RECONCILER))
}

/// Writes of a poll's outcome tried against a row that changed meanwhile.
const UPDATE_TRIES: usize = 5;

pub(super) fn encode(row: &TaskRow) -> Bytes {
    Bytes::from(serde_json::to_vec(row).expect("serializes"))
}

impl Shared {
    /// The tasks bucket and work queue (both expire with the retention)
    /// and the reconcilers' consumer, created or brought up to date.
    pub(super) async fn set_up_tasks(
        &self,
        plan: &mut super::setup::SetUp,
    ) -> Result<(kv::Store, stream::Stream), super::setup::SetUpError> {
        let bucket = self.bucket(plan, layout::TASKS, self.retention).await?;
        let work = self
            .work_queue(
                plan,
                layout::TASK_WORK,
                layout::task_subject("*"),
                layout::RECONCILER,
                self.retention,
            )
            .await?;
        Ok((bucket, work))
    }

    pub(super) fn tasks_bucket(&self) -> Result<kv::Store, StoreError> {
        read(&self.tasks).ok_or_else(|| unavailable("the tasks bucket is not set up yet"))
    }

    pub(super) async fn task_row(&self, hash: &str) -> Result<Option<(TaskRow, u64)>, StoreError> {
        get_json(&self.tasks_bucket()?, &layout::task_key(hash)).await
    }

    /// The sequence of the work message this relay holds for a task.
    fn held_task_seq(&self, hash: &str) -> Option<u64> {
        self.held_tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(hash)
            .map(|(seq, _)| *seq)
    }

    /// Write a new task's row; false when it exists.
    pub(super) async fn create_task_row(&self, hash: &str, row: &TaskRow) -> Result<bool, StoreError> {
        let created = create_json(&self.tasks_bucket()?, layout::task_key(hash), row)
            .await?
            .is_some();
        self.wrote(u64::from(created));
        Ok(created)
    }

    /// Settle the work message of a task this relay holds (it is final, or
    /// rescheduled: `kind` says which).
    async fn settle_task_work(&self, hash: &str, kind: AckKind) {
        let held = self.held_tasks.lock().unwrap_or_else(|e| e.into_inner()).remove(hash);
        if let Some((seq, acker)) = held {
            super::follow::release(&self.task_follower_held(), seq);
            let _ = acker.ack_with(kind).await;
        }
    }

    /// Settle `route`'s expected task with the event just appended (or found
    /// as a duplicate).
    pub(super) async fn mark_task(
        &self,
        route: &str,
        mark: &TaskMark,
        origin: Origin,
        accepted: &Accepted,
    ) -> Result<(), StoreError> {
        if !mark.settles(accepted) {
            // Not settled by a duplicate (`TaskMark::if_new`): the poll's next
            // write settles it; its work stays held, so that a relay stopped
            // in between hands the task over.
            return Ok(());
        }
        let hash = layout::task_hash(route, &mark.task_id);
        // Read, settle, write only if nobody changed the row meanwhile (a
        // poll's update, a take-over or scheduling of its work); on a change,
        // read again. A mark still lost is healed by the task's next poll:
        // its work is then not acknowledged (held, or taken over).
        let mut settled = false;
        for _ in 0..MARK_TRIES {
            let (mut row, revision) = match self.task_entry(&hash).await? {
                None => return Ok(()),
                Some(TaskEntry::Row(row, revision)) => (row, revision),
                Some(TaskEntry::Torn(revision, v)) => {
                    log_torn(route, &mark.task_id, &hash, &v, "settled by this event");
                    let task = fresh_task(route, &mark.task_id, crate::clock::now_ms());
                    (TaskRow { work: 0, task }, revision)
                }
            };
            if !row.task.settle(mark, origin, accepted, crate::clock::now_ms()) {
                settled = true;
                break;
            }
            #[cfg(test)]
            if FAIL_MARK_WRITES.with(|f| f.get()) {
                continue;
            }
            let key = layout::task_key(&hash);
            if self.tasks_bucket()?.update(key, encode(&row), revision).await.is_ok() {
                self.wrote(1);
                settled = true;
                break;
            }
        }
        if settled {
            self.settle_task_work(&hash, AckKind::Ack).await;
        } else {
            tracing::warn!(route, task = %mark.task_id,
                "could not settle the expected task (its row kept changing or NATS failed): its next poll will");
        }
        Ok(())
    }
}

impl Shared {
    /// A task registered by another relay at the same moment.
    async fn registered_meanwhile(&self, hash: &str) -> Result<Task, StoreError> {
        let (row, _) = self
            .task_row(hash)
            .await?
            .ok_or_else(|| unavailable("the task vanished while being registered"))?;
        Ok(row.task)
    }

    /// The first final event of a task being registered that is already
    /// stored (its callback came first): the messages on the dedupe
    /// subjects of its final callbacks' keys.
    async fn stored_final(&self, route: &str, keys: &[[u8; 32]]) -> Result<Option<(EventId, Origin)>, StoreError> {
        if keys.is_empty() {
            return Ok(None);
        }
        let stream = self.stream(route)?;
        let mut first: Option<(EventId, Origin)> = None;
        for hash in keys {
            let subject = layout::event_subject(route, hash);
            let m = match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => m,
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => continue,
                Err(e) => return Err(unavailable(e)),
            };
            let ev = super::event::decode(route, m.sequence, layout::millis(m.time), &m.headers, Bytes::new());
            if first.is_none_or(|(f, _)| ev.id < f) {
                first = Some((ev.id, ev.meta.origin));
            }
        }
        Ok(first)
    }
}

impl NatsStore {
    pub async fn register_task(&self, t: NewTask) -> Result<Task, StoreError> {
        let s = &self.shared;
        if !s.ready.load(Ordering::Acquire) {
            return Err(unavailable("NATS is not reachable"));
        }
        let hash = layout::task_hash(&t.route, &t.task_id);
        let torn = match s.task_entry(&hash).await? {
            None => None,
            Some(TaskEntry::Row(row, _)) => return Ok(row.task),
            Some(TaskEntry::Torn(revision, v)) => {
                // Its old work message, should it come, names no row: dropped
                // (`due_task`), as the embedded store drops its schedule rows.
                log_torn(&t.route, &t.task_id, &hash, &v, "registered again");
                Some(revision)
            }
        };
        // Its final callback came first: settled at once, never polled.
        if let Some((event, origin)) = s.stored_final(&t.route, &t.terminal_keys).await? {
            let row = TaskRow {
                work: 0,
                task: Task::found_settled(&t, event, origin),
            };
            if s.write_new_task_row(&hash, &row, torn).await? {
                return Ok(row.task);
            }
            return s.registered_meanwhile(&hash).await;
        }
        // The work first (when the route reconciles), then the row naming it.
        let mut work = 0;
        if let Some(first) = t.first_poll_ms {
            let msg = TaskWork {
                route: t.route.clone(),
                task_id: t.task_id.clone(),
                registered_ms: t.now_ms,
                first_poll_ms: first,
            };
            // Over a torn row, its own message id: the registration's, within
            // the duplicate window, would name the old message.
            let nonce = match torn {
                Some(revision) => format!("{hash}.{revision}"),
                None => hash.clone(),
            };
            work = s.publish_work(layout::task_subject(&hash), &nonce, &msg).await?;
        }
        let row = TaskRow {
            work,
            task: Task::new(&t),
        };
        if !s.write_new_task_row(&hash, &row, torn).await? {
            return s.registered_meanwhile(&hash).await;
        }
        // A final callback stored between the look above and the row: its
        // mark (after its publish) found no row, so settle the task here.
        // One of the two sees the other's write.
        if let Some((event, origin)) = s.stored_final(&t.route, &t.terminal_keys).await? {
            let mark = TaskMark {
                task_id: t.task_id.clone(),
                terminal: true,
                provider_state: None,
                if_new: false,
            };
            let accepted = Accepted {
                id: event,
                duplicate: false,
            };
            s.mark_task(&t.route, &mark, origin, &accepted).await?;
            if let Some((now, _)) = s.task_row(&hash).await? {
                return Ok(now.task);
            }
        }
        Ok(row.task)
    }

    /// Give the open tasks of `routes` (name, `after` in ms) that have no
    /// next poll their first poll: a work message each, then the row naming
    /// it, only if nobody changed the row meanwhile. The message may reach a
    /// reconciler before the row names it: `due_task` then takes it over.
    pub async fn schedule_tasks(&self, routes: &[(String, u64)]) -> Result<usize, StoreError> {
        let s = &self.shared;
        if !s.ready.load(Ordering::Acquire) {
            return Err(unavailable("NATS is not reachable"));
        }
        let after = |row: &TaskRow| {
            let (_, after_ms) = routes.iter().find(|(r, _)| *r == row.task.route)?;
            row.task.unscheduled().then_some(*after_ms)
        };
        let values = s.latest_values(layout::TASKS, "t.", SCAN_LIMIT).await?;
        if values.len() >= SCAN_LIMIT {
            tracing::warn!(
                limit = SCAN_LIMIT,
                "more expected tasks than one scan reads: some registered before their route reconciled may stay unscheduled"
            );
        }
        let mut scheduled = 0;
        for (hash, v) in values {
            if serde_json::from_slice::<TaskRow>(&v)
                .ok()
                .as_ref()
                .and_then(after)
                .is_none()
            {
                continue;
            }
            let Some((mut row, revision)) = s.task_row(&hash).await? else {
                continue;
            };
            let Some(after_ms) = after(&row) else { continue };
            let due = row.task.schedule_first_poll(after_ms, crate::clock::now_ms());
            let msg = TaskWork {
                route: row.task.route.clone(),
                task_id: row.task.task_id.clone(),
                registered_ms: row.task.registered_ms,
                first_poll_ms: due,
            };
            // Its own message id: a publish of the registration's id within
            // the duplicate window would name a message already gone.
            let nonce = format!("{hash}.{revision}");
            row.work = s.publish_work(layout::task_subject(&hash), &nonce, &msg).await?;
            let updated = s
                .tasks_bucket()?
                .update(layout::task_key(&hash), encode(&row), revision)
                .await;
            scheduled += usize::from(updated.is_ok());
            s.wrote(u64::from(updated.is_ok()));
        }
        Ok(scheduled)
    }

    /// Record a poll that did not settle the task, and reschedule (or drop)
    /// its work message.
    pub async fn update_task(
        &self,
        route: &str,
        task_id: &str,
        update: TaskUpdate,
    ) -> Result<Option<Task>, StoreError> {
        let s = &self.shared;
        let hash = layout::task_hash(route, task_id);
        let now = crate::clock::now_ms();
        // Written at the revision read: a callback settling the task (or
        // another relay's write) between the read and the write is read
        // again, not overwritten (it reopened a called-back task as polling).
        for _ in 0..UPDATE_TRIES {
            let (mut row, revision) = match s.task_entry(&hash).await? {
                None => {
                    s.settle_task_work(&hash, AckKind::Term).await;
                    return Ok(None);
                }
                Some(TaskEntry::Row(row, revision)) => (row, revision),
                Some(TaskEntry::Torn(revision, v)) => {
                    // A fresh row, in charge of the message this poll holds.
                    log_torn(route, task_id, &hash, &v, "recording this poll");
                    let task = fresh_task(route, task_id, now);
                    let row = TaskRow {
                        work: s.held_task_seq(&hash).unwrap_or(0),
                        task,
                    };
                    (row, revision)
                }
            };
            if !update.applies_to(row.task.state) {
                s.settle_task_work(&hash, AckKind::Ack).await;
                return Ok(Some(row.task));
            }
            row.task.polled(&update, now);
            let settle = match row.task.next_poll_ms {
                Some(next) => AckKind::Nak(Some(std::time::Duration::from_millis(next.saturating_sub(now)))),
                None => AckKind::Ack,
            };
            #[cfg(test)]
            if SETTLE_BEFORE_POLL_WRITE.with(|f| f.replace(false)) {
                let mut settled = row.clone();
                settled.task.state = crate::store::TaskState::CalledBack;
                settled.task.next_poll_ms = None;
                let bucket = s.tasks_bucket()?;
                bucket
                    .put(layout::task_key(&hash), encode(&settled))
                    .await
                    .map_err(unavailable)?;
            }
            match s
                .tasks_bucket()?
                .update(layout::task_key(&hash), encode(&row), revision)
                .await
            {
                Ok(_) => {
                    s.wrote(1);
                    s.settle_task_work(&hash, settle).await;
                    return Ok(Some(row.task));
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(unavailable(format!(
            "task {task_id:?} of route {route:?}: its row changed at each of {UPDATE_TRIES} writes"
        )))
    }

    /// Task rows expire with the bucket's `max_age` (the retention); this
    /// removes the ones registered before `cutoff_ms` sooner when the
    /// caller's cutoff is later. Open ones too, unlike the embedded store
    /// ([`Task::expired`]): a task's work message expires at the retention
    /// after its registration whatever happens, so a task still open then is
    /// polled no more (`check-config` warns when a route's `give_up` is not
    /// shorter than the retention).
    pub async fn sweep_tasks(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        let rows = self.shared.task_rows().await?;
        let bucket = self.shared.tasks_bucket()?;
        let mut removed = 0;
        for r in rows.iter().map(|r| &r.task).filter(|t| t.registered_ms < cutoff_ms) {
            bucket
                .purge(layout::task_key(&layout::task_hash(&r.route, &r.task_id)))
                .await
                .map_err(unavailable)?;
            self.shared.wrote(1);
            removed += 1;
        }
        Ok(removed)
    }
}
