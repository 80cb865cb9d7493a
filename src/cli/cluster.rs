//! `hookrelay apply-cluster-settings`: the one deliberate way to change the
//! settings the relays of a cluster share (`store.retention`,
//! `store.nats.replicas`, `store.nats.takeover`) on the streams, buckets and
//! consumers that exist (also those of routes and subscribers the config
//! does not name); a relay itself refuses to start with values that differ
//! from the cluster's. Prints each change.

use std::process::ExitCode;

use super::Cli;
use crate::config::{Config, StoreBackend};
use crate::store::nats::NatsStore;
use crate::store::Topology;

pub(super) fn apply_cluster_settings(cli: &Cli) -> ExitCode {
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let StoreBackend::Nats(nats) = &config.store.backend else {
        eprintln!(
            "error: {}: key `store.backend`: apply-cluster-settings is for cluster mode (backend = \"nats\")",
            cli.config.display()
        );
        return ExitCode::from(2);
    };
    crate::logging::init_command(&config.log);
    let rt = super::runtime();
    let result = rt.block_on(async {
        let store = NatsStore::open(nats, config.store.retention, config.server.max_body).await?;
        let changes = store.apply_settings(&Topology::of(&config)).await;
        // Flushed when it worked. After a failure (NATS away) a flush only
        // waits out its bound and warns about acknowledgements a relay
        // held: this command holds none, and its error is the whole story.
        if changes.is_ok() {
            store.close().await;
        }
        changes
    });
    match result {
        Ok(changes) if changes.is_empty() => {
            println!("the cluster already has these settings; nothing changed");
            ExitCode::SUCCESS
        }
        Ok(changes) => {
            for c in &changes {
                println!("changed {c}");
            }
            println!(
                "{} objects changed; give every relay the same store.retention, store.nats.replicas and \
                 store.nats.takeover (a relay with other values refuses to start)",
                changes.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}{}", placement_hint(&e.to_string(), nats.replicas));
            ExitCode::FAILURE
        }
    }
}

/// What a placement JetStream refused means for the settings (the error
/// alone read as the store failing; cluster review, stop 65).
fn placement_hint(error: &str, replicas: usize) -> String {
    match error.contains("no suitable peers for placement") {
        true => format!(" (store.nats.replicas = {replicas} needs at least {replicas} JetStream nodes with room)"),
        false => String::new(),
    }
}

#[cfg(test)]
#[test]
fn a_placement_refusal_names_the_setting() {
    let e = "store cannot persist: stream HR_DL: jetstream error: no suitable peers for placement";
    assert!(placement_hint(e, 5).contains("store.nats.replicas = 5 needs at least 5"));
    assert_eq!(placement_hint("NATS is not reachable", 5), "");
}
