//! AVX-512 path: a 12x32 f32 GEMM microkernel (24 ZMM accumulators), AVX-512 f16
//! conversion, and the shared vector kernels compiled for AVX-512.

use std::arch::x86_64::*;

use crate::kernels::{check_f32_tile, Isa, Kernels};

/// Rows of the microkernel tile.
pub const MR: usize = 12;
/// Columns of the microkernel tile: two ZMM registers.
pub const NR: usize = 32;

/// The AVX-512 kernel table.
pub static KERNELS: Kernels = TABLE;

/// The table's value, which the AVX-512 BF16 path extends.
pub const TABLE: Kernels = Kernels {
    isa: Isa::Avx512,
    mr: MR,
    nr: NR,
    microkernel,
    microkernel_direct: Some(microkernel_direct),
    add_bias,
    gelu_erf,
    gelu_tanh,
    relu,
    silu,
    rms_norm,
    layer_norm,
    softmax,
    exp_shifted,
    l2_normalize,
    dot,
    axpy,
    dot_bf16,
    axpy_bf16,
    mean_rows,
    f16_to_f32,
    bf16_to_f32,
    lowp: Some(&super::avx2_lowp::LOWP),
};

vector_kernels! { "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c";
    add_bias(x: &mut [f32], bias: &[f32]);
    gelu_erf(x: &mut [f32]);
    gelu_tanh(x: &mut [f32]);
    relu(x: &mut [f32]);
    silu(x: &mut [f32]);
    rms_norm(x: &mut [f32], gamma: &[f32], eps: f32);
    layer_norm(x: &mut [f32], residual: Option<&[f32]>, gamma: &[f32], beta: &[f32], eps: f32);
    softmax(x: &mut [f32], mask: Option<&[f32]>);
    exp_shifted(x: &mut [f32]) -> f32;
    l2_normalize(x: &mut [f32]);
    dot(a: &[f32], b: &[f32]) -> f32;
    axpy(y: &mut [f32], a: f32, x: &[f32]);
    dot_bf16(a: &[f32], b: &[u16]) -> f32;
    axpy_bf16(y: &mut [f32], a: f32, x: &[u16]);
    mean_rows(x: &[f32], out: &mut [f32]);
    bf16_to_f32(src: &[u8], dst: &mut [f32]);
}

/// Safe entry point with the table's microkernel contract.
#[allow(clippy::too_many_arguments)]
fn microkernel(
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    mr: usize,
    nr: usize,
    acc: bool,
) {
    if !check_f32_tile((MR, NR), kc, a.len(), b.len(), (c.len(), ldc), mr, nr) {
        return;
    }
    let (a, b, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    // SAFETY: the checks above bound every access: `kc` steps of `MR` values of `a`
    // and `NR` values of `b`, and rows `0..mr`, columns `0..nr` of C (columns past
    // `nr` are masked off). The table holding this function is handed out only when
    // the CPU supports AVX-512 F/BW/VL/DQ.
    unsafe {
        match mr {
            1 => tile::<1>(kc, a, b, cp, ldc, nr, acc),
            2 => tile::<2>(kc, a, b, cp, ldc, nr, acc),
            3 => tile::<3>(kc, a, b, cp, ldc, nr, acc),
            4 => tile::<4>(kc, a, b, cp, ldc, nr, acc),
            5 => tile::<5>(kc, a, b, cp, ldc, nr, acc),
            6 => tile::<6>(kc, a, b, cp, ldc, nr, acc),
            7 => tile::<7>(kc, a, b, cp, ldc, nr, acc),
            8 => tile::<8>(kc, a, b, cp, ldc, nr, acc),
            9 => tile::<9>(kc, a, b, cp, ldc, nr, acc),
            10 => tile::<10>(kc, a, b, cp, ldc, nr, acc),
            11 => tile::<11>(kc, a, b, cp, ldc, nr, acc),
            _ => tile::<12>(kc, a, b, cp, ldc, nr, acc),
        }
    }
}

/// The `M x 32` tile product.
///
/// # Safety
/// `a` must be valid for `kc * MR` reads, `b` for `kc * NR` reads, and `c` for rows
/// `0..M` of stride `ldc` with `nr <= 32` columns each; the CPU must support AVX-512F.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn tile<const M: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    nr: usize,
    acc: bool,
) {
    let mut c0 = [_mm512_setzero_ps(); M];
    let mut c1 = [_mm512_setzero_ps(); M];
    let mut ap = a;
    let mut bp = b;
    for _ in 0..kc {
        // SAFETY: the caller guarantees `kc` steps of NR values of `b` and MR of `a`.
        unsafe {
            let b0 = _mm512_loadu_ps(bp);
            let b1 = _mm512_loadu_ps(bp.add(16));
            for i in 0..M {
                let av = _mm512_set1_ps(*ap.add(i));
                c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
                c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
            }
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
    }
    // SAFETY: the tile's `nr` columns of `M` rows of C are valid (this function's
    // contract), and the CPU supports AVX-512F (this function's target features).
    unsafe { store(c0, c1, c, ldc, nr, acc) };
}

/// Safe entry point with the [`crate::kernels::DirectMicroKernel`] contract.
#[allow(clippy::too_many_arguments)]
fn microkernel_direct(
    kc: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    mr: usize,
    nr: usize,
    acc: bool,
) {
    assert!(mr <= MR && nr <= NR, "tile {mr}x{nr} exceeds {MR}x{NR}");
    assert!(b.len() >= kc * NR, "packed panel too short");
    if mr == 0 || nr == 0 {
        return;
    }
    assert!(a.len() >= (mr - 1) * lda + kc, "A rows too short");
    assert!(c.len() >= (mr - 1) * ldc + nr, "C tile outside the slice");
    let (a, b, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    macro_rules! go {
        ($($m:literal)*) => {
            match mr {
                // SAFETY: the asserts above bound every access: `kc` values of rows
                // `0..mr` of `a` (stride `lda`), `kc` groups of `NR` values of `b`, and
                // rows `0..mr`, columns `0..nr` of C (others masked off). The table
                // holding this function is handed out only when the CPU supports
                // AVX-512 F/BW/VL/DQ.
                $($m => unsafe { tile_direct::<$m>(kc, a, lda, b, cp, ldc, nr, acc) },)*
                _ => unreachable!(),
            }
        };
    }
    go!(1 2 3 4 5 6 7 8 9 10 11 12)
}

/// Floats ahead of the weight stream that a one-row tile prefetches.
const PF_AHEAD: usize = 1024;

/// The `M x 32` tile with A read in place.
///
/// # Safety
/// `a` must be valid for rows `0..M` of `kc` values at stride `lda`, `b` for
/// `kc * NR` reads, and `c` for rows `0..M` of stride `ldc` with `nr <= 32` columns
/// each; the CPU must support AVX-512F.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn tile_direct<const M: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    nr: usize,
    acc: bool,
) {
    let mut c0 = [_mm512_setzero_ps(); M];
    let mut c1 = [_mm512_setzero_ps(); M];
    let rows: [*const f32; M] = std::array::from_fn(|i| a.wrapping_add(i * lda));
    let mut bp = b;
    for p in 0..kc {
        // SAFETY: `p < kc`: each row's value `p` and the panel's group `p` are in bounds.
        // A prefetch is a hint that never faults, so one past the panel's end is harmless.
        unsafe {
            if M == 1 {
                _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(PF_AHEAD) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(PF_AHEAD + 16) as *const i8);
            }
            let b0 = _mm512_loadu_ps(bp);
            let b1 = _mm512_loadu_ps(bp.add(16));
            for i in 0..M {
                let av = _mm512_set1_ps(*rows[i].add(p));
                c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
                c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
            }
            bp = bp.add(NR);
        }
    }
    // SAFETY: the tile's `nr` columns of `M` rows of C are valid (this function's
    // contract), and the CPU supports AVX-512F (this function's target features).
    unsafe { store(c0, c1, c, ldc, nr, acc) };
}

/// Masks for columns `0..16` and `16..32` of a tile `nr` columns wide.
pub(super) fn masks(nr: usize) -> (__mmask16, __mmask16) {
    let m0 = if nr >= 16 { 0xFFFF } else { (1u16 << nr) - 1 };
    let m1 = if nr >= 32 {
        0xFFFF
    } else if nr > 16 {
        (1u16 << (nr - 16)) - 1
    } else {
        0
    };
    (m0, m1)
}

/// Writes (or adds, when `acc`) an `M x nr` tile of accumulators to C.
///
/// # Safety
/// Columns `0..nr` (`nr <= 32`) of rows `0..M` of C (row stride `ldc` floats from
/// `c`) must be valid for reads and writes, and the CPU must support AVX-512F.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
pub(super) unsafe fn store<const M: usize>(
    c0: [__m512; M],
    c1: [__m512; M],
    c: *mut f32,
    ldc: usize,
    nr: usize,
    acc: bool,
) {
    let (m0, m1) = masks(nr);
    for i in 0..M {
        let row = c.wrapping_add(i * ldc);
        let hi = row.wrapping_add(16);
        // SAFETY: masked loads and stores touch only columns `0..nr` of row `i`,
        // valid by this function's contract; masked-off lanes never fault.
        unsafe {
            let (mut r0, mut r1) = (c0[i], c1[i]);
            if acc {
                r0 = _mm512_add_ps(r0, _mm512_maskz_loadu_ps(m0, row));
                r1 = _mm512_add_ps(r1, _mm512_maskz_loadu_ps(m1, hi));
            }
            _mm512_mask_storeu_ps(row, m0, r0);
            _mm512_mask_storeu_ps(hi, m1, r1);
        }
    }
}

/// Safe entry point: IEEE half bytes to f32, 16 at a time.
fn f16_to_f32(src: &[u8], dst: &mut [f32]) {
    let n = dst.len().min(src.len() / 2);
    // SAFETY: `n` halves fit in `src` and `n` floats in `dst`; the CPU supports AVX-512 F/BW/VL/DQ.
    unsafe { f16_to_f32_impl(src.as_ptr(), dst.as_mut_ptr(), n) }
}

/// # Safety
/// `src` valid for `2 * n` bytes, `dst` for `n` floats; the CPU must support AVX-512F.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn f16_to_f32_impl(src: *const u8, dst: *mut f32, n: usize) {
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: `i + 16 <= n` keeps both the 32-byte read and the 16-float write inside.
        unsafe {
            let h = _mm256_loadu_si256(src.add(2 * i) as *const __m256i);
            _mm512_storeu_ps(dst.add(i), _mm512_cvtph_ps(h));
        }
        i += 16;
    }
    while i < n {
        // SAFETY: `i < n`.
        unsafe {
            let bits = u16::from_le_bytes([*src.add(2 * i), *src.add(2 * i + 1)]);
            *dst.add(i) = half::f16::from_bits(bits).to_f32();
        }
        i += 1;
    }
}
