//! Fuzz target `jsonrpc`: see `spind::fuzzing::jsonrpc`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spind::fuzzing::jsonrpc(data));
