//! `verify = "fetch"`: the provider's records fetched for the callbacks'
//! checks, shared. A record answers the other checks of its task for
//! [`SHARED`] once the task has ended, [`SHARED_RUNNING`] while it runs; a
//! task is looked up by one check at a time, and the checks that waited
//! take that look-up's outcome, its error too. Owns the cache and the turns;
//! not the verdicts (`verify_gate`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::provider::{Product, ProviderClient, ProviderError, Record};

use super::recent::REMEMBER;
use super::verify_gate::{lock, SHARED, SHARED_RUNNING};

/// One look-up of a task at a time ([`Records::get`]), with the last
/// one's outcome and when it ended.
type Turn = Arc<tokio::sync::Mutex<Option<(tokio::time::Instant, Result<Record, ProviderError>)>>>;

/// A task's turn held by one check: when the check ends or is dropped (an
/// attempt aborted at a stop, while it waits or asks), the turn leaves the
/// map once no other check holds it (an aborted waiter left it there for
/// good, task ids being unique).
struct TurnHeld<'a> {
    turn: Turn,
    key: (String, String),
    map: &'a Mutex<HashMap<(String, String), Turn>>,
}

impl Drop for TurnHeld<'_> {
    fn drop(&mut self) {
        let mut map = lock(self.map);
        // The map's and this one: no other check holds it, and none can
        // take it while the map is locked.
        if Arc::strong_count(&self.turn) <= 2 {
            map.remove(&self.key);
        }
    }
}

/// Records fetched lately and the look-ups going on, by route and task id.
#[derive(Default)]
pub(super) struct Records {
    /// Records fetched lately, with when.
    fetched: Mutex<HashMap<(String, String), (tokio::time::Instant, Record)>>,
    /// A look-up going on: the subscribers' lanes of one event (or the
    /// events of one task) checking at the same time wait for it and read
    /// its outcome, not ask the provider each.
    turns: Mutex<HashMap<(String, String), Turn>>,
}

impl Records {
    /// The record of `task_id`, fetched at most once per [`SHARED`] (or
    /// [`SHARED_RUNNING`]), one look-up at a time: checks of the same task
    /// that start while one is asked wait for its record (each missed the
    /// record not yet fetched and asked too: 161 look-ups for 60 events with
    /// four subscribers, the route drained at the provider's pace for status
    /// calls; combined-features review, stop 73).
    pub(super) async fn get(
        &self,
        route: &str,
        product: Product,
        client: &ProviderClient,
        task_id: &str,
    ) -> Result<Record, ProviderError> {
        let key = (route.to_string(), task_id.to_string());
        let asked = tokio::time::Instant::now();
        let turn = TurnHeld {
            turn: lock(&self.turns).entry(key.clone()).or_default().clone(),
            key,
            map: &self.turns,
        };
        let mut last = turn.turn.lock().await;
        // A look-up that ended while this one waited answers it too, an
        // error as well (each waiter asked in its turn: a provider timing
        // out made four subscribers wait four timeouts, one after another).
        if let Some((_, outcome)) = last.as_ref().filter(|(at, _)| *at >= asked) {
            return outcome.clone();
        }
        let outcome = self.record_now(&turn.key, product, client, task_id).await;
        *last = Some((tokio::time::Instant::now(), outcome.clone()));
        outcome
    }

    /// [`Self::get`] in its turn: the shared record if fresh, else asked.
    async fn record_now(
        &self,
        key: &(String, String),
        product: Product,
        client: &ProviderClient,
        task_id: &str,
    ) -> Result<Record, ProviderError> {
        let now = tokio::time::Instant::now();
        if let Some((at, r)) = lock(&self.fetched).get(key) {
            let fresh = if r.stage().is_terminal() {
                SHARED
            } else {
                SHARED_RUNNING
            };
            if now.duration_since(*at) < fresh {
                return Ok(r.clone());
            }
        }
        let record = client.record(product, task_id).await?;
        let mut records = lock(&self.fetched);
        if records.len() >= REMEMBER {
            records.retain(|_, (at, _)| now.duration_since(*at) < SHARED);
        }
        if records.len() < REMEMBER {
            records.insert(key.clone(), (tokio::time::Instant::now(), record.clone()));
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{ApiKey, ClientConfig};
    use std::time::Duration;

    /// A check aborted while it waits for another's look-up, then the one
    /// asking aborted too (a stop cuts attempts short), leave no turn in
    /// the map: task ids are unique, so a turn left there stayed for good.
    #[tokio::test]
    async fn aborted_checks_leave_no_turn_behind() {
        // A provider that takes the connection and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(tokio::sync::Notify::new());
        let told = accepted.clone();
        let provider = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
                told.notify_one();
            }
        });
        let key = ApiKey::new("sk-test").unwrap();
        let client = ProviderClient::new(ClientConfig::new(format!("http://{addr}"), key)).unwrap();
        let records = Arc::new(Records::default());
        let check = || {
            let (records, client) = (records.clone(), client.clone());
            tokio::spawn(async move { records.get("r", Product::Runway, &client, "t").await })
        };
        let asking = check();
        accepted.notified().await;
        let waiting = check();
        let turn = lock(&records.turns)
            .get(&("r".into(), "t".into()))
            .cloned()
            .expect("a turn");
        tokio::time::timeout(Duration::from_secs(5), async {
            // The map's, the asking check's, the waiting check's and this one.
            while Arc::strong_count(&turn) < 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the second check waits for the first's look-up");
        drop(turn);
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        assert_eq!(lock(&records.turns).len(), 1, "the asking check still holds its turn");
        asking.abort();
        assert!(asking.await.unwrap_err().is_cancelled());
        assert!(lock(&records.turns).is_empty(), "aborted checks left their turn behind");
        provider.abort();
    }
}
