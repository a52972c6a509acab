//! Fuzz target `config`: see `spind::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spind::fuzzing::config(data));
