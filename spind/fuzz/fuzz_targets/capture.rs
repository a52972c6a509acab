//! Fuzz target `capture`: see `spind::fuzzing::capture`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spind::fuzzing::capture(data));
