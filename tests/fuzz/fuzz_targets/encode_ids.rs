#![no_main]
// The body is shared with tests/fuzz_regressions.rs: see rinfer::fuzzing::encode_ids.
libfuzzer_sys::fuzz_target!(|data: &[u8]| rinfer::fuzzing::encode_ids(data));
