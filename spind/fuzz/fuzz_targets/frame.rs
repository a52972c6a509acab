//! Fuzz target `frame`: see `spind::fuzzing::frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spind::fuzzing::frame(data));
