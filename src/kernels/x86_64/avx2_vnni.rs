//! AVX2 + AVX-VNNI path (Intel Alder Lake and later client cores, Sierra Forest,
//! AMD Zen 5): the f32 kernels and bf16 tile of the AVX2 path, and an int8 tile on
//! `VPDPBUSD` over 256-bit registers (u8 activations times s8 weights, four products
//! summed into each i32 lane, exact), over [`Int8Layout::Quads`] panels.
//!
//! The tile is written once and compiled for two encodings of the same instruction:
//! the VEX form of AVX-VNNI, which this path runs, and the EVEX form that AVX-512
//! VNNI with VL provides on 256-bit registers. The second only serves the unit test
//! below, so that the tile's code is checked on AVX-512 machines, which lack AVX-VNNI
//! (Zen 4, Ice Lake, Sapphire Rapids' AVX-VNNI aside); on a CPU with AVX-VNNI the
//! path's own tests run the VEX form.

use std::arch::x86_64::*;

use super::{avx2, avx2_lowp};
use crate::kernels::{
    check_int8_scales, check_lowp_tile, Bf16Layout, Int8Layout, Int8Scales, Isa, Kernels,
    LowpKernels, LOWP_NR,
};

/// The AVX-VNNI kernel table.
pub static KERNELS: Kernels = Kernels {
    isa: Isa::Avx2Vnni,
    lowp: Some(&LOWP),
    ..avx2::KERNELS
};

/// The reduced-precision kernels of this path: int8 on `VPDPBUSD`, the rest as on AVX2.
pub static LOWP: LowpKernels = LowpKernels {
    int8,
    int8_layout: Int8Layout::Quads,
    int8_compute: "VPDPBUSD on ymm, AVX-VNNI",
    bf16_layout: Bf16Layout::Pairs,
    ..avx2_lowp::LOWP
};

/// Rows of the int8 tile: the AVX2 path's, since the bf16 tile is shared.
const MR: usize = avx2_lowp::MR;

/// Defines the `M x 32` int8 tile for one encoding of `VPDPBUSD` on ymm.
macro_rules! int8_tile {
    ($name:ident, $features:literal, $dpbusd:ident) => {
        /// The `M x 32` int8 tile, as two `M x 16` sweeps of all of K (one per half
        /// of the panel, each read once for `M` rows): per step, each row's quad of
        /// activations is broadcast and meets the half's two weight vectors in
        /// `VPDPBUSD`; the zero point comes back out in the store.
        ///
        /// # Safety
        /// `a` must be valid for rows `0..M` of `4 * kq` bytes at stride `lda`, `b`
        /// for `128 * kq` bytes, the scales for `M` rows and 32 columns, `c` for rows
        /// `0..M` (stride `ldc`) of `nr <= 32` columns; the CPU must support every
        /// feature in the function's `target_feature` list.
        #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
        #[target_feature(enable = $features)]
        unsafe fn $name<const M: usize>(
            kq: usize,
            a: *const u8,
            lda: usize,
            b: *const i8,
            c: *mut f32,
            ldc: usize,
            nr: usize,
            s: &Int8Scales,
        ) {
            let rows: [*const i32; M] =
                std::array::from_fn(|i| a.wrapping_add(i * lda) as *const i32);
            let mut acc = [[_mm256_setzero_si256(); 4]; M];
            for half in 0..2 {
                let mut part = [[_mm256_setzero_si256(); 2]; M];
                let mut bp = b.wrapping_add(64 * half);
                for q in 0..kq {
                    let mut av = [_mm256_setzero_si256(); M];
                    for i in 0..M {
                        // SAFETY: `q < kq`: quad `q` of row `i` is in bounds.
                        av[i] = _mm256_set1_epi32(unsafe { rows[i].add(q).read_unaligned() });
                    }
                    for j in 0..2 {
                        // SAFETY: `q < kq`: step `q` of the panel has 128 bytes.
                        let w = unsafe { _mm256_loadu_si256(bp.add(32 * j) as *const __m256i) };
                        for i in 0..M {
                            part[i][j] = $dpbusd(part[i][j], av[i], w);
                        }
                    }
                    bp = bp.wrapping_add(4 * LOWP_NR);
                }
                for i in 0..M {
                    acc[i][2 * half] = part[i][0];
                    acc[i][2 * half + 1] = part[i][1];
                }
            }
            // SAFETY: rows `0..M` of `nr` columns are writable, the scales cover `M`
            // rows and 32 columns (the caller's contract); the CPU has AVX2 and FMA.
            unsafe { avx2_lowp::store_int8(acc, c, ldc, nr, s) };
        }
    };
}

int8_tile!(int8_tile_vex, "avx2,fma,avxvnni", _mm256_dpbusd_avx_epi32);
#[cfg(test)]
int8_tile!(
    int8_tile_evex,
    "avx2,fma,avx512f,avx512vl,avx512vnni",
    _mm256_dpbusd_epi32
);

/// Safe entry point with the [`crate::kernels::Int8Kernel`] contract.
#[allow(clippy::too_many_arguments)]
fn int8(
    kq: usize,
    a: &[u8],
    lda: usize,
    b: &[i8],
    c: &mut [f32],
    ldc: usize,
    mr: usize,
    nr: usize,
    s: &Int8Scales,
) {
    check_int8_scales(s, mr);
    if !check_lowp_tile(MR, (kq, 4), (a.len(), lda), b.len(), (c.len(), ldc), mr, nr) {
        return;
    }
    let (a, b, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    match mr {
        // SAFETY: the checks above bound every access: `4 * kq` bytes of rows `0..mr`
        // of `a` (stride `lda`), `kq` groups of 128 bytes of `b`, `mr` row scales, 32
        // column scales, and rows `0..mr`, columns `0..nr` of C. The table holding
        // this function is handed out only when the CPU supports AVX2, FMA, F16C and
        // AVX-VNNI.
        1 => unsafe { int8_tile_vex::<1>(kq, a, lda, b, cp, ldc, nr, s) },
        // SAFETY: as above.
        2 => unsafe { int8_tile_vex::<2>(kq, a, lda, b, cp, ldc, nr, s) },
        // SAFETY: as above.
        3 => unsafe { int8_tile_vex::<3>(kq, a, lda, b, cp, ldc, nr, s) },
        // SAFETY: as above.
        4 => unsafe { int8_tile_vex::<4>(kq, a, lda, b, cp, ldc, nr, s) },
        _ => unreachable!(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::generic;

    /// The tile's code through its EVEX twin, against the generic int8 kernel, to
    /// the bit, on every tile shape and several K (the VEX form differs only in the
    /// encoding of `VPDPBUSD`, and runs in the path's own tests on AVX-VNNI CPUs).
    #[test]
    fn tile_matches_generic_through_its_evex_twin() {
        let twin = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
            && crate::kernels::masked_features().is_empty();
        if !twin {
            // Reported as the integration tests report theirs (tests/common), in the
            // skip log that `scripts/test_rust.sh` counts.
            let line = "SKIPPED avx2-vnni tile through its EVEX twin: this CPU lacks AVX-512 \
                        VNNI with VL (or RINFER_CPU_MASK is set)";
            eprintln!("{line}");
            let log = concat!(env!("CARGO_MANIFEST_DIR"), "/target/tmp/skipped.log");
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
            {
                use std::io::Write;
                let _ = f.write_all(format!("{line}\n").as_bytes());
            }
            return;
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for kq in [1usize, 2, 7, 96] {
            for mr in 1..=MR {
                for nr in [1usize, 5, 31, 32] {
                    let lda = 4 * kq + 4;
                    let a: Vec<u8> = (0..mr * lda).map(|_| next() as u8).collect();
                    let b: Vec<i8> = (0..128 * kq)
                        .map(|_| ((next() % 255) as i32 - 127) as i8)
                        .collect();
                    let a_scale: Vec<f32> = (0..mr).map(|i| 0.01 + i as f32 * 0.003).collect();
                    let a_zero: Vec<i32> = (0..mr).map(|_| (next() % 256) as i32).collect();
                    let b_scale: Vec<f32> = (0..32).map(|j| 0.002 + j as f32 * 1e-4).collect();
                    let b_colsum: Vec<i32> = (0..32)
                        .map(|j| {
                            (0..4 * kq)
                                .map(|t| b[(t / 4 * 32 + j) * 4 + t % 4] as i32)
                                .sum()
                        })
                        .collect();
                    let s = Int8Scales {
                        a_scale: &a_scale,
                        a_zero: &a_zero,
                        b_scale: &b_scale,
                        b_colsum: &b_colsum,
                    };
                    let ldc = 33;
                    let mut want = vec![0.0f32; mr * ldc];
                    generic::lowp::int8(kq, &a, lda, &b, &mut want, ldc, mr, nr, &s);
                    let mut got = vec![0.0f32; mr * ldc];
                    let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), got.as_mut_ptr());
                    match mr {
                        // SAFETY: `a` holds `mr` rows of `lda >= 4 * kq` bytes, `b`
                        // `128 * kq` bytes, the scales `mr` rows and 32 columns, `got`
                        // `mr` rows of `ldc >= nr`; the CPU has AVX-512 F, VL and VNNI
                        // (checked above) and so AVX2 and FMA.
                        1 => unsafe { int8_tile_evex::<1>(kq, ap, lda, bp, cp, ldc, nr, &s) },
                        // SAFETY: as above.
                        2 => unsafe { int8_tile_evex::<2>(kq, ap, lda, bp, cp, ldc, nr, &s) },
                        // SAFETY: as above.
                        3 => unsafe { int8_tile_evex::<3>(kq, ap, lda, bp, cp, ldc, nr, &s) },
                        // SAFETY: as above.
                        4 => unsafe { int8_tile_evex::<4>(kq, ap, lda, bp, cp, ldc, nr, &s) },
                        _ => unreachable!(),
                    }
                    assert_eq!(got, want, "avx2-vnni tile {mr}x{nr}, kq {kq}");
                }
            }
        }
    }
}
