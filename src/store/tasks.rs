//! Expected tasks across the store seam: a task whose callback the relay is
//! owed (registered through the admin API or the submit proxy), what became
//! of it, and the poll schedule of the reconciler.
//!
//! A task is keyed by (route, provider task id). Its state changes in the
//! writer, in the same atomic write as the event that causes it: a terminal
//! callback appended for the task marks it `called_back`; a terminal record
//! appended by the reconciler (origin `poll`) marks it `recovered`, or
//! `called_back` when that record turned out to duplicate a real callback.
//! Polls that find the task unfinished, and giving up, are [`TaskUpdate`]s.
//! Does not poll (see `crate::reconcile`) nor know the provider.

use super::{Accepted, EventId, Origin, Store, StoreError};
use std::fmt;
use std::str::FromStr;

/// Where an expected task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Registered; no terminal callback yet and not polled yet.
    Waiting,
    /// Its terminal callback arrived.
    CalledBack,
    /// Polled at least once and still unfinished at the provider.
    Polling,
    /// Its result was fetched by polling and appended as an event.
    Recovered,
    /// No result by `give_up`, or the provider no longer knows the task.
    GaveUp,
}

impl TaskState {
    pub const ALL: [TaskState; 5] = [
        TaskState::Waiting,
        TaskState::CalledBack,
        TaskState::Polling,
        TaskState::Recovered,
        TaskState::GaveUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Waiting => "waiting",
            TaskState::CalledBack => "called_back",
            TaskState::Polling => "polling",
            TaskState::Recovered => "recovered",
            TaskState::GaveUp => "gave_up",
        }
    }

    /// Nothing more happens to the task (no polls are scheduled).
    pub fn is_final(self) -> bool {
        matches!(self, TaskState::CalledBack | TaskState::Recovered | TaskState::GaveUp)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<TaskState, String> {
        TaskState::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            let names: Vec<_> = TaskState::ALL.iter().map(|t| t.as_str()).collect();
            format!("unknown task state {s:?}: use one of {}", names.join(", "))
        })
    }
}

/// An expected task as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Task {
    pub route: String,
    /// The provider's task id (as its create answer gave it).
    pub task_id: String,
    pub state: TaskState,
    /// When it was registered: `after` and `give_up` count from here.
    pub registered_ms: u64,
    /// The last change of state, poll or callback.
    pub updated_ms: u64,
    /// When the reconciler polls it next; None once final or without `reconcile`.
    pub next_poll_ms: Option<u64>,
    /// Status calls made for it (answered or not).
    pub polls: u32,
    /// The provider's own state word at the last poll (`generating`, …).
    pub provider_state: Option<String>,
    /// Why the last poll failed, or why the task was given up.
    pub last_error: Option<String>,
    /// The event that settled it (the callback, or the recovered result).
    pub event: Option<EventId>,
}

impl Task {
    /// A task just registered.
    pub fn new(t: &NewTask) -> Task {
        Task {
            route: t.route.clone(),
            task_id: t.task_id.clone(),
            state: TaskState::Waiting,
            registered_ms: t.now_ms,
            updated_ms: t.now_ms,
            next_poll_ms: t.first_poll_ms,
            polls: 0,
            provider_state: None,
            last_error: None,
            event: None,
        }
    }

    /// Record a poll that did not settle the task, or a verified callback
    /// that did (the caller checked [`TaskUpdate::applies_to`]).
    pub fn polled(&mut self, update: &TaskUpdate, now_ms: u64) {
        self.updated_ms = now_ms;
        if !matches!(update, TaskUpdate::Verified { .. }) {
            self.polls = self.polls.saturating_add(1);
        }
        match update {
            TaskUpdate::Polled {
                next_poll_ms,
                provider_state,
                error,
            } => {
                self.state = TaskState::Polling;
                self.next_poll_ms = Some(*next_poll_ms);
                if provider_state.is_some() {
                    self.provider_state = provider_state.clone();
                }
                self.last_error = error.clone();
            }
            TaskUpdate::GaveUp { error } => {
                self.state = TaskState::GaveUp;
                self.next_poll_ms = None;
                self.last_error = Some(error.clone());
            }
            TaskUpdate::Verified { event } => {
                self.state = TaskState::CalledBack;
                self.next_poll_ms = None;
                self.event = Some(*event);
                self.last_error = None;
            }
        }
    }

    /// Open with no poll scheduled: registered while its route did not
    /// reconcile.
    pub fn unscheduled(&self) -> bool {
        !self.state.is_final() && self.next_poll_ms.is_none()
    }

    /// Schedule the first poll of an [`unscheduled`](Self::unscheduled)
    /// task: `after_ms` past its registration, or `now_ms` if that has
    /// passed. Returns when.
    pub fn schedule_first_poll(&mut self, after_ms: u64, now_ms: u64) -> u64 {
        let due = self.registered_ms.saturating_add(after_ms).max(now_ms);
        self.next_poll_ms = Some(due);
        due
    }

    /// Whether task retention forgets it at `cutoff_ms` (now minus
    /// `store.retention`). A settled task goes once it settled before the
    /// cutoff, so it stays visible for the retention after it settled. An open
    /// task with a poll scheduled never goes: its reconciler settles it, as
    /// `gave_up` at the latest, at its first poll after its route's
    /// `give_up` (or at its next poll when the route no longer reconciles),
    /// and it goes the retention after that. An open task nobody polls (its
    /// route did not reconcile when it was registered, and still does not)
    /// goes once it was registered before the cutoff: only its callback
    /// could settle it, and the store must stay bounded.
    pub fn expired(&self, cutoff_ms: u64) -> bool {
        if self.state.is_final() {
            self.updated_ms < cutoff_ms
        } else {
            self.next_poll_ms.is_none() && self.registered_ms < cutoff_ms
        }
    }

    /// Settle the task with the event `accepted` just appended for `mark`
    /// (or found as a duplicate) by the rule of [`settled_state`] (the
    /// caller checked [`TaskMark::settles`]). False: the task stays as it is.
    pub fn settle(&mut self, mark: &TaskMark, origin: Origin, accepted: &Accepted, now_ms: u64) -> bool {
        let Some(state) = settled_state(self.state, origin, accepted.duplicate) else {
            return false;
        };
        self.settled(state, accepted.id, mark, origin, now_ms);
        true
    }

    /// Settled by `event` ([`settled_state`] chose `state`); a polled result
    /// counts its poll. An earlier poll's error no longer describes it.
    pub fn settled(&mut self, state: TaskState, event: EventId, mark: &TaskMark, origin: Origin, now_ms: u64) {
        self.state = state;
        if mark.provider_state.is_some() {
            self.provider_state = mark.provider_state.clone();
        }
        self.updated_ms = now_ms;
        self.next_poll_ms = None;
        self.event = Some(event);
        self.last_error = None;
        if origin == Origin::Poll {
            self.polls = self.polls.saturating_add(1);
        }
    }
}

impl Task {
    /// A task registered after its final event `event` (of `origin`) was
    /// stored: settled by it at once, never polled.
    pub fn found_settled(t: &NewTask, event: EventId, origin: Origin) -> Task {
        let mut task = Task::new(t);
        task.state = settled_state(TaskState::Waiting, origin, false).unwrap_or(TaskState::CalledBack);
        task.next_poll_ms = None;
        task.event = Some(event);
        task
    }
}

/// The settling rule every backend applies when a terminal result is
/// appended for a task in state `current`: a callback marks an open task
/// `called_back`; a polled result marks it `recovered` when it was new,
/// `called_back` when it duplicated a stored callback; a final task is never
/// reopened, except that a late callback for a given-up task says it came.
/// None: leave the task as it is.
pub fn settled_state(current: TaskState, origin: Origin, duplicate: bool) -> Option<TaskState> {
    match current {
        TaskState::CalledBack | TaskState::Recovered => return None,
        TaskState::GaveUp if origin == Origin::Poll => return None,
        _ => {}
    }
    Some(match (origin, duplicate) {
        (Origin::Callback, _) => TaskState::CalledBack,
        (Origin::Poll, false) => TaskState::Recovered,
        (Origin::Poll, true) => TaskState::CalledBack,
    })
}

/// A task to register.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub route: String,
    pub task_id: String,
    pub now_ms: u64,
    /// First poll (registration + `after`); None: the route does not reconcile.
    pub first_poll_ms: Option<u64>,
    /// The dedupe hashes of the task's final callback (success, failure:
    /// [`crate::dedupe::DedupeKey::terminal_hashes`]): a task whose final
    /// event is already stored (its callback beat the registration)
    /// registers settled by it, not `waiting`.
    pub terminal_keys: Vec<[u8; 32]>,
}

/// What an appended event says about its route's expected task, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMark {
    pub task_id: String,
    /// The last callback the task will send (Suno's `text`/`first` are not).
    pub terminal: bool,
    /// The provider's state word when a poll settles the task (shown as the
    /// task's `provider_state`); None for a callback.
    pub provider_state: Option<String>,
    /// Settle the task only if the event is stored (not a duplicate): the
    /// first write of a polled result on a `verify = "fetch"` route, whose
    /// key may be owned by a forgery held as unverified. Its later write
    /// settles the task (stored beside the forgery: `recovered`; else
    /// `called_back` by the owner); a relay stopped in between left the task
    /// open, polled again.
    pub if_new: bool,
}

impl TaskMark {
    /// Whether the event `accepted` for this mark settles its task at all
    /// (the store then reads the task, not otherwise: nothing of it changes).
    pub fn settles(&self, accepted: &Accepted) -> bool {
        self.terminal && !(self.if_new && accepted.duplicate)
    }
}

/// A poll that did not settle the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskUpdate {
    /// Still unfinished (or the call failed and will be tried again).
    Polled {
        next_poll_ms: u64,
        provider_state: Option<String>,
        error: Option<String>,
    },
    /// Stop polling it for good.
    GaveUp { error: String },
    /// Its final callback, `event`, agreed with the provider's record (a
    /// `verify = "fetch"` route: a callback settles its task only then, not
    /// when stored): `called_back`, as a callback stored on another route.
    Verified { event: EventId },
}

impl TaskUpdate {
    /// Whether the update changes a task in `state`: a poll's only an open
    /// task; a verified callback also one that was given up (it says the
    /// callback came, as [`settled_state`] rules for a stored one).
    pub fn applies_to(&self, state: TaskState) -> bool {
        match self {
            TaskUpdate::Verified { .. } => settled_state(state, Origin::Callback, false).is_some(),
            _ => !state.is_final(),
        }
    }
}

/// Filter for [`Store::tasks`].
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    pub route: Option<String>,
    pub state: Option<TaskState>,
    pub limit: usize,
}

/// Counts for the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskStats {
    /// Tasks per state (every state present, zero included).
    pub by_state: Vec<(TaskState, u64)>,
    /// Registration time of the oldest task still waiting or polling.
    pub oldest_open_ms: Option<u64>,
}

impl Store {
    /// Register an expected task. Registering a known task changes nothing
    /// (the stored task is returned).
    pub async fn register_task(&self, task: NewTask) -> Result<Task, StoreError> {
        match &self.backend {
            super::Backend::Sled(s) => s.register_task(task).await,
            super::Backend::Nats(s) => s.register_task(task).await,
        }
    }

    /// Record a poll that did not settle the task, or a verified callback
    /// that did. A task the update does not apply to now
    /// ([`TaskUpdate::applies_to`]: final meanwhile, its callback came) is
    /// left as it is. None: no such task.
    pub async fn update_task(
        &self,
        route: &str,
        task_id: &str,
        update: TaskUpdate,
    ) -> Result<Option<Task>, StoreError> {
        match &self.backend {
            super::Backend::Sled(s) => s.update_task(route, task_id, update).await,
            super::Backend::Nats(s) => s.update_task(route, task_id, update).await,
        }
    }

    /// One task; without `route`, the first route that has this task id.
    pub async fn task(&self, route: Option<String>, task_id: String) -> Result<Option<Task>, StoreError> {
        match &self.backend {
            super::Backend::Sled(s) => s.blocking(move |s| s.task(route.as_deref(), &task_id)).await,
            super::Backend::Nats(s) => s.task(route, task_id).await,
        }
    }

    /// Tasks matching the query, most recently registered first.
    pub async fn tasks(&self, q: TaskQuery) -> Result<Vec<Task>, StoreError> {
        match &self.backend {
            super::Backend::Sled(s) => s.blocking(move |s| s.tasks(&q)).await,
            super::Backend::Nats(s) => s.tasks(q).await,
        }
    }

    /// Up to `limit` tasks due for a poll at `now_ms`, earliest first, and
    /// when the next one not yet due is due.
    pub async fn due_tasks(&self, now_ms: u64, limit: usize) -> Result<(Vec<Task>, Option<u64>), StoreError> {
        match &self.backend {
            super::Backend::Sled(s) => s.blocking(move |s| s.due_tasks(now_ms, limit)).await,
            super::Backend::Nats(s) => s.due_tasks(now_ms, limit).await,
        }
    }

    /// Tasks per state and the oldest open one.
    pub async fn task_stats(&self) -> Result<TaskStats, StoreError> {
        match &self.backend {
            super::Backend::Sled(s) => s.blocking(|s| s.task_stats()).await,
            super::Backend::Nats(s) => s.task_stats().await,
        }
    }

    /// Give every open task of these routes that has no poll scheduled (it
    /// was registered while its route did not reconcile) its first poll:
    /// the route's `after` past its registration, or now if that has passed.
    /// Returns how many.
    pub async fn schedule_tasks(&self, routes: &[(String, std::time::Duration)]) -> Result<usize, StoreError> {
        let routes: Vec<(String, u64)> = routes.iter().map(|(r, a)| (r.clone(), a.as_millis() as u64)).collect();
        match &self.backend {
            super::Backend::Sled(s) => {
                let mut n = 0;
                for (route, after_ms) in &routes {
                    n += s.schedule_tasks(route, *after_ms).await?;
                }
                Ok(n)
            }
            super::Backend::Nats(s) => s.schedule_tasks(&routes).await,
        }
    }

    /// Task retention: forget the tasks [`Task::expired`] at `cutoff_ms`
    /// (never an open task its reconciler still polls). Returns how many.
    /// In cluster mode the bucket and the work queue also expire by
    /// themselves at the retention, open tasks included.
    pub async fn sweep_tasks(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        match &self.backend {
            super::Backend::Sled(s) => s.sweep_tasks(cutoff_ms).await,
            super::Backend::Nats(s) => s.sweep_tasks(cutoff_ms).await,
        }
    }
}

/// The newest `limit` (at least one) of the tasks offered, in list order:
/// newest registered first, then by task id and route. Holds `limit` tasks
/// however many are offered (a store keeps every task for `store.retention`).
pub(crate) struct Newest {
    heap: std::collections::BinaryHeap<Listed>,
    limit: usize,
}

impl Newest {
    pub(crate) fn new(limit: usize) -> Newest {
        let limit = limit.max(1);
        Newest {
            heap: std::collections::BinaryHeap::with_capacity(limit + 1),
            limit,
        }
    }

    pub(crate) fn offer(&mut self, task: Task) {
        self.heap.push(Listed(task));
        if self.heap.len() > self.limit {
            self.heap.pop();
        }
    }

    pub(crate) fn into_vec(self) -> Vec<Task> {
        self.heap.into_sorted_vec().into_iter().map(|l| l.0).collect()
    }
}

/// A task in list order: newest registered first, then by task id, then
/// by route. The greatest is the one listed last (dropped first from a full
/// heap).
struct Listed(Task);

impl Listed {
    fn key(&self) -> (std::cmp::Reverse<u64>, &str, &str) {
        (std::cmp::Reverse(self.0.registered_ms), &self.0.task_id, &self.0.route)
    }
}

impl PartialEq for Listed {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Listed {}

impl PartialOrd for Listed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Listed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

#[cfg(test)]
#[path = "tasks_tests.rs"]
mod tests;
