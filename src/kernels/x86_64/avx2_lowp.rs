//! bf16 and int8 GEMM on AVX2 + FMA (no AVX-512): 4x32 tiles over the same weight
//! panels as every path.
//!
//! - bf16: weights (and activations) stored as bf16, widened to f32 in registers
//!   (a shift or a mask) and multiplied with FMA: "bf16 weights, f32 compute". Half
//!   the memory and bandwidth of f32, not its arithmetic rate.
//! - int8: 8-bit weights and activations, products summed exactly in i32 with
//!   `VPMADDWD` on i16 pairs. (`VPMADDUBSW` would sum u8 x s8 pairs into i16, which
//!   255 x 127 x 2 overflows; 7-bit weights or activations avoid that but cost
//!   quality: on all-MiniLM-L6-v2 min cosine 0.9888 and 0.9840 to f32, under the
//!   0.99 floor.) Weight panels hold K-pairs of `i16` ([`Int8Layout::Pairs16`], twice
//!   the bytes of `i8`, the size of bf16); activations are widened to i16 once, when
//!   they are quantised, so that a pair of them is one broadcast load.

use std::arch::x86_64::*;

use crate::kernels::{
    check_int8_scales, check_lowp_tile, Bf16Layout, Int8Layout, Int8Scales, LowpKernels, LOWP_NR,
};

/// Rows of a tile: the int8 tile holds 4 rows x 16 columns of i32 sums at a time
/// (8 accumulators) and sweeps the panel's two halves; the bf16 tile (which needs
/// registers for both halves of each bf16 pair) runs 4 rows as two pairs.
pub const MR: usize = 4;

/// The reduced-precision kernels of the AVX2 path.
pub static LOWP: LowpKernels = LowpKernels {
    mr: MR,
    bf16,
    int8,
    to_bf16,
    quantize_u8,
    int8_layout: Int8Layout::Pairs16,
    bf16_layout: Bf16Layout::Pairs,
    bf16_compute: "bf16 weights, f32 compute",
    int8_compute: "VPMADDWD on i16 pairs",
};

vector_kernels! { "avx2,fma,f16c";
    to_bf16(src: &[f32], dst: &mut [u16]);
    quantize_u8(src: &[f32], dst: &mut [u8]) -> (f32, i32);
}

/// Writes the 32 values of `v` (four groups of 8) to columns `0..nr` of `row`.
///
/// # Safety
/// `row` must be valid for `nr <= 32` writes; the CPU must support AVX.
#[target_feature(enable = "avx2,fma")]
unsafe fn store_row(row: *mut f32, v: [__m256; 4], nr: usize) {
    if nr == LOWP_NR {
        for (j, x) in v.iter().enumerate() {
            // SAFETY: 32 columns are writable (the caller's contract with nr = 32).
            unsafe { _mm256_storeu_ps(row.add(8 * j), *x) };
        }
        return;
    }
    let mut tmp = [0.0f32; LOWP_NR];
    for (j, x) in v.iter().enumerate() {
        // SAFETY: `tmp` holds 32 values.
        unsafe { _mm256_storeu_ps(tmp.as_mut_ptr().add(8 * j), *x) };
    }
    // SAFETY: the caller guarantees `nr` writable values at `row`.
    unsafe { std::ptr::copy_nonoverlapping(tmp.as_ptr(), row, nr) };
}

/// Safe entry point with the [`crate::kernels::Bf16Kernel`] contract.
#[allow(clippy::too_many_arguments)]
fn bf16(
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
    // The bf16 tile keeps two rows in registers; taller blocks run as row pairs.
    for r in (0..mr).step_by(2) {
        let (ar, cr) = (&a[r * lda..], &mut c[r * ldc..]);
        let (ap, bp, cp) = (ar.as_ptr(), b.as_ptr(), cr.as_mut_ptr());
        match mr - r {
            // SAFETY: the asserts above bound every access: `2 * kp` values of rows
            // `r..mr` of `a` (stride `lda`), `kp` groups of 64 values of `b`, and rows
            // `r..mr`, columns `0..nr` of C. The table holding this function is handed
            // out only when the CPU supports AVX2 and FMA.
            1 => unsafe { bf16_tile::<1>(kp, ap, lda, bp, cp, ldc, nr) },
            // SAFETY: as above.
            _ => unsafe { bf16_tile::<2>(kp, ap, lda, bp, cp, ldc, nr) },
        }
    }
}

/// The `M x 32` bf16 tile: each 16-value group of a weight step holds 8 columns'
/// (k, k+1) pairs; `x << 16` is the k values as f32, `x & 0xffff0000` the k+1 ones.
///
/// # Safety
/// `a` must be valid for rows `0..M` of `2 * kp` values at stride `lda`, `b` for
/// `64 * kp` values, `c` for rows `0..M` (stride `ldc`) of `nr <= 32` columns; the
/// CPU must support AVX2 and FMA.
#[allow(clippy::needless_range_loop)] // rows and column groups index two arrays
#[target_feature(enable = "avx2,fma")]
unsafe fn bf16_tile<const M: usize>(
    kp: usize,
    a: *const u16,
    lda: usize,
    b: *const u16,
    c: *mut f32,
    ldc: usize,
    nr: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); 4]; M];
    let rows: [*const u32; M] = std::array::from_fn(|i| a.wrapping_add(i * lda) as *const u32);
    let high = _mm256_set1_epi32(0xffff_0000u32 as i32);
    let mut bp = b;
    for q in 0..kp {
        let mut lo = [_mm256_setzero_ps(); M];
        let mut hi = [_mm256_setzero_ps(); M];
        for i in 0..M {
            // SAFETY: `q < kp`: pair `q` of row `i` is in bounds.
            let pair = unsafe { rows[i].add(q).read_unaligned() };
            lo[i] = _mm256_set1_ps(f32::from_bits(pair << 16));
            hi[i] = _mm256_set1_ps(f32::from_bits(pair & 0xffff_0000));
        }
        for j in 0..4 {
            // SAFETY: `q < kp`: group `q` of the panel has 64 values.
            let x = unsafe { _mm256_loadu_si256(bp.add(16 * j) as *const __m256i) };
            let even = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(x));
            let odd = _mm256_castsi256_ps(_mm256_and_si256(x, high));
            for i in 0..M {
                acc[i][j] = _mm256_fmadd_ps(lo[i], even, acc[i][j]);
                acc[i][j] = _mm256_fmadd_ps(hi[i], odd, acc[i][j]);
            }
        }
        bp = bp.wrapping_add(2 * LOWP_NR);
    }
    for (i, row) in acc.into_iter().enumerate() {
        // SAFETY: rows `0..M` of `nr` columns are writable (the caller's contract).
        unsafe { store_row(c.add(i * ldc), row, nr) };
    }
}

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
    // Pairs16: each of the 4 * kq activations of a row and weights of a column takes
    // two bytes.
    if !check_lowp_tile(MR, (kq, 8), (a.len(), lda), b.len(), (c.len(), ldc), mr, nr) {
        return;
    }
    let (a, b, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    match mr {
        // SAFETY: the checks above bound every access: `8 * kq` bytes of rows `0..mr`
        // of `a` (stride `lda`), `2 * kq` groups of 128 bytes of `b`, `mr` row scales,
        // 32 column scales, and rows `0..mr`, columns `0..nr` of C. The table holding
        // this function is handed out only when the CPU supports AVX2 and FMA.
        1 => unsafe { int8_tile::<1>(kq, a, lda, b, cp, ldc, nr, s) },
        // SAFETY: as above.
        2 => unsafe { int8_tile::<2>(kq, a, lda, b, cp, ldc, nr, s) },
        3 => unsafe { int8_tile::<3>(kq, a, lda, b, cp, ldc, nr, s) },
        4 => unsafe { int8_tile::<4>(kq, a, lda, b, cp, ldc, nr, s) },
        _ => unreachable!(),
    }
}

/// The `M x 32` int8 tile over an [`Int8Layout::Pairs16`] panel, as two `M x 16`
/// sweeps of all of K (one per half of the panel, each read once for `M` rows): each
/// 16-value group of a weight step holds 8 columns' (k, k+1) weights as i16; the
/// row's two activations, already widened to i16, are one 32-bit broadcast from
/// memory (a load, no shuffle), and meet the weights in `VPMADDWD`, whose i32 sums of
/// two products are exact.
///
/// # Safety
/// `a` must be valid for rows `0..M` of `8 * kq` bytes at stride `lda`, `b` for
/// `256 * kq` bytes (`2 * kq` steps of 32 columns' i16 pairs), the scales for `M`
/// rows and 32 columns, `c` for rows `0..M` (stride `ldc`) of `nr <= 32` columns; the
/// CPU must support AVX2 and FMA.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma")]
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
    let rows: [*const i32; M] = std::array::from_fn(|i| a.wrapping_add(i * lda) as *const i32);
    let mut acc = [[_mm256_setzero_si256(); 4]; M];
    for half in 0..2 {
        let mut part = [[_mm256_setzero_si256(); 2]; M];
        let mut bp = (b as *const i16).wrapping_add(32 * half);
        for q in 0..2 * kq {
            let mut av = [_mm256_setzero_si256(); M];
            for i in 0..M {
                // SAFETY: `q < 2 * kq`: bytes `4q..4q + 4` of row `i` are in bounds.
                av[i] = _mm256_set1_epi32(unsafe { rows[i].add(q).read_unaligned() });
            }
            for j in 0..2 {
                // SAFETY: `q < 2 * kq`: step `q` of the panel has 64 i16 values.
                let w = unsafe { _mm256_loadu_si256(bp.add(16 * j) as *const __m256i) };
                for i in 0..M {
                    part[i][j] = _mm256_add_epi32(part[i][j], _mm256_madd_epi16(av[i], w));
                }
            }
            bp = bp.wrapping_add(2 * LOWP_NR);
        }
        for i in 0..M {
            acc[i][2 * half] = part[i][0];
            acc[i][2 * half + 1] = part[i][1];
        }
    }
    // SAFETY: rows `0..M` of `nr` columns are writable, the scales cover `M` rows
    // and 32 columns (the caller's contract).
    unsafe { store_int8(acc, c, ldc, nr, s) };
}

/// Writes an int8 tile's i32 sums as `a_scale * b_scale * (sum - a_zero * colsum)`,
/// with the same float operations as every int8 path.
///
/// # Safety
/// `c` must be valid for rows `0..M` (stride `ldc`) of `nr <= 32` columns, `s` must
/// cover `M` rows and 32 columns; the CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn store_int8<const M: usize>(
    acc: [[__m256i; 4]; M],
    c: *mut f32,
    ldc: usize,
    nr: usize,
    s: &Int8Scales,
) {
    for (i, row) in acc.into_iter().enumerate() {
        let zero = _mm256_set1_epi32(s.a_zero[i]);
        let sa = _mm256_set1_ps(s.a_scale[i]);
        let out: [__m256; 4] = std::array::from_fn(|j| {
            // SAFETY: the caller guarantees 32 column scales and sums.
            let (bs, cs) = unsafe {
                (
                    _mm256_loadu_ps(s.b_scale.as_ptr().add(8 * j)),
                    _mm256_loadu_si256(s.b_colsum.as_ptr().add(8 * j) as *const __m256i),
                )
            };
            let v = _mm256_sub_epi32(row[j], _mm256_mullo_epi32(zero, cs));
            _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(bs, sa))
        });
        // SAFETY: rows `0..M` of `nr` columns are writable (the caller's contract).
        unsafe { store_row(c.add(i * ldc), out, nr) };
    }
}
