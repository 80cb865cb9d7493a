//! The polls in flight: a task is polled by one poll at a time, and a poll
//! that panicked is reported with its task, so that the reconciler records
//! it as a failed poll (a panicked poll left its task marked in flight, never
//! polled again until a restart).

use std::collections::{HashMap, HashSet};
use std::future::Future;

use tokio::task::{Id, JoinSet};

use crate::store::Task;

/// A task: its route and id.
type TaskKey = (String, String);

fn key(task: &Task) -> TaskKey {
    (task.route.clone(), task.task_id.clone())
}

/// The polls running, and their tasks.
#[derive(Default)]
pub struct Polls {
    set: JoinSet<()>,
    running: HashMap<Id, Task>,
    keys: HashSet<TaskKey>,
}

impl Polls {
    /// Whether a poll of `task` is in flight (one is not started then).
    pub fn polling(&self, task: &Task) -> bool {
        self.keys.contains(&key(task))
    }

    /// Start `poll` for `task`.
    pub fn spawn(&mut self, task: Task, poll: impl Future<Output = ()> + Send + 'static) {
        self.keys.insert(key(&task));
        let id = self.set.spawn(poll).id();
        self.running.insert(id, task);
    }

    /// Forget the polls that ended; the tasks of those that panicked.
    pub fn reap(&mut self) -> Vec<Task> {
        let mut panicked = Vec::new();
        while let Some(ended) = self.set.try_join_next_with_id() {
            let (id, panic) = match ended {
                Ok((id, ())) => (id, false),
                Err(e) => (e.id(), e.is_panic()),
            };
            if let Some(task) = self.running.remove(&id) {
                self.keys.remove(&key(&task));
                if panic {
                    panicked.push(task);
                }
            }
        }
        panicked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewTask;

    fn task(id: &str) -> Task {
        Task::new(&NewTask {
            route: "runway".into(),
            task_id: id.into(),
            now_ms: 0,
            first_poll_ms: Some(1),
            terminal_keys: Vec::new(),
        })
    }

    #[tokio::test]
    async fn a_poll_that_panics_is_reported_with_its_task_and_frees_it() {
        let mut polls = Polls::default();
        polls.spawn(task("t1"), async { panic!("test: a poll panics") });
        polls.spawn(task("t2"), async {});
        assert!(polls.polling(&task("t1")), "one poll at a time");
        let mut panicked = Vec::new();
        while polls.polling(&task("t1")) || polls.polling(&task("t2")) {
            tokio::task::yield_now().await;
            panicked.extend(polls.reap());
        }
        let ids: Vec<&str> = panicked.iter().map(|t| t.task_id.as_str()).collect();
        assert_eq!(ids, ["t1"]);
    }
}
