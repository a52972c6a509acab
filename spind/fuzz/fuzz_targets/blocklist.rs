//! Fuzz target `blocklist`: see `spind::fuzzing::blocklist`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spind::fuzzing::blocklist(data));
