//! aarch64 paths: CPU probes and the per-ISA kernel tables. Verified under
//! `qemu-aarch64` only (`-cpu max` and `-cpu cortex-a72`): correctness, not speed.
//!
//! Each path adds to the one before it: `neon` (f32, bf16 widened to f32),
//! `neon-dotprod` (int8 on `SDOT`), `neon-i8mm` (int8 on `USMMLA`), `neon-bf16`
//! (bf16 on `BFMMLA`, int8 as `neon-i8mm`), each needing the features of the one
//! before it plus its own, so a skip names exactly what a core lacks (Armv8.6 makes
//! all of them mandatory).

pub mod bf16;
pub mod dotprod;
pub mod i8mm;
mod mmla;
pub mod neon;

/// The CPU features each aarch64 path needs, each with whether the CPU has it.
pub fn features(isa: super::Isa) -> Vec<(&'static str, bool)> {
    use std::arch::is_aarch64_feature_detected as has;
    let mut f = vec![("neon", has!("neon"))];
    match isa {
        super::Isa::Neon => {}
        super::Isa::NeonDotprod => f.push(("dotprod", has!("dotprod"))),
        super::Isa::NeonI8mm => f.extend([("dotprod", has!("dotprod")), ("i8mm", has!("i8mm"))]),
        super::Isa::NeonBf16 => f.extend([
            ("dotprod", has!("dotprod")),
            ("i8mm", has!("i8mm")),
            ("bf16", has!("bf16")),
        ]),
        _ => unreachable!("x86-64 paths are not probed on aarch64"),
    }
    f
}
