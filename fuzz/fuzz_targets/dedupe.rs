//! Dedupe keys from arbitrary JSON and pointers: deterministic, never a panic,
//! and a missing pointer always falls back to the body hash.
#![no_main]
use hookrelay::dedupe::dedupe_hash;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (ptrs, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let pointers: Vec<String> = String::from_utf8_lossy(ptrs).split('\n').filter(|p| !p.is_empty()).map(str::to_string).collect();
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let a = dedupe_hash(&pointers, json.as_ref(), body);
    let b = dedupe_hash(&pointers, json.as_ref(), body);
    assert_eq!(a, b);
    if let Some(j) = &json {
        if !pointers.is_empty() && pointers.iter().any(|p| j.pointer(p).is_none_or(|v| v.is_null())) {
            assert!(a.1, "missing pointer must fall back");
        }
    }
});
