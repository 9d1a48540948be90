#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hoist::fuzz::registry_headers(data));
