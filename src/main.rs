//! The `hookrelay` binary: everything lives in the library ([`hookrelay::cli`]).
#![forbid(unsafe_code)]

/// jemalloc, not the system allocator: draining a backlog of a million
/// callbacks, sled frees its start-up page tables and allocates their
/// replacements on other threads, and glibc malloc kept the freed space (peak
/// RSS 187–200 MiB against 144–151 MiB with jemalloc, BENCHMARKS.md); it
/// costs about 20 MiB at idle. Its settings: `.cargo/config.toml`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    hookrelay::cli::main()
}
