//! NEON with i8mm and the bf16 extension: the int8 tile of [`super::i8mm`] and an
//! 8x32 bf16 GEMM tile on `BFMMLA` (a 2x4 by 4x2 bf16 block into 2x2 f32; stable
//! Rust has no intrinsic for it, so it goes through `asm!`) over
//! [`Bf16Layout::Quads`] panels. Activations are rounded to bf16 as on the x86-64
//! `VDPBF16PS` path. `BFMMLA` rounds its f32 additions its own way (unless
//! `FEAT_EBF16`'s `FPCR.EBF` is set, round-to-odd with subnormals flushed), so
//! results differ from the other paths' in the last bits of the f32 sums.

use std::arch::aarch64::*;
use std::arch::asm;

use super::mmla::{self, Sums, MR};
use super::{i8mm, neon};
use crate::kernels::{check_lowp_tile, Bf16Layout, Int8Layout, Isa, Kernels, LowpKernels};

/// The NEON + i8mm + bf16 kernel table.
pub static KERNELS: Kernels = Kernels {
    isa: Isa::NeonBf16,
    lowp: Some(&LOWP),
    ..neon::KERNELS
};

/// The reduced-precision kernels of this path.
pub static LOWP: LowpKernels = LowpKernels {
    mr: MR,
    bf16,
    int8: i8mm::int8,
    to_bf16: neon::to_bf16,
    quantize_u8: neon::quantize_u8,
    int8_layout: Int8Layout::Octets,
    bf16_layout: Bf16Layout::Quads,
    bf16_compute: "BFMMLA",
    int8_compute: "USMMLA",
};

/// Safe entry point with the [`crate::kernels::Bf16Kernel`] contract, over a
/// [`Bf16Layout::Quads`] panel (`kp.div_ceil(2)` groups of 128 values).
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
    // A pair of bf16 is 4 bytes: `kp` pairs are as many bytes as `kp` int8 quads.
    assert!(
        2 * b.len() >= mmla::panel_bytes(kp),
        "weight panel too short"
    );
    let (steps, half) = (kp / 2, kp % 2 == 1);
    let (a, b) = (a.as_ptr().cast::<u8>(), b.as_ptr().cast::<u8>());
    let lda = 2 * lda;
    macro_rules! go {
        ($($m:literal)*) => {
            match mr {
                // SAFETY: the checks above bound every access: `2 * kp` values
                // (`steps` groups of 4 and a half group) of rows `0..mr` of `a`
                // (stride `lda` bytes here), and `kp.div_ceil(2)` groups of 128 values
                // of `b`. The table holding this function is handed out only when the
                // CPU has NEON, i8mm and bf16.
                $($m => unsafe { bf16_sums::<$m>(steps, half, a, lda, b) },)*
                _ => unreachable!(),
            }
        };
    }
    let sums: Sums = go!(1 2 3 4 5 6 7 8);
    for (i, row) in sums.iter().enumerate().take(mr) {
        for (o, &x) in c[i * ldc..i * ldc + nr].iter_mut().zip(row) {
            *o = f32::from_bits(x as u32);
        }
    }
}

/// The f32 sums (as bits) of an `M x 32` bf16 tile.
///
/// # Safety
/// `a` must be valid for rows `0..M` of `8 * steps + 4 * half` bytes at stride
/// `lda` bytes, `b` for `256 * (steps + half)` bytes; the CPU must support NEON and
/// bf16.
#[target_feature(enable = "neon,bf16")]
unsafe fn bf16_sums<const M: usize>(
    steps: usize,
    half: bool,
    a: *const u8,
    lda: usize,
    b: *const u8,
) -> Sums {
    let bfmmla = |acc: int32x4_t, x: uint8x16_t, w: uint8x16_t| {
        let mut acc = acc;
        // SAFETY: a register-only instruction of the bf16 extension, which this
        // function's caller guarantees; no memory or stack is touched. The registers
        // hold f32 (acc) and bf16 (x, w) bits whatever their Rust types.
        unsafe {
            asm!(
                "bfmmla {acc:v}.4s, {x:v}.8h, {w:v}.8h",
                acc = inout(vreg) acc,
                x = in(vreg) x,
                w = in(vreg) w,
                options(pure, nomem, nostack),
            );
        }
        acc
    };
    // SAFETY: the bounds are this function's contract, and `bfmmla` runs on a CPU
    // with bf16 (ditto).
    unsafe { mmla::sums::<M, _>(steps, half, a, lda, b, bfmmla) }
}
