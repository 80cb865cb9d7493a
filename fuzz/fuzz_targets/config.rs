//! Any text given as a config file: a Config or a located error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match hookrelay::Config::parse(std::path::Path::new("fuzz.toml"), text) {
            Ok(c) => assert!(!c.routes.is_empty()),
            Err(e) => assert!(e.to_string().starts_with("fuzz.toml")),
        }
    }
});
