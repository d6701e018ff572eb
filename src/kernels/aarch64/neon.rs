//! NEON path: an 8x12 f32 FMA microkernel (24 of the 32 vector registers hold the
//! tile), the shared vector kernels compiled for NEON, and a bf16 GEMM that widens
//! bf16 weights to f32 in registers ("bf16 weights, f32 compute"). int8 needs the
//! dot-product extension ([`super::dotprod`]); without it the path has no int8
//! kernel and a model asked for bf16/int8 uses this bf16 one or runs f32.

use std::arch::aarch64::*;

use crate::kernels::{check_f32_tile, check_lowp_tile, generic, Isa, Kernels, LOWP_NR};

/// Rows of the f32 microkernel tile.
pub const MR: usize = 8;
/// Columns of the f32 microkernel tile: three 4-lane registers.
pub const NR: usize = 12;
/// Rows of the bf16 tile (16 accumulators).
pub const LOWP_MR: usize = 2;

/// The NEON kernel table.
pub static KERNELS: Kernels = Kernels {
    isa: Isa::Neon,
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
    f16_to_f32: generic::KERNELS.f16_to_f32,
    bf16_to_f32,
    lowp: None,
};

vector_kernels! { "neon";
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
    to_bf16(src: &[f32], dst: &mut [u16]);
    quantize_u8(src: &[f32], dst: &mut [u8]) -> (f32, i32);
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
    macro_rules! go {
        ($($m:literal)*) => {
            match mr {
                // SAFETY: the checks above bound every access: `kc` steps of `MR`
                // values of `a` and `NR` of `b`, rows `0..mr` and columns `0..nr` of C.
                // The table holding this function is handed out only on a CPU with NEON.
                $($m => unsafe { tile::<$m>(kc, a, b, cp, ldc, nr, acc) },)*
                _ => unreachable!(),
            }
        };
    }
    go!(1 2 3 4 5 6 7 8)
}

/// Writes (or adds, with `acc`) 12 values to columns `0..nr` of `row`.
///
/// # Safety
/// `row` must be valid for `nr <= 12` reads and writes; the CPU must support NEON.
#[target_feature(enable = "neon")]
unsafe fn store12(row: *mut f32, v: [float32x4_t; 3], nr: usize, acc: bool) {
    let mut tmp = [0.0f32; NR];
    for (j, x) in v.iter().enumerate() {
        // SAFETY: `tmp` holds 12 values.
        unsafe { vst1q_f32(tmp.as_mut_ptr().add(4 * j), *x) };
    }
    for (j, t) in tmp.iter().enumerate().take(nr) {
        // SAFETY: the caller guarantees `nr` valid values at `row`.
        unsafe {
            let p = row.add(j);
            *p = if acc { *p + t } else { *t };
        }
    }
}

/// The `M x 12` tile product.
///
/// # Safety
/// `a` must be valid for `kc * MR` reads, `b` for `kc * NR` reads, and `c` for rows
/// `0..M` of stride `ldc` with `nr <= 12` columns each; the CPU must support NEON.
#[target_feature(enable = "neon")]
unsafe fn tile<const M: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    nr: usize,
    acc: bool,
) {
    let mut cc = [[vdupq_n_f32(0.0); 3]; M];
    let mut ap = a;
    let mut bp = b;
    for _ in 0..kc {
        // SAFETY: the caller guarantees `kc` steps of NR values of `b` and MR of `a`.
        unsafe {
            let bv = [vld1q_f32(bp), vld1q_f32(bp.add(4)), vld1q_f32(bp.add(8))];
            for (i, row) in cc.iter_mut().enumerate() {
                let av = vdupq_n_f32(*ap.add(i));
                for (c, b) in row.iter_mut().zip(bv) {
                    *c = vfmaq_f32(*c, b, av);
                }
            }
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
    }
    for (i, row) in cc.into_iter().enumerate() {
        // SAFETY: row `i < M` of `nr` columns is valid (the caller's contract).
        unsafe { store12(c.add(i * ldc), row, nr, acc) };
    }
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
    if !check_lowp_tile(
        LOWP_MR,
        (kp, 2),
        (a.len(), lda),
        b.len(),
        (c.len(), ldc),
        mr,
        nr,
    ) {
        return;
    }
    let (a, b, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    match mr {
        // SAFETY: the checks above bound every access: `2 * kp` values of rows
        // `0..mr` of `a` (stride `lda`), `kp` groups of 64 values of `b`, and rows
        // `0..mr`, columns `0..nr` of C. NEON is present wherever the table is.
        1 => unsafe { bf16_tile::<1>(kp, a, lda, b, cp, ldc, nr) },
        // SAFETY: as above.
        2 => unsafe { bf16_tile::<2>(kp, a, lda, b, cp, ldc, nr) },
        _ => unreachable!(),
    }
}

/// The `M x 32` bf16 tile: each 8-value group of a weight step holds 4 columns'
/// (k, k+1) pairs; `x << 16` is the k values as f32, `x & 0xffff0000` the k+1 ones.
///
/// # Safety
/// `a` must be valid for rows `0..M` of `2 * kp` values at stride `lda`, `b` for
/// `64 * kp` values, `c` for rows `0..M` (stride `ldc`) of `nr <= 32` columns; the
/// CPU must support NEON.
#[allow(clippy::needless_range_loop)] // rows and column groups index two arrays
#[target_feature(enable = "neon")]
unsafe fn bf16_tile<const M: usize>(
    kp: usize,
    a: *const u16,
    lda: usize,
    b: *const u16,
    c: *mut f32,
    ldc: usize,
    nr: usize,
) {
    let mut acc = [[vdupq_n_f32(0.0); 8]; M];
    let rows: [*const u32; M] = std::array::from_fn(|i| a.wrapping_add(i * lda) as *const u32);
    let high = vdupq_n_u32(0xffff_0000);
    let mut bp = b as *const u32;
    for q in 0..kp {
        let mut lo = [vdupq_n_f32(0.0); M];
        let mut hi = [vdupq_n_f32(0.0); M];
        for i in 0..M {
            // SAFETY: `q < kp`: pair `q` of row `i` is in bounds.
            let pair = unsafe { rows[i].add(q).read_unaligned() };
            lo[i] = vdupq_n_f32(f32::from_bits(pair << 16));
            hi[i] = vdupq_n_f32(f32::from_bits(pair & 0xffff_0000));
        }
        for j in 0..8 {
            // SAFETY: `q < kp`: group `q` of the panel has 64 values (32 words).
            let x = unsafe { vld1q_u32(bp.add(4 * j)) };
            let even = vreinterpretq_f32_u32(vshlq_n_u32::<16>(x));
            let odd = vreinterpretq_f32_u32(vandq_u32(x, high));
            for i in 0..M {
                acc[i][j] = vfmaq_f32(acc[i][j], even, lo[i]);
                acc[i][j] = vfmaq_f32(acc[i][j], odd, hi[i]);
            }
        }
        bp = bp.wrapping_add(LOWP_NR);
    }
    for (i, row) in acc.iter().enumerate() {
        let mut tmp = [0.0f32; LOWP_NR];
        for (j, x) in row.iter().enumerate() {
            // SAFETY: `tmp` holds 32 values.
            unsafe { vst1q_f32(tmp.as_mut_ptr().add(4 * j), *x) };
        }
        // SAFETY: row `i < M` has `nr` writable columns (the caller's contract).
        unsafe { std::ptr::copy_nonoverlapping(tmp.as_ptr(), c.add(i * ldc), nr) };
    }
}
