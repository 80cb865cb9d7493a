//! hookrelay: the public callback endpoint for private services.
//!
//! Providers POST results to it; it answers in milliseconds, keeps every
//! accepted callback durably, drops duplicates, and delivers each callback to
//! every subscriber with its own retries, backoff and Standard Webhooks
//! signature.
//!
//! Where each concern lives:
//!
//! | concern | module |
//! |---|---|
//! | the config file (only module that knows TOML): raw → validated values, secrets | [`config`] (`raw`, `units`, `secret`, `validate`, `values` (`subscriber`: a route's subscribers, push or pull); `locate`: where a key is written, for errors; `listen`: the listen addresses together, which clash, which IPv6 wildcard is IPv6 only; `small_file`: reading a file the config names, regular and bounded; `blocked_reads`: which file a blocked read is on, and no second read of it) |
//! | TLS configurations (ring), certificate reload, what a certificate says | [`tls`] (`expiry`: the served certificate's near end and expiry logged; `test_cert`: a self-signed certificate for unit tests) |
//! | certificates from an ACME CA: TLS-ALPN-01 on the listener, cache beside the store, renewal | [`acme`] (`pace`: when to order again, the daily cap; `ledger`: its times kept across restarts) |
//! | listeners, connection cap, timeouts, idle connections, HTTP/2 floods, failed TLS handshakes, drain | [`server`] (`linger`: an HTTP/1.1 connection the relay closes is drained first, so the client reads its answer; `handshake`: failures counted, a refused certificate warned about; `plain_http`: plain HTTP on a TLS listener answered `400`) |
//! | one provider request → one answer; the status mapping | [`ingest`] (`answer`, `body`, `budget`: the memory of requests not yet authenticated, `contested`: dedupe on `verify = "fetch"` routes (`contested_tests`: a relay stopped between its writes), `moved`: a reload that renamed or removed the route, or changed its checks, while a request was in flight, `repeated_keys`: a JSON body naming a key twice, refused where checks read it, `refused`: the rate-limited log of refused requests) |
//! | the pull API: long-poll, acknowledge, its answers and wire format, refused requests in the log | [`pull`] (`answer`, `wire`, `refusal`) |
//! | the dedupe key | [`dedupe`] |
//! | provider presets: dedupe key, task id, media fields per product | [`preset`] |
//! | the media archive: pointers, safe fetcher, local/S3 storage, the archiver task | [`media`] (`job`: one try of a URL, `release`: media retention, `room`: the room downloads in flight reserve on a local disk, `fetch_error`, …) |
//! | the provider platform's API (status records, download-url refresh) | [`provider`] |
//! | expected tasks: the reconciler (polls tasks whose callback did not come), recovered results, the submit proxy | [`reconcile`] (`poll`, `in_flight`: the polls running, one per task, a panicked one reported, `recover`, `submit`) |
//! | client address, tokens, provider signatures, delivery signatures, [`auth::Secret`] | [`auth`] |
//! | durable storage behind one seam: the log, cursors, due index, results, group commit | [`store`] (`types`: the values crossing the seam, `event_id`, `due_caps`: how far ahead stored work may be due, checked at start-up; `media`, `media_calls`: the media archive's values and `Store` methods; `sled`: `group_commit`, `cursor`, `keys`, `codec`, `body_rows`: a body over 8 KiB in 4 KiB rows, `schema`, `migrate`, `migrate_notify`: asking systemd for time during a migration, `due_cap`: due times of a previous run brought in at start-up, `left_behind`: an embedded store at `store.path` of a cluster relay, …; `nats`: `topology`: the registered routes and subscribers, `lost`: streams or buckets gone while serving, set up again (sequences past the old results), `consumer`: where a subscriber's consumer starts, one lost created again, `early`, `query/expired`: dead letters whose event expired, `by_key`: the event holding a dedupe key, `media_retry`: a failed media URL tried again, `media_sweep`: media retention, `publish`: a message published under its id until stored, `backoff`: the pause between tries of a write NATS did not take, `tasks`, `task_query`, `torn_task`: unreadable expected-task rows, …) |
//! | fan-out: lanes, attempts, retry schedule, circuit breaker, rate limit; pull lanes and their leases; a subscriber's lanes one after another across a reload | [`delivery`] (`lane`, `attempt`, `retry`, `circuit`, `rate`, `client`, `handover`, `held`, `recent`: the bounded memory of the last events' verdicts and claims, `verify_records`: the provider's records fetched for verification, shared, one look-up of a task at a time; `verify_claims`: one deliverable event per dedupe key on `verify = "fetch"` routes, `verify_media`: the media of a callback whose route stopped verifying, `verify_off`: its contesting callbacks still settled one to a key, `verify_task`: a verified callback settles its expected task, `media_gate`, `removed`; `pull`: `task` (its loops, a stopped lane's too), `state` (what its task does; `state::apply`: an acknowledgement applied to its leases), `leases`, `settle`, `ack`, `peer`) |
//! | retention sweeps | [`retention`] |
//! | admin API: health, readiness, metrics, status, JSON API; the web console (`/ui`) and the checks against cross-site requests, DNS rebinding and admin token guessing | [`admin`] (`guard`, `ui`, `endpoint`: the endpoints, the methods and query parameters each takes, the `405` with `Allow`; `task_figures`: the expected tasks' counts for `/metrics`, a slow walk of them reused a while) |
//! | Prometheus metrics | [`metrics`] (`forget`: the series a scrape removes, of subscribers and routes no longer configured) |
//! | the daemon's shared state | [`state`] |
//! | readiness as far as the store goes: a store it can write, room on its disk (each apart), refused callbacks counted for the log | [`readiness`] |
//! | wiring: start, reload, shutdown | [`app`], [`reload`] |
//! | running as a service: signals, sd_notify, watchdog, exit for restart | [`supervise`] |
//! | what a start refuses, judged from the file (check-config and reload say it first) | [`start_refusal`] |
//! | the open-files limit: raised at start, named when too low for the config | [`nofile`] |
//! | directories of callbacks, results and keys created 0700 | [`private_dir`] |
//! | free room on a disk, bytes and inodes (the inode floor the store and the media archive keep) | [`disk_room`] |
//! | the command line and the admin client | [`cli`] (`args`: the flags' value checks; `admin`, `render` (and `render_status`, `render_tasks`), `terminal`: control characters in what the admin subcommands print shown escaped, `generate`: fresh tokens and secrets, `init`, `check`, `config_path`: a shell's command falls back to `/etc/hookrelay/config.toml` and the `secrets/` beside its config, …) |
//! | `hookrelay forward`: the private side's client of the pull API | [`forward`] (`client`: the relay's API and the local service, `pump`: pulls and deliveries, `local_post`: one message posted to the local service, `active`: what is being delivered now, `release`: what it gives back undelivered, `pause`: one message at a time while the local service fails, `acker`, `refused`: what a `409` on an acknowledgement says of the ids refused, `relay_error`: why a request to the relay got no usable answer, `unacked`, `probe`: asking the relay whether a later offer of an id delivered here unconfirmed is a replay, `backoff`, `status`, `signals`: TERM, INT and HUP stop it, HUP left ignored under `nohup`) |
//! | time (one clock, follows tokio's so tests can pause it); the process's own pauses (what is read after one may have waited through it) | [`clock`] (`time_of_day`, `pauses`) |
//! | log set-up | [`logging`] |
//! | an error and its causes on one line (HTTP clients' errors in logs and answers) | [`error_chain`] |
//! | which occurrences of a failure that keeps coming are logged at `warn` (a subscriber's failed attempts, a key the provider refuses) | [`failure_log`] |
//! | the outgoing HTTP clients' stall guard: a connection whose peer takes nothing sent for the request's timeout is closed (subscribers, `forward`'s local service and relay, S3) | `stall` |
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod acme;
pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dedupe;
pub mod delivery;
pub mod disk_room;
pub mod error_chain;
pub mod failure_log;
pub mod forward;
pub mod ingest;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod nofile;
pub mod preset;
pub mod private_dir;
pub mod provider;
pub mod pull;
pub mod readiness;
pub mod reconcile;
pub mod reload;
pub mod retention;
pub mod server;
mod stall;
pub mod start_refusal;
pub mod state;
pub mod store;
pub mod supervise;
pub mod tls;

pub use app::{start, Handle};
pub use config::Config;
