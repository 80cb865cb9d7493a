//! Shared fixtures for the integration tests, one kind per file:
//! - `config`: `TestConfig`, the typed builder for the daemon's config file;
//! - `route`: the routes, subscribers, signatures and secrets it holds;
//! - `daemon`: the daemon in-process or as the real binary (`Bin`);
//! - `subscriber`: recording subscriber servers (`Sub`, `RawSub`);
//! - `client`: requests, callbacks, admin API, TLS clients, raw sockets;
//! - `certs`: certificates generated in the test;
//! - `oracle`: the one independent HMAC oracle (Standard Webhooks, kie.ai);
//! - `load`: load generation, store prefill, "nothing acknowledged lost";
//! - `bodies`: provider callback bodies;
//! - `cli`: the binary's one-shot commands;
//! - `ports`: fixed ports chosen before anything listens;
//! - `pebble`: a real ACME CA on loopback (used as `common::pebble::…`);
//! - `moved`: a pull subscriber moved from route t to route u by a reload;
//! - `forward`: the private side of a pull subscriber (`Forwarder`, `Local`);
//! - `systemd`: the shipped unit files' exposure scores;
//! - `nats`: a real `nats-server` JetStream cluster on loopback;
//! - `nats_replay`: a cluster-mode replay's two writes made by hand;
//! - `media`: the `[media]` section; `archive`: watching the archive through
//!   the admin API;
//! - `files`: a loopback file server for media URLs (used as `common::files::…`);
//! - `fetcher`: the media fetcher and stores driven without a daemon;
//! - `s3`: a local S3 (moto) and the store table naming it;
//! - `provider`: a fake of the provider platform (used as `common::provider::…`);
//! - `browser`: chromium driven by node + playwright-core (console tests);
//! - `v1_store`: a store in the 0.1 format, written for the upgrade tests;
//! - `settle`: on tokio's paused clock, wait (in real time) for the daemon
//!   to be idle before moving time;
//! - `tasks`: expected tasks, the submit proxy and the reconciler against the
//!   fake provider (used as `common::tasks::…`).
//!
//! Each test file uses some of them; the rest is dead code there.
#![allow(dead_code, unused_imports)]

pub mod archive;
pub mod bodies;
pub mod browser;
pub mod certs;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod deaf;
pub mod fetcher;
pub mod files;
pub mod forward;
pub mod load;
pub mod media;
pub mod moved;
pub mod nats;
pub mod nats_lag;
pub mod nats_leader;
pub mod nats_replay;
pub mod oracle;
pub mod pebble;
pub mod ports;
pub mod provider;
pub mod query_proxy;
pub mod route;
pub mod s3;
pub mod settle;
pub mod slow_proxy;
pub mod subscriber;
pub mod switch_proxy;
pub mod systemd;
pub mod tasks;
pub mod tmpfs;
pub mod v1_store;

pub use archive::*;
pub use bodies::*;
pub use certs::*;
pub use cli::*;
pub use client::*;
pub use config::*;
pub use daemon::*;
pub use deaf::*;
pub use forward::*;
pub use load::*;
pub use media::*;
pub use moved::*;
pub use ports::*;
pub use query_proxy::*;
pub use route::*;
pub use s3::*;
pub use settle::*;
pub use subscriber::*;
pub use switch_proxy::*;
pub use systemd::*;
