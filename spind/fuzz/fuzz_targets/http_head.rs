//! Fuzz target `http_head`: see `spind::fuzzing::http_head`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spind::fuzzing::http_head(data));
