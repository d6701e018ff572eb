//! AVX-512 BF16 + VNNI path: the f32 kernels of the AVX-512 path, plus 12x32 bf16
//! (`VDPBF16PS`, f32 accumulators) and int8 (`VPDPBUSD`, i32 accumulators, rescaled
//! to f32 in the store) GEMM microkernels.

use std::arch::x86_64::*;

use super::avx512::{self, masks, store};
use crate::kernels::{
    check_int8_scales, check_lowp_tile, Bf16Layout, Int8Layout, Int8Scales, Isa, Kernels,
    LowpKernels, LOWP_NR,
};

/// Rows of the bf16 and int8 tiles (24 accumulators + 2 weight registers).
pub const MR: usize = 12;

/// The AVX-512 BF16 kernel table.
pub static KERNELS: Kernels = Kernels {
    isa: Isa::Avx512Bf16,
    lowp: Some(&LOWP),
    ..avx512::TABLE
};

/// The reduced-precision kernels of this path.
pub static LOWP: LowpKernels = LowpKernels {
    mr: MR,
    bf16,
    int8,
    to_bf16,
    quantize_u8,
    int8_layout: Int8Layout::Quads,
    bf16_layout: Bf16Layout::Pairs,
    bf16_compute: "VDPBF16PS",
    int8_compute: "VPDPBUSD",
};

vector_kernels! { "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c";
    to_bf16(src: &[f32], dst: &mut [u16]);
    quantize_u8(src: &[f32], dst: &mut [u8]) -> (f32, i32);
}

/// Safe entry point with the [`crate::kernels::Bf16Kernel`] contract.
#[allow(clippy::too_many_arguments)]
pub(super) fn bf16(
    kp: usize,
    a: &[u16],
    lda: usize,
    b: &[u16],
    c: &mut [f32],
    ldc: usize,
    mr: usize,
    nr: usize,
) {
    if !check_lowp_tile(MR, (kp, 2), (a.len(), lda), b.len(), (c.len(), ldc), mr, nr) {
        return;
    }
    let (a, b, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    macro_rules! go {
        ($($m:literal)*) => {
            match mr {
                // SAFETY: the asserts above bound every access: `2 * kp` values of
                // rows `0..mr` of `a` (stride `lda`), `kp` groups of 64 values of `b`,
                // and rows `0..mr`, columns `0..nr` of C (others masked off). The table
                // holding this function is handed out only when the CPU supports
                // AVX-512 F/BW/VL/DQ, BF16 and VNNI.
                $($m => unsafe { bf16_tile::<$m>(kp, a, lda, b, cp, ldc, nr) },)*
                _ => unreachable!(),
            }
        };
    }
    go!(1 2 3 4 5 6 7 8 9 10 11 12)
}

/// The `M x 32` bf16 tile.
///
/// # Safety
/// `a` must be valid for rows `0..M` of `2 * kp` values at stride `lda`, `b` for
/// `64 * kp` values, `c` for rows `0..M` (stride `ldc`) of `nr <= 32` columns; the CPU
/// must support AVX-512 F/BW/VL/DQ and BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")]
unsafe fn bf16_tile<const M: usize>(
    kp: usize,
    a: *const u16,
    lda: usize,
    b: *const u16,
    c: *mut f32,
    ldc: usize,
    nr: usize,
) {
    let mut c0 = [_mm512_setzero_ps(); M];
    let mut c1 = [_mm512_setzero_ps(); M];
    let rows: [*const i32; M] = std::array::from_fn(|i| a.wrapping_add(i * lda) as *const i32);
    let mut bp = b;
    for q in 0..kp {
        // SAFETY: `q < kp`: the weight group and each row's pair `q` are in bounds.
        // A prefetch is a hint that never faults, so one past the panel's end is harmless.
        unsafe {
            if M == 1 {
                _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(PF) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(PF + 32) as *const i8);
            }
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp as *const _));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(32) as *const _));
            for i in 0..M {
                let pair = rows[i].add(q).read_unaligned();
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                c0[i] = _mm512_dpbf16_ps(c0[i], av, b0);
                c1[i] = _mm512_dpbf16_ps(c1[i], av, b1);
            }
            bp = bp.add(2 * LOWP_NR);
        }
    }
    // SAFETY: the tile's `nr` columns of its rows of C are valid (this function's
    // contract), and the CPU supports AVX-512F (this function's target features).
    unsafe { store(c0, c1, c, ldc, nr, false) };
}

/// bf16 values ahead of the weight stream that a one-row tile prefetches.
const PF: usize = 2048;

/// Safe entry point with the [`crate::kernels::Int8Kernel`] contract.
#[allow(clippy::too_many_arguments)]
pub(super) fn int8(
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
    macro_rules! go {
        ($($m:literal)*) => {
            match mr {
                // SAFETY: the asserts above bound every access: `4 * kq` bytes of rows
                // `0..mr` of `a` (stride `lda`), `kq` groups of 128 bytes of `b`, `mr`
                // row scales, 32 column scales, and rows `0..mr`, columns `0..nr` of C
                // (others masked off). The table holding this function is handed out
                // only when the CPU supports AVX-512 F/BW/VL/DQ, BF16 and VNNI.
                $($m => unsafe { int8_tile::<$m>(kq, a, lda, b, cp, ldc, nr, s) },)*
                _ => unreachable!(),
            }
        };
    }
    go!(1 2 3 4 5 6 7 8 9 10 11 12)
}

/// The `M x 32` int8 tile.
///
/// # Safety
/// `a` must be valid for rows `0..M` of `4 * kq` bytes at stride `lda`, `b` for
/// `128 * kq` bytes, the scales for `M` rows and 32 columns, `c` for rows `0..M`
/// (stride `ldc`) of `nr <= 32` columns; the CPU must support AVX-512 F/BW/VL/DQ and VNNI.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")]
unsafe fn int8_tile<const M: usize>(
    kq: usize,
    a: *const u8,
    lda: usize,
    b: *const i8,
    c: *mut f32,
    ldc: usize,
    nr: usize,
    s: &Int8Scales,
) {
    let mut c0 = [_mm512_setzero_si512(); M];
    let mut c1 = [_mm512_setzero_si512(); M];
    let rows: [*const i32; M] = std::array::from_fn(|i| a.wrapping_add(i * lda) as *const i32);
    let mut bp = b;
    for q in 0..kq {
        // SAFETY: `q < kq`: the weight group and each row's quad `q` are in bounds.
        unsafe {
            let b0 = _mm512_loadu_si512(bp as *const _);
            let b1 = _mm512_loadu_si512(bp.add(64) as *const _);
            for i in 0..M {
                let av = _mm512_set1_epi32(rows[i].add(q).read_unaligned());
                c0[i] = _mm512_dpbusd_epi32(c0[i], av, b0);
                c1[i] = _mm512_dpbusd_epi32(c1[i], av, b1);
            }
            bp = bp.add(4 * LOWP_NR);
        }
    }
    let (m0, m1) = masks(nr);
    // SAFETY: the caller guarantees 32 column scales and sums.
    let (bs0, bs1, cs0, cs1) = unsafe {
        (
            _mm512_loadu_ps(s.b_scale.as_ptr()),
            _mm512_loadu_ps(s.b_scale.as_ptr().add(16)),
            _mm512_loadu_si512(s.b_colsum.as_ptr() as *const _),
            _mm512_loadu_si512(s.b_colsum.as_ptr().add(16) as *const _),
        )
    };
    for i in 0..M {
        let row = c.wrapping_add(i * ldc);
        let zero = _mm512_set1_epi32(s.a_zero[i]);
        let sa = _mm512_set1_ps(s.a_scale[i]);
        let v0 = _mm512_sub_epi32(c0[i], _mm512_mullo_epi32(zero, cs0));
        let v1 = _mm512_sub_epi32(c1[i], _mm512_mullo_epi32(zero, cs1));
        let r0 = _mm512_mul_ps(_mm512_cvtepi32_ps(v0), _mm512_mul_ps(bs0, sa));
        let r1 = _mm512_mul_ps(_mm512_cvtepi32_ps(v1), _mm512_mul_ps(bs1, sa));
        // SAFETY: masked stores touch only columns `0..nr` of row `i`.
        unsafe {
            _mm512_mask_storeu_ps(row, m0, r0);
            _mm512_mask_storeu_ps(row.wrapping_add(16), m1, r1);
        }
    }
}
