//! aarch64 paths: CPU probes and the per-ISA kernel tables. Verified under
//! `qemu-aarch64` only (`-cpu max` and `-cpu cortex-a72`): correctness, not speed.

pub mod dotprod;
pub mod neon;

/// The CPU features each aarch64 path needs, each with whether the CPU has it.
pub fn features(isa: super::Isa) -> Vec<(&'static str, bool)> {
    use std::arch::is_aarch64_feature_detected as has;
    match isa {
        super::Isa::Neon => vec![("neon", has!("neon"))],
        super::Isa::NeonDotprod => vec![("neon", has!("neon")), ("dotprod", has!("dotprod"))],
        _ => unreachable!("x86-64 paths are not probed on aarch64"),
    }
}
