//! Expected-task rows of the sled backend: their keys (`G`: the task, `P`:
//! its next poll, see the table in [`super::keys`]) and the task row's binary
//! form (a [`Task`] without its route and id, which are in the key). Does
//! not decide state changes (see [`super::tasks`]).

use crate::store::{EventId, Task, TaskState};

/// `G` route (4), task id → task row.
pub const G: u8 = b'G';
/// `P` due ms (8), route (4), task id → nothing: the reconciler's schedule.
pub const P: u8 = b'P';

pub fn task(route: u32, task_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + task_id.len());
    k.push(G);
    k.extend_from_slice(&route.to_be_bytes());
    k.extend_from_slice(task_id.as_bytes());
    k
}

pub fn task_prefix(route: u32) -> Vec<u8> {
    let mut k = vec![G];
    k.extend_from_slice(&route.to_be_bytes());
    k
}

/// (route, task id) of a `G` key.
pub fn parse_task(k: &[u8]) -> Option<(u32, String)> {
    let route = u32::from_be_bytes(k.get(1..5)?.try_into().ok()?);
    Some((route, String::from_utf8(k.get(5..)?.to_vec()).ok()?))
}

pub fn task_due(due_ms: u64, route: u32, task_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(13 + task_id.len());
    k.push(P);
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(&route.to_be_bytes());
    k.extend_from_slice(task_id.as_bytes());
    k
}

/// (due ms, route, task id) of a `P` key.
pub fn parse_task_due(k: &[u8]) -> Option<(u64, u32, String)> {
    let due = u64::from_be_bytes(k.get(1..9)?.try_into().ok()?);
    let route = u32::from_be_bytes(k.get(9..13)?.try_into().ok()?);
    Some((due, route, String::from_utf8(k.get(13..)?.to_vec()).ok()?))
}

fn state_code(s: TaskState) -> u8 {
    match s {
        TaskState::Waiting => 0,
        TaskState::CalledBack => 1,
        TaskState::Polling => 2,
        TaskState::Recovered => 3,
        TaskState::GaveUp => 4,
    }
}

fn put_str(out: &mut Vec<u8>, s: &Option<String>) {
    match s {
        None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
        Some(s) => {
            // Provider words and error texts; clipped so a row stays small.
            let mut end = s.len().min(1024);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            out.extend_from_slice(&(end as u32).to_be_bytes());
            out.extend_from_slice(&s.as_bytes()[..end]);
        }
    }
}

/// The row of a task; its route and id are in the key, not here. Version
/// byte first, so the row can grow.
pub fn encode(r: &Task) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(1);
    out.push(state_code(r.state));
    out.extend_from_slice(&r.registered_ms.to_be_bytes());
    out.extend_from_slice(&r.updated_ms.to_be_bytes());
    out.extend_from_slice(&r.next_poll_ms.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&r.polls.to_be_bytes());
    match r.event {
        Some(id) => {
            out.push(1);
            out.extend_from_slice(&id.bytes());
        }
        None => out.push(0),
    }
    put_str(&mut out, &r.provider_state);
    put_str(&mut out, &r.last_error);
    out
}

/// The task of a row whose key named `route` and `task_id`.
pub fn decode(v: &[u8], route: &str, task_id: &str) -> Option<Task> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = v.get(at..at + n)?;
        at += n;
        Some(s)
    };
    if take(1)? != [1] {
        return None;
    }
    let state = match take(1)?[0] {
        0 => TaskState::Waiting,
        1 => TaskState::CalledBack,
        2 => TaskState::Polling,
        3 => TaskState::Recovered,
        4 => TaskState::GaveUp,
        _ => return None,
    };
    let u64_of = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
    let registered_ms = u64_of(take(8)?);
    let updated_ms = u64_of(take(8)?);
    let next = u64_of(take(8)?);
    let polls = u32::from_be_bytes(take(4)?.try_into().ok()?);
    let event = match take(1)?[0] {
        1 => Some(EventId::from_slice(take(16)?)?),
        _ => None,
    };
    let mut string = || -> Option<Option<String>> {
        let n = u32::from_be_bytes(take(4)?.try_into().ok()?);
        if n == u32::MAX {
            return Some(None);
        }
        Some(Some(String::from_utf8_lossy(take(n as usize)?).into_owned()))
    };
    let provider_state = string()?;
    let last_error = string()?;
    Some(Task {
        route: route.to_string(),
        task_id: task_id.to_string(),
        state,
        registered_ms,
        updated_ms,
        next_poll_ms: (next > 0).then_some(next),
        polls,
        provider_state,
        last_error,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_keys_round_trip() {
        let row = Task {
            route: "r".into(),
            task_id: "t".into(),
            state: TaskState::Polling,
            registered_ms: 5,
            updated_ms: 9,
            next_poll_ms: Some(40),
            polls: 3,
            provider_state: Some("generating".into()),
            last_error: None,
            event: Some(EventId::from_parts(7, 1)),
        };
        assert_eq!(decode(&encode(&row), "r", "t"), Some(row));
        assert_eq!(parse_task(&task(3, "t-1")), Some((3, "t-1".to_string())));
        assert_eq!(parse_task_due(&task_due(9, 3, "t-1")), Some((9, 3, "t-1".to_string())));
        assert!(
            task_due(9, 7, "z") < task_due(10, 1, "a"),
            "the schedule sorts by time first"
        );
    }
}
