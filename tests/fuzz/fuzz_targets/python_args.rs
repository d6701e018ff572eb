#![no_main]
// The body is shared with tests/fuzz_regressions.rs: see rinfer::fuzzing::python_args.
libfuzzer_sys::fuzz_target!(|data: &[u8]| rinfer::fuzzing::python_args(data));
