//! NEON with the dot-product extension: the NEON f32 and bf16 kernels, and an int8
//! GEMM on `SDOT` (s8 x s8 quads into i32 lanes; stable Rust has no intrinsic for
//! it, so it goes through `asm!`). Activations are u8 with a zero point, weights s8:
//! the tile flips each activation byte's top bit (`a - 128` as s8) and the store
//! moves the zero point by 128, so the sums are exact and equal VNNI's.

use std::arch::aarch64::*;
use std::arch::asm;

use super::neon;
use crate::kernels::{
    check_int8_scales, check_lowp_tile, Bf16Layout, Int8Layout, Int8Scales, Isa, Kernels,
    LowpKernels, LOWP_NR,
};

/// Rows of the int8 tile (16 accumulators).
pub const MR: usize = 2;

/// The NEON + dotprod kernel table.
pub static KERNELS: Kernels = Kernels {
    isa: Isa::NeonDotprod,
    lowp: Some(&LOWP),
    ..neon::KERNELS
};

/// The reduced-precision kernels of this path.
pub static LOWP: LowpKernels = LowpKernels {
    mr: MR,
    bf16: neon::bf16,
    int8,
    to_bf16: neon::to_bf16,
    quantize_u8: neon::quantize_u8,
    int8_layout: Int8Layout::Quads,
    bf16_layout: Bf16Layout::Pairs,
    bf16_compute: "bf16 weights, f32 compute",
    int8_compute: "SDOT",
};

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
        // this function is handed out only when the CPU has NEON and dotprod.
        1 => unsafe { int8_tile::<1>(kq, a, lda, b, cp, ldc, nr, s) },
        // SAFETY: as above.
        2 => unsafe { int8_tile::<2>(kq, a, lda, b, cp, ldc, nr, s) },
        _ => unreachable!(),
    }
}

/// `acc[lane] += sum of the four s8 x s8 products of that lane's bytes`.
///
/// # Safety
/// The CPU must support NEON and dotprod.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: a register-only instruction of the dotprod extension, which the
    // caller guarantees; no memory or stack is touched.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack),
        );
    }
    acc
}

/// The `M x 32` int8 tile over a quad panel: 8 registers of 4 columns x 4 weights.
///
/// # Safety
/// `a` must be valid for rows `0..M` of `4 * kq` bytes at stride `lda`, `b` for
/// `128 * kq` bytes, the scales for `M` rows and 32 columns, `c` for rows `0..M`
/// (stride `ldc`) of `nr <= 32` columns; the CPU must support NEON and dotprod.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[target_feature(enable = "neon,dotprod")]
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
    let mut acc = [[vdupq_n_s32(0); 8]; M];
    let rows: [*const u32; M] = std::array::from_fn(|i| a.wrapping_add(i * lda) as *const u32);
    let mut bp = b;
    for q in 0..kq {
        let mut av = [vdupq_n_s8(0); M];
        for i in 0..M {
            // SAFETY: `q < kq`: quad `q` of row `i` is in bounds.
            let quad = unsafe { rows[i].add(q).read_unaligned() } ^ 0x8080_8080;
            av[i] = vreinterpretq_s8_u32(vdupq_n_u32(quad));
        }
        for j in 0..8 {
            // SAFETY: `q < kq`: group `q` of the panel has 128 bytes.
            let w = unsafe { vld1q_s8(bp.add(16 * j)) };
            for i in 0..M {
                // SAFETY: dotprod is enabled on this function.
                acc[i][j] = unsafe { sdot(acc[i][j], av[i], w) };
            }
        }
        bp = bp.wrapping_add(4 * LOWP_NR);
    }
    for (i, row) in acc.iter().enumerate() {
        // Activations were shifted down by 128: so is their zero point.
        let zero = s.a_zero[i] - 128;
        let mut out = [0.0f32; LOWP_NR];
        let mut sums = [0i32; LOWP_NR];
        for (j, x) in row.iter().enumerate() {
            // SAFETY: `sums` holds 32 values.
            unsafe { vst1q_s32(sums.as_mut_ptr().add(4 * j), *x) };
        }
        for j in 0..LOWP_NR {
            let v = sums[j] - zero * s.b_colsum[j];
            out[j] = v as f32 * (s.b_scale[j] * s.a_scale[i]);
        }
        // SAFETY: row `i < M` has `nr` writable columns (the caller's contract).
        unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), c.add(i * ldc), nr) };
    }
}
