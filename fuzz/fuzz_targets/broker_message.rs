//! cargo fuzz target: see `peerwire::fuzzing::broker_message` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerwire::fuzzing::broker_message(data));
