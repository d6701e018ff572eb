#![no_main]
// The body is shared with tests/fuzz_regressions.rs: see rinfer::fuzzing::model_config.
libfuzzer_sys::fuzz_target!(|data: &[u8]| rinfer::fuzzing::model_config(data));
