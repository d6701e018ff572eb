//! x86-64 paths: CPU probes and the per-ISA kernel tables.

pub mod avx2;
pub mod avx512;
pub mod avx512bf16;

/// AVX2 + FMA + F16C, with OS support for the YMM state.
pub fn avx2_supported() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

/// AVX-512 F/BW/VL/DQ on top of AVX2, with OS support for the ZMM state.
pub fn avx512_supported() -> bool {
    avx2_supported()
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512dq")
}

/// AVX-512 with the BF16 and VNNI extensions.
pub fn avx512bf16_supported() -> bool {
    avx512_supported()
        && std::arch::is_x86_feature_detected!("avx512bf16")
        && std::arch::is_x86_feature_detected!("avx512vnni")
}

/// Compiles the shared vectorisable kernels of `kernels::vector` once more, for the
/// target features given, behind safe entry points with the table's signatures.
macro_rules! vector_kernels {
    ($features:literal; $( $name:ident ( $($arg:ident : $ty:ty),* ) $(-> $ret:ty)? ;)*) => { $(
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[target_feature(enable = $features)]
            fn inner($($arg: $ty),*) $(-> $ret)? {
                crate::kernels::vector::$name($($arg),*)
            }
            // SAFETY: this function is reachable only through its ISA's kernel table,
            // which `kernels::for_isa` hands out after `Isa::is_supported` confirmed
            // that the CPU and OS support every feature in `$features`.
            unsafe { inner($($arg),*) }
        }
    )* };
}
pub(crate) use vector_kernels;
