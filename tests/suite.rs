//! The integration tests, one binary: each module is a file beside this one
//! and holds the tests of one promise (its first lines say which). One binary
//! links the dependencies once, where a binary per file linked them 48 times
//! (6.9 GB of test binaries in a clean CI build, which ran the disk full).
//! Run one file's tests with `cargo test --test suite <file>::`, e.g.
//! `cargo test --test suite cursors::`.
//!
//! `media_large.rs` stays a binary of its own: it measures the test process's
//! peak RSS, which other tests running beside it would share.

mod common;

mod acme;
mod acme_outage;
mod admin_guard;
mod allowlist;
mod answers;
mod backlog;
mod bounded_connections;
mod cli;
mod console;
mod console_api;
mod cursors;
mod delivery;
mod duplicates;
mod forward;
mod hostile_http;
mod isolation;
mod media_after_archive;
mod media_archive;
mod media_bounded;
mod media_durable;
mod media_expired;
mod media_fetch;
mod media_local;
mod media_policy;
mod media_s3;
mod media_safety;
mod nats_cluster;
mod nats_media;
mod nats_pull;
mod nats_store;
mod nats_tasks;
mod nothing_lost;
mod operations;
mod packaging;
mod provider;
mod provider_callbacks;
mod pull;
mod reconcile;
mod reconcile_durable;
mod reconcile_pull;
mod reconcile_shapes;
mod reload;
mod retries;
mod secrets;
mod status;
mod timing;
mod verify_fetch;
