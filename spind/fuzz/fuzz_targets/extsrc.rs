//! Fuzz target `extsrc`: see `spind::fuzzing::extsrc`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spind::fuzzing::extsrc(data));
