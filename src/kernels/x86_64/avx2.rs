//! AVX2 + FMA path: a 6x16 f32 GEMM microkernel (12 YMM accumulators), F16C
//! conversion, and the shared vector kernels compiled for AVX2.

use std::arch::x86_64::*;

use crate::kernels::{check_f32_tile, Isa, Kernels};

/// Rows of the microkernel tile.
pub const MR: usize = 6;
/// Columns of the microkernel tile: two YMM registers.
pub const NR: usize = 16;

/// The AVX2 kernel table.
pub static KERNELS: Kernels = Kernels {
    isa: Isa::Avx2,
    mr: MR,
    nr: NR,
    microkernel,
    microkernel_direct: None,
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

vector_kernels! { "avx2,fma,f16c";
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
    // the CPU supports AVX2, FMA and F16C.
    unsafe {
        match mr {
            1 => tile::<1>(kc, a, b, cp, ldc, nr, acc),
            2 => tile::<2>(kc, a, b, cp, ldc, nr, acc),
            3 => tile::<3>(kc, a, b, cp, ldc, nr, acc),
            4 => tile::<4>(kc, a, b, cp, ldc, nr, acc),
            5 => tile::<5>(kc, a, b, cp, ldc, nr, acc),
            _ => tile::<6>(kc, a, b, cp, ldc, nr, acc),
        }
    }
}

/// Lane mask selecting the first `n` of 8 lanes (`n` may exceed 8).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn lane_mask(n: usize) -> __m256i {
    let n = n.min(8) as i32;
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// The `M x 16` tile product.
///
/// # Safety
/// `a` must be valid for `kc * MR` reads, `b` for `kc * NR` reads, and `c` for rows
/// `0..M` of stride `ldc` with `nr <= 16` columns each; the CPU must support AVX2+FMA.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile<const M: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    nr: usize,
    acc: bool,
) {
    let mut c0 = [_mm256_setzero_ps(); M];
    let mut c1 = [_mm256_setzero_ps(); M];
    let mut ap = a;
    let mut bp = b;
    for _ in 0..kc {
        // SAFETY: the caller guarantees `kc` steps of NR values of `b` and MR of `a`.
        unsafe {
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            for i in 0..M {
                let av = _mm256_broadcast_ss(&*ap.add(i));
                c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
                c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
            }
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
    }
    // SAFETY: AVX2 is enabled on this function.
    let (m0, m1) = unsafe { (lane_mask(nr), lane_mask(nr.saturating_sub(8))) };
    for i in 0..M {
        let row = c.wrapping_add(i * ldc);
        let hi = row.wrapping_add(8);
        // SAFETY: masked loads and stores touch only columns `0..nr` of row `i`,
        // which the caller guarantees are valid; masked-off lanes never fault.
        unsafe {
            let (mut r0, mut r1) = (c0[i], c1[i]);
            if acc {
                r0 = _mm256_add_ps(r0, _mm256_maskload_ps(row, m0));
                r1 = _mm256_add_ps(r1, _mm256_maskload_ps(hi, m1));
            }
            _mm256_maskstore_ps(row, m0, r0);
            _mm256_maskstore_ps(hi, m1, r1);
        }
    }
}

/// Safe entry point: IEEE half bytes to f32 with F16C, 8 at a time.
fn f16_to_f32(src: &[u8], dst: &mut [f32]) {
    let n = dst.len().min(src.len() / 2);
    // SAFETY: `n` halves fit in `src` and `n` floats in `dst`; the CPU supports F16C.
    unsafe { f16_to_f32_impl(src.as_ptr(), dst.as_mut_ptr(), n) }
}

/// # Safety
/// `src` valid for `2 * n` bytes, `dst` for `n` floats; the CPU must support F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_to_f32_impl(src: *const u8, dst: *mut f32, n: usize) {
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` keeps the 16-byte read and the 8-float write inside.
        unsafe {
            let h = _mm_loadu_si128(src.add(2 * i) as *const __m128i);
            _mm256_storeu_ps(dst.add(i), _mm256_cvtph_ps(h));
        }
        i += 8;
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
