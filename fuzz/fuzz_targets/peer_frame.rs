//! cargo fuzz target: see `peerwire::fuzzing::peer_frame` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerwire::fuzzing::peer_frame(data));
