//! NEON with the int8 matrix-multiply extension: the NEON f32 kernels and an 8x32
//! int8 GEMM tile on `USMMLA` (a 2x8 u8 by 8x2 s8 block into 2x2 i32; stable Rust
//! has no intrinsic for it, so it goes through `asm!`) over
//! [`Int8Layout::Octets`] panels. Activations stay u8 with their zero point (no
//! shift as on [`super::dotprod`]): the sums are exact and equal VNNI's. bf16 is
//! NEON's ("bf16 weights, f32 compute"), its 2-row tile run over the 8 rows.

use std::arch::aarch64::*;
use std::arch::asm;

use super::mmla::{self, Sums, MR};
use super::neon;
use crate::kernels::{
    check_int8_scales, check_lowp_tile, Bf16Layout, Int8Layout, Int8Scales, Isa, Kernels,
    LowpKernels,
};

/// The NEON + i8mm kernel table.
pub static KERNELS: Kernels = Kernels {
    isa: Isa::NeonI8mm,
    lowp: Some(&LOWP),
    ..neon::KERNELS
};

/// The reduced-precision kernels of this path.
pub static LOWP: LowpKernels = LowpKernels {
    mr: MR,
    bf16,
    int8,
    to_bf16: neon::to_bf16,
    quantize_u8: neon::quantize_u8,
    int8_layout: Int8Layout::Octets,
    bf16_layout: Bf16Layout::Pairs,
    bf16_compute: "bf16 weights, f32 compute, 2-row blocks",
    int8_compute: "USMMLA",
};

/// The NEON bf16 tile ([`neon::bf16`], 2 rows) over up to 8 rows.
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
    for r in (0..mr).step_by(neon::LOWP_MR) {
        let rows = neon::LOWP_MR.min(mr - r);
        neon::bf16(kp, &a[r * lda..], lda, b, &mut c[r * ldc..], ldc, rows, nr);
    }
}

/// Safe entry point with the [`crate::kernels::Int8Kernel`] contract, over an
/// [`Int8Layout::Octets`] panel (`kq.div_ceil(2)` groups of 256 bytes).
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
    assert!(b.len() >= mmla::panel_bytes(kq), "weight panel too short");
    let (steps, half) = (kq / 2, kq % 2 == 1);
    let (a, b) = (a.as_ptr(), b.as_ptr());
    macro_rules! go {
        ($($m:literal)*) => {
            match mr {
                // SAFETY: the checks above bound every access: `4 * kq` bytes (`steps`
                // groups of 8 and a half group) of rows `0..mr` of `a` (stride `lda`),
                // and `kq.div_ceil(2)` groups of 256 bytes of `b`. The table holding
                // this function is handed out only when the CPU has NEON and i8mm.
                $($m => unsafe { int8_sums::<$m>(steps, half, a, lda, b) },)*
                _ => unreachable!(),
            }
        };
    }
    let sums: Sums = go!(1 2 3 4 5 6 7 8);
    for (i, row) in sums.iter().enumerate().take(mr) {
        let zero = s.a_zero[i];
        let out = &mut c[i * ldc..i * ldc + nr];
        for (j, o) in out.iter_mut().enumerate() {
            let v = row[j].wrapping_sub(zero.wrapping_mul(s.b_colsum[j]));
            *o = v as f32 * (s.b_scale[j] * s.a_scale[i]);
        }
    }
}

/// The i32 sums of an `M x 32` tile: u8 activations times s8 weights.
///
/// # Safety
/// `a` must be valid for rows `0..M` of `8 * steps + 4 * half` bytes at stride
/// `lda`, `b` for `256 * (steps + half)` bytes; the CPU must support NEON and i8mm.
#[target_feature(enable = "neon,i8mm")]
unsafe fn int8_sums<const M: usize>(
    steps: usize,
    half: bool,
    a: *const u8,
    lda: usize,
    b: *const i8,
) -> Sums {
    let usmmla = |acc: int32x4_t, x: uint8x16_t, w: uint8x16_t| {
        let mut acc = acc;
        // SAFETY: a register-only instruction of the i8mm extension, which this
        // function's caller guarantees; no memory or stack is touched.
        unsafe {
            asm!(
                "usmmla {acc:v}.4s, {x:v}.16b, {w:v}.16b",
                acc = inout(vreg) acc,
                x = in(vreg) x,
                w = in(vreg) w,
                options(pure, nomem, nostack),
            );
        }
        acc
    };
    // SAFETY: the bounds are this function's contract, and `usmmla` runs on a CPU
    // with i8mm (ditto).
    unsafe { mmla::sums::<M, _>(steps, half, a, lda, b.cast(), usmmla) }
}
