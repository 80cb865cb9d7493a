//! The `hookrelay` binary: everything lives in the library ([`hookrelay::cli`]).
#![forbid(unsafe_code)]

/// jemalloc, not the system allocator: draining a backlog of a million
/// callbacks, sled frees its start-up page tables and allocates their
/// replacements on other threads, and glibc malloc kept the freed space (peak
/// RSS 187–200 MiB against 128–151 MiB with jemalloc, BENCHMARKS.md). Its
/// settings: `.cargo/config.toml`; the release profile's fat LTO keeps sled's
/// zero-filled start-up tables out of memory (`Cargo.toml`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    hookrelay::cli::main()
}
