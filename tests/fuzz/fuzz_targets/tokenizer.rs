#![no_main]
// The body is shared with tests/fuzz_regressions.rs: see rinfer::fuzzing::tokenizer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| rinfer::fuzzing::tokenizer(data));
