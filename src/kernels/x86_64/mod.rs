//! x86-64 paths: CPU probes and the per-ISA kernel tables.

pub mod amx;
pub mod avx2;
pub mod avx2_lowp;
pub mod avx2_vnni;
pub mod avx512;
pub mod avx512bf16;

/// The CPU features each x86-64 path needs, each with whether the CPU (and OS)
/// has it. `is_x86_feature_detected!` takes literals, hence one list per path.
pub fn features(isa: super::Isa) -> Vec<(&'static str, bool)> {
    use std::arch::is_x86_feature_detected as has;
    let avx2 = || {
        vec![
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
            ("f16c", has!("f16c")),
        ]
    };
    let avx512 = || {
        let mut f = avx2();
        f.extend([
            ("avx512f", has!("avx512f")),
            ("avx512bw", has!("avx512bw")),
            ("avx512vl", has!("avx512vl")),
            ("avx512dq", has!("avx512dq")),
        ]);
        f
    };
    let avx512bf16 = || {
        let mut f = avx512();
        f.extend([
            ("avx512bf16", has!("avx512bf16")),
            ("avx512vnni", has!("avx512vnni")),
        ]);
        f
    };
    match isa {
        super::Isa::Generic => Vec::new(),
        super::Isa::Avx2 => avx2(),
        super::Isa::Avx2Vnni => {
            let mut f = avx2();
            f.push(("avxvnni", has!("avxvnni")));
            f
        }
        super::Isa::Avx512 => avx512(),
        super::Isa::Avx512Bf16 => avx512bf16(),
        super::Isa::Amx => {
            let mut f = avx512bf16();
            f.extend(amx::cpu_features());
            // The tile state, enabled by the OS for this process (asked for here).
            f.push(("amx-os", amx::os_permits()));
            f
        }
        super::Isa::Neon
        | super::Isa::NeonDotprod
        | super::Isa::NeonI8mm
        | super::Isa::NeonBf16 => {
            unreachable!("aarch64 paths are not probed on x86-64")
        }
    }
}
