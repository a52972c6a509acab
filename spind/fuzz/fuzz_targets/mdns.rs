//! Fuzz target `mdns`: see `spind::fuzzing::mdns`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spind::fuzzing::mdns(data));
