//! Fuzz target `state_files`: see `spind::fuzzing::state_files`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spind::fuzzing::state_files(data));
