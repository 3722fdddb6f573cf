//! cargo fuzz target: see `peerwire_broker::fuzzing::signal_path` for what
//! it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerwire_broker::fuzzing::signal_path(data));
