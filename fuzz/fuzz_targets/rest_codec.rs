//! cargo fuzz target: see `peerwire::fuzzing::rest_codec` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerwire::fuzzing::rest_codec(data));
