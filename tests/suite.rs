//! The integration tests, one binary: each module is a file beside this one
//! and holds the tests of one promise (its first lines say which). One binary
//! links the dependencies once, where a binary per file linked them 48 times
//! (6.9 GB of test binaries in a clean CI build, which ran the disk full).
//! Run one file's tests with `cargo test --test suite <file>::`, e.g.
//! `cargo test --test suite cursors::` (the filter matches any part of a
//! test's name: `pull::` also runs `nats_pull::` and `reconcile_pull::`).
//!
//! Four files are binaries of their own (`[[test]]` in Cargo.toml), so that
//! nothing else runs beside them: `media_large` measures the test process's
//! own peak RSS; `backlog` (a 100k drain), `media_bounded` (a 1 GiB archive)
//! and `nats_cluster` (three NATS nodes and two relays under load, with
//! `kill -9`) would load the machine under the timing-bound tests here.
//! `every_test_file_is_run` below checks that each file is one or the other.

mod common;

mod acme;
mod acme_outage;
mod acme_pace;
mod admin_bad_input;
mod admin_guard;
mod admin_slow_body;
mod admin_wrong_tokens;
mod allowlist;
mod answers;
mod bounded_connections;
mod cli;
mod cli_credentials;
mod cli_output;
mod cli_wrong_server;
mod cluster_switch;
mod config_errors;
mod config_limits;
mod connection_share;
mod console;
mod console_api;
mod cursors;
mod dead_letters;
mod dead_letters_gauge;
mod delivery;
mod delivery_h2;
mod duplicates;
mod event_pages;
mod floor_duplicates;
mod forward;
mod forward_acks;
mod forward_args;
mod forward_deaf_local;
mod forward_h2;
mod forward_local_answers;
mod forward_local_down;
mod forward_lost_hold;
mod forward_more_than_asked;
mod forward_stop;
mod hostile_http;
mod hostile_subscribers;
mod inodes;
mod isolation;
mod linger;
mod listen_addresses;
mod log_query_secrets;
mod media_after_archive;
mod media_archive;
mod media_durable;
mod media_expired;
mod media_fetch;
mod media_local;
mod media_low_space;
mod media_many;
mod media_owner;
mod media_policy;
mod media_retention;
mod media_retry;
mod media_room_held;
mod media_s3;
mod media_s3_faults;
mod media_safety;
mod media_store_changed;
mod metrics_format;
mod moved_checks;
mod moved_route;
mod moved_token;
mod nats_added_subscriber;
mod nats_circuit;
mod nats_clock_skew;
mod nats_console;
mod nats_consumer_state_lost;
mod nats_dead_expired;
mod nats_dead_letters_gauge;
mod nats_dead_replay_race;
mod nats_drain_kill;
mod nats_frozen_node;
mod nats_full;
mod nats_give_back;
mod nats_handover;
mod nats_late_outcomes;
mod nats_leaderless;
mod nats_lost_consumer;
mod nats_lost_objects;
mod nats_media;
mod nats_node_faults;
mod nats_once;
mod nats_pull;
mod nats_pull_ack_kept;
mod nats_pull_acks;
mod nats_pull_give_back;
mod nats_pull_rounds;
mod nats_queries;
mod nats_reload_two_relays;
mod nats_replay_late;
mod nats_replay_left;
mod nats_replay_settled;
mod nats_replay_stale;
mod nats_replica_lag;
mod nats_results_full;
mod nats_retries;
mod nats_settings;
mod nats_store;
mod nats_store_faults;
mod nats_takeover_attempts;
mod nats_tasks;
mod nats_verify_release;
mod nothing_lost;
mod open_files;
mod operations;
mod packaging;
mod pause_answers;
mod placeholder_secrets;
mod power_cut;
mod provider;
mod provider_callbacks;
mod provider_key_shared;
mod pull;
mod pull_attempts;
mod pull_races;
mod pull_shutdown;
mod pull_to_push;
mod readme;
mod ready_low_space;
mod reconcile;
mod reconcile_durable;
mod reconcile_faults;
mod reconcile_outcomes;
mod reconcile_paused;
mod reconcile_pull;
mod reconcile_retention;
mod reconcile_shapes;
mod reload;
mod reload_bound;
mod reload_certificates;
mod reload_fifo;
mod reload_handover;
mod reload_keeps;
mod reload_media;
mod reload_rate_wait;
mod reload_refused;
mod reload_removal_race;
mod reload_restart_keys;
mod reload_stop;
mod removed_at_start;
mod removed_gauges;
mod removed_returns;
mod removed_route;
mod removed_subscriber;
mod replay_in_flight;
mod retries;
mod review42_tests;
mod secrets;
mod secrets_trace;
mod shutdown;
mod shutdown_handover;
mod status;
mod store_cut_short;
mod store_path_checked;
mod store_removed;
mod store_unwritable;
mod submit_echo;
mod timing;
mod tls_files;
mod verify_fetch;
mod verify_fetch_bounded;
mod verify_fetch_media;
mod verify_fetch_refused;
mod verify_release_durable;
mod verify_retry;
mod verify_settles_task;
mod verify_turned_off;
mod wall_clock;

/// A file in `tests/` that is neither a module here nor a `[[test]]` of its
/// own would never be compiled or run (`autotests = false`).
#[test]
fn every_test_file_is_run() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = std::fs::read_to_string(dir.join("tests/suite.rs")).unwrap();
    let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    for entry in std::fs::read_dir(dir.join("tests")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(stem) = name.strip_suffix(".rs") else {
            continue;
        };
        let module = suite.lines().any(|l| l == format!("mod {stem};"));
        let own = cargo.contains(&format!("path = \"tests/{name}\""));
        assert!(
            stem == "suite" || module != own,
            "tests/{name}: add `mod {stem};` to tests/suite.rs (or a [[test]] of its own, not both)"
        );
    }
}
