//! Fuzz target `netlink`: see `spind::fuzzing::netlink`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spind::fuzzing::netlink(data));
