//! The reconciler's side of the task work queue in cluster mode: the
//! messages of tasks due for a poll, held by this relay while it polls them
//! (so no other relay polls the same task) until the poll's outcome settles
//! them ([`super::tasks`]: rescheduled, final, or given up).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;

use super::follow::{Follow, Follower, Held, Received};
use super::tasks::{encode, TaskRow, TaskWork};
use super::torn_task::TaskEntry;
use super::{layout, NatsStore, Shared, EARLY_MS};
use crate::store::{NewTask, StoreError, Task};

impl Shared {
    /// The held-message map of this relay's task follower (an empty one
    /// before the reconciler first asked for work).
    pub(super) fn task_follower_held(&self) -> Held {
        self.task_follower
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|f| f.held.clone())
            .unwrap_or_default()
    }

    /// Settle a message without working on it.
    async fn drop_task_message(&self, r: Received, kind: AckKind) {
        super::follow::release(&self.task_follower_held(), r.seq);
        let _ = r.acker.ack_with(kind).await;
    }

    /// The message as a task to poll now, or None when it is settled here:
    /// a second message for a task another one is in charge of, a task that
    /// is final or gone, or one another relay rescheduled for later.
    async fn due_task(&self, r: Received, now_ms: u64) -> Result<Option<Task>, StoreError> {
        let Some(hash) = r.message.subject.as_str().strip_prefix("hr.tk.").map(str::to_string) else {
            self.drop_task_message(r, AckKind::Term).await;
            return Ok(None);
        };
        let (mut row, revision) = match self.task_entry(&hash).await? {
            Some(TaskEntry::Row(row, revision)) => (row, revision),
            Some(TaskEntry::Torn(..)) => return Ok(self.stand_in(r, hash).await),
            None => {
                // Its registration stopped between the work and the row (write
                // the row), or retention removed the task (drop the work).
                let Ok(w) = serde_json::from_slice::<TaskWork>(&r.message.payload) else {
                    self.drop_task_message(r, AckKind::Term).await;
                    return Ok(None);
                };
                let cutoff = now_ms.saturating_sub(self.retention.as_millis() as u64);
                if w.registered_ms < cutoff {
                    self.drop_task_message(r, AckKind::Term).await;
                    return Ok(None);
                }
                let mut task = Task::new(&NewTask {
                    route: w.route,
                    task_id: w.task_id,
                    now_ms: w.registered_ms,
                    first_poll_ms: Some(w.first_poll_ms),
                    // Its poll finds a result already stored (a duplicate).
                    terminal_keys: Vec::new(),
                });
                task.updated_ms = w.registered_ms;
                let row = TaskRow { work: r.seq, task };
                if !self.create_task_row(&hash, &row).await? {
                    self.drop_task_message(r, AckKind::Nak(None)).await;
                    return Ok(None);
                }
                (row, 0)
            }
        };
        if row.work == 0 && row.task.unscheduled() {
            // Scheduled when its route started reconciling (`schedule_tasks`:
            // the message first, then the row), and here before the row
            // names it, or the row's update failed: take the message over.
            let Ok(w) = serde_json::from_slice::<TaskWork>(&r.message.payload) else {
                self.drop_task_message(r, AckKind::Term).await;
                return Ok(None);
            };
            row.work = r.seq;
            row.task.next_poll_ms = Some(w.first_poll_ms);
            let key = layout::task_key(&hash);
            if self.tasks_bucket()?.update(key, encode(&row), revision).await.is_err() {
                // Changed meanwhile (by its scheduler, most likely): look again.
                self.drop_task_message(r, AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
                return Ok(None);
            }
            self.wrote(1);
        }
        if row.work != r.seq || row.task.state.is_final() {
            self.drop_task_message(r, AckKind::Ack).await;
            return Ok(None);
        }
        if let Some(due) = row.task.next_poll_ms.filter(|d| *d > now_ms + EARLY_MS) {
            self.drop_task_message(r, AckKind::Nak(Some(Duration::from_millis(due - now_ms))))
                .await;
            return Ok(None);
        }
        let stale = self
            .held_tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hash, (r.seq, r.acker.clone()));
        if let Some((seq, _)) = stale.filter(|(seq, _)| *seq != r.seq) {
            super::follow::release(&self.task_follower_held(), seq);
        }
        Ok(Some(row.task))
    }
}

impl Shared {
    /// A work message of a task whose row is torn: a stand-in task, registered
    /// at its first poll, so that it is still polled and the poll's outcome
    /// replaces the row (`update_task`, which logs it); failing instead, the
    /// message came back after every `takeover` and the task was never polled.
    /// Any message stands for the task (a torn row names none), but one a
    /// round: another one for a task already held is dropped (the fresh row
    /// names the held one).
    async fn stand_in(&self, r: Received, hash: String) -> Option<Task> {
        let Ok(w) = serde_json::from_slice::<TaskWork>(&r.message.payload) else {
            self.drop_task_message(r, AckKind::Term).await;
            return None;
        };
        let another = {
            let mut held = self.held_tasks.lock().unwrap_or_else(|e| e.into_inner());
            let another = held.get(&hash).is_some_and(|(seq, _)| *seq != r.seq);
            if !another {
                held.insert(hash, (r.seq, r.acker.clone()));
            }
            another
        };
        if another {
            self.drop_task_message(r, AckKind::Ack).await;
            return None;
        }
        Some(Task::new(&NewTask {
            route: w.route,
            task_id: w.task_id,
            now_ms: w.first_poll_ms,
            first_poll_ms: Some(w.first_poll_ms),
            terminal_keys: Vec::new(),
        }))
    }
}

impl NatsStore {
    /// Up to `limit` tasks due for a poll, taken from the shared work queue
    /// (NATS hands a task to one relay at a time, when it is due); the
    /// reconciler looks again within a second.
    pub async fn due_tasks(&self, now_ms: u64, limit: usize) -> Result<(Vec<Task>, Option<u64>), StoreError> {
        let s = &self.shared;
        let received: Vec<Received> = {
            let mut f = s.task_follower.lock().unwrap_or_else(|e| e.into_inner());
            let f = f.get_or_insert_with(|| Follower::start(s.clone(), Follow::Reconciler, Arc::default()));
            std::iter::from_fn(|| f.next()).take(limit).collect()
        };
        let mut due = Vec::new();
        for r in received {
            let seq = r.seq;
            match s.due_task(r, now_ms).await {
                Ok(Some(t)) => due.push(t),
                Ok(None) => {}
                Err(e) => {
                    // Comes again after `takeover`, here or elsewhere.
                    super::follow::release(&s.task_follower_held(), seq);
                    return Err(e);
                }
            }
        }
        Ok((due, Some(now_ms + 1000)))
    }
}
