//! A fake task's script: how it ends and what happens to its callbacks.

use std::time::Duration;

use serde_json::Value;

/// How a task ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success,
    /// `code` is the callback's failure code (and the record's error code).
    Failure {
        code: i64,
        message: String,
    },
}

/// What happens to a task's callbacks.
#[derive(Debug, Clone, Default)]
pub struct Knobs {
    /// Never send the final callback (Suno's text/first still go out).
    pub lose: bool,
    /// Extra wait before the final callback's first attempt.
    pub delay: Duration,
    /// How many times the final callback is sent (each with its own retries); 0 = 1.
    pub copies: u32,
    /// Send this body instead of the genuine final one, with a valid signature
    /// for the task (the signature covers only `taskId.timestamp`).
    pub forged: Option<Value>,
}

/// A task's script.
#[derive(Debug, Clone)]
pub struct TaskPlan {
    pub outcome: Outcome,
    /// Time spent in each stage before the end; `None` = the fake's default.
    pub step: Option<Duration>,
    pub knobs: Knobs,
    /// The documented-elsewhere variants: Veo URLs as JSON strings under
    /// `info`, 4o `result_urls`, Market `message` for `msg`, Runway's task id
    /// only in `videoInfo` and `failCode: ""` (use code 400 with it).
    pub alternate: bool,
    /// Stages move only by [`FakeProvider::set_stage`]; no callbacks are sent.
    pub manual: bool,
}

impl TaskPlan {
    pub fn success() -> TaskPlan {
        TaskPlan {
            outcome: Outcome::Success,
            step: None,
            knobs: Knobs::default(),
            alternate: false,
            manual: false,
        }
    }
    pub fn failure(code: i64, message: &str) -> TaskPlan {
        TaskPlan {
            outcome: Outcome::Failure {
                code,
                message: message.into(),
            },
            ..TaskPlan::success()
        }
    }
    pub fn lose(mut self) -> Self {
        self.knobs.lose = true;
        self
    }
    pub fn late(mut self, by: Duration) -> Self {
        self.knobs.delay = by;
        self
    }
    pub fn copies(mut self, n: u32) -> Self {
        self.knobs.copies = n;
        self
    }
    pub fn forged(mut self, body: Value) -> Self {
        self.knobs.forged = Some(body);
        self
    }
    pub fn step(mut self, step: Duration) -> Self {
        self.step = Some(step);
        self
    }
    pub fn alternate(mut self) -> Self {
        self.alternate = true;
        self
    }
    pub fn manual(mut self) -> Self {
        self.manual = true;
        self
    }
}
