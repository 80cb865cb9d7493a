//! The `hookrelay` binary: everything lives in the library ([`hookrelay::cli`]).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    hookrelay::cli::main()
}
