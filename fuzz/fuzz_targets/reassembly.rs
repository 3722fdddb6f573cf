//! cargo fuzz target: see `peerwire::fuzzing::reassembly` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerwire::fuzzing::reassembly(data));
