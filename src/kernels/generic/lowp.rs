//! Reference bf16 and int8 microkernels: scalar loops over the packed layouts of
//! [`crate::kernels::Bf16Kernel`] and [`crate::kernels::Int8Kernel`]. The bf16 one
//! accumulates in f32 pair by pair (as `VDPBF16PS` does); the int8 one in i32, then
//! rescales exactly as the SIMD kernels do, so those must match it bit for bit.

use crate::kernels::{
    check_int8_scales, check_lowp_tile, vector, Bf16Layout, Int8Layout, Int8Scales, LowpKernels,
    LOWP_NR,
};

/// Rows of the reference tiles.
pub const MR: usize = 4;

/// The reference reduced-precision kernels.
pub static LOWP: LowpKernels = LowpKernels {
    mr: MR,
    bf16,
    int8,
    to_bf16,
    quantize_u8,
    int8_layout: Int8Layout::Quads,
    bf16_layout: Bf16Layout::Pairs,
    bf16_compute: "scalar",
    int8_compute: "scalar",
};

fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// Scalar bf16 tile; see [`crate::kernels::Bf16Kernel`].
#[allow(clippy::too_many_arguments)]
pub fn bf16(
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
    for i in 0..mr {
        let row = &a[i * lda..i * lda + 2 * kp];
        for j in 0..nr {
            let mut s = 0.0f32;
            for q in 0..kp {
                let bq = &b[(q * LOWP_NR + j) * 2..(q * LOWP_NR + j) * 2 + 2];
                s += bf16_to_f32(row[2 * q]) * bf16_to_f32(bq[0]);
                s += bf16_to_f32(row[2 * q + 1]) * bf16_to_f32(bq[1]);
            }
            c[i * ldc + j] = s;
        }
    }
}

/// Scalar int8 tile; see [`crate::kernels::Int8Kernel`].
#[allow(clippy::too_many_arguments)]
pub fn int8(
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
    for i in 0..mr {
        let row = &a[i * lda..i * lda + 4 * kq];
        for j in 0..nr {
            let mut acc = 0i32;
            for q in 0..kq {
                let at = (q * LOWP_NR + j) * 4;
                for t in 0..4 {
                    acc += row[4 * q + t] as i32 * b[at + t] as i32;
                }
            }
            let v = acc.wrapping_sub(s.a_zero[i].wrapping_mul(s.b_colsum[j]));
            c[i * ldc + j] = v as f32 * (s.b_scale[j] * s.a_scale[i]);
        }
    }
}

/// f32 to bf16, round to nearest even.
pub fn to_bf16(src: &[f32], dst: &mut [u16]) {
    vector::to_bf16(src, dst)
}

/// Asymmetric per-row u8 quantisation.
pub fn quantize_u8(src: &[f32], dst: &mut [u8]) -> (f32, i32) {
    vector::quantize_u8(src, dst)
}
