//! What the i8mm and bf16 tiles share: the walk of an `M x 32` tile (M <= 8) in
//! 2x2 blocks of a matrix multiply-accumulate instruction. `USMMLA` multiplies a
//! 2x8 u8 block by an 8x2 s8 block into 2x2 i32 sums; `BFMMLA` a 2x4 by 4x2 bf16
//! block into 2x2 f32. Both read the same shapes: one 16-byte register holds two
//! rows of activations (8 K-consecutive bytes each) or two columns of weights (8
//! K-consecutive bytes each: [`crate::kernels::Int8Layout::Octets`] and
//! [`crate::kernels::Bf16Layout::Quads`] panels, 256 bytes per K-group), and the
//! result register holds `[r0c0, r0c1, r1c0, r1c1]`. The tile keeps 16 accumulators:
//! 4 row pairs by 4 column pairs (8x8 blocks), 2 by 8 (4x16) or 1 by 16 (2x32),
//! as the tile's height allows.

use std::arch::aarch64::*;

use crate::kernels::LOWP_NR;

/// Rows of the tiles.
pub const MR: usize = 8;

/// Bytes of one K-group of a panel: 32 columns of 8 bytes.
pub const GROUP_BYTES: usize = 8 * LOWP_NR;

/// The raw sums of a tile, row-major: i32 (`USMMLA`) or f32 bits (`BFMMLA`).
pub type Sums = [[i32; LOWP_NR]; MR];

/// Bytes a panel needs for `quads` 4-byte K-steps of activations (whole groups).
pub fn panel_bytes(quads: usize) -> usize {
    quads.div_ceil(2) * GROUP_BYTES
}

/// 8 bytes of activation row `i` at byte `at` (4 with `half`, zeros above); zeros
/// for a row past the tile's `m`.
///
/// # Safety
/// `rows[i]`, if `i < m`, must be valid for 8 (4 with `half`) bytes at `at`.
#[inline(always)]
unsafe fn row_bytes(
    rows: &[*const u8; MR],
    m: usize,
    i: usize,
    at: usize,
    half: bool,
) -> uint8x8_t {
    // SAFETY: row `i < m` has the bytes (the caller's contract); NEON is part of the
    // aarch64 target's baseline.
    unsafe {
        if i >= m {
            vdup_n_u8(0)
        } else if half {
            vcreate_u8(rows[i].add(at).cast::<u32>().read_unaligned() as u64)
        } else {
            vld1_u8(rows[i].add(at))
        }
    }
}

/// Accumulators of one block: 4 row pairs by up to 16 column pairs.
type Acc = [[int32x4_t; 16]; 4];

/// One K-group of a block: `pairs` row-pair registers (bytes at `at` of each row,
/// 4 of them with `half`) times `cols` column-pair registers of the group at `bg`.
///
/// # Safety
/// As [`sums`], with `at` and `bg` inside its bounds; `pairs <= 4`, `cols <= 16`.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)] // [row pair][column pair]
#[inline(always)]
unsafe fn step<const M: usize, F>(
    acc: &mut Acc,
    rows: &[*const u8; MR],
    (pairs, cols): (usize, usize),
    at: usize,
    half: bool,
    bg: *const u8,
    mmla: &F,
) where
    F: Fn(int32x4_t, uint8x16_t, uint8x16_t) -> int32x4_t,
{
    // SAFETY: NEON is part of the aarch64 target's baseline.
    let mut x = [unsafe { vdupq_n_u8(0) }; 4];
    for (r, x) in x.iter_mut().enumerate().take(pairs) {
        // SAFETY: rows `2r`, `2r + 1` below `M` have their bytes at `at` (the
        // caller's contract); NEON is part of the aarch64 target's baseline.
        unsafe {
            let lo = row_bytes(rows, M, 2 * r, at, half);
            let hi = row_bytes(rows, M, 2 * r + 1, at, half);
            *x = vcombine_u8(lo, hi);
        }
    }
    for c in 0..cols {
        // SAFETY: the group at `bg` holds this block's `cols` column pairs of 16
        // bytes (the caller's contract).
        let w = unsafe { vld1q_u8(bg.add(16 * c)) };
        for r in 0..pairs {
            acc[r][c] = mmla(acc[r][c], x[r], w);
        }
    }
}

/// The sums of an `M x 32` tile over `steps` whole K-groups of 8 bytes, plus a last
/// half-group of 4 bytes when `half_tail`, with `mmla(acc, two rows, two columns)`
/// one 2x2 block step. Rows `M..8` of the result are zero.
///
/// Everything here is inlined into the caller, a function that enables the
/// instruction's target feature, so `mmla` (a closure defined there) inlines too.
///
/// # Safety
/// `M <= 8`; `a` must be valid for rows `0..M` of `8 * steps + 4 * half_tail` bytes
/// at stride `lda` bytes; `b` for `GROUP_BYTES * (steps + half_tail)` bytes; `mmla`
/// must be safe to run (the CPU has its instruction).
#[allow(clippy::needless_range_loop)] // [row pair][column pair]
#[inline(always)]
pub unsafe fn sums<const M: usize, F>(
    steps: usize,
    half_tail: bool,
    a: *const u8,
    lda: usize,
    b: *const u8,
    mmla: F,
) -> Sums
where
    F: Fn(int32x4_t, uint8x16_t, uint8x16_t) -> int32x4_t,
{
    let pairs = M.div_ceil(2);
    // Column pairs per block: 16 accumulators whatever the height.
    let cols = match pairs {
        1 => 16,
        2 => 8,
        _ => 4,
    };
    let mut rows = [a; MR];
    for (i, r) in rows.iter_mut().enumerate() {
        *r = a.wrapping_add(i * lda);
    }
    let mut out = [[0i32; LOWP_NR]; MR];
    for block in 0..16 / cols {
        // SAFETY: NEON is part of the aarch64 target's baseline.
        let mut acc: Acc = [[unsafe { vdupq_n_s32(0) }; 16]; 4];
        let b = b.wrapping_add(block * cols * 16);
        for g in 0..steps {
            // SAFETY: `g < steps`: 8 bytes of each row at `8g`, and group `g` of the
            // panel, are in bounds (this function's contract).
            unsafe {
                step::<M, F>(
                    &mut acc,
                    &rows,
                    (pairs, cols),
                    8 * g,
                    false,
                    b.wrapping_add(g * GROUP_BYTES),
                    &mmla,
                )
            };
        }
        if half_tail {
            let g = steps;
            // SAFETY: the last 4 bytes of each row, and group `steps` of the panel,
            // are in bounds (this function's contract).
            unsafe {
                step::<M, F>(
                    &mut acc,
                    &rows,
                    (pairs, cols),
                    8 * g,
                    true,
                    b.wrapping_add(g * GROUP_BYTES),
                    &mmla,
                )
            };
        }
        for r in 0..pairs {
            let (top, bottom) = out.split_at_mut(2 * r + 1);
            let (top, bottom) = (&mut top[2 * r], &mut bottom[0]);
            for c in 0..cols {
                let j = 2 * (block * cols + c);
                // SAFETY: `j + 2 <= 32`: two columns of rows `2r` and `2r + 1`.
                unsafe {
                    vst1_s32(top.as_mut_ptr().add(j), vget_low_s32(acc[r][c]));
                    vst1_s32(bottom.as_mut_ptr().add(j), vget_high_s32(acc[r][c]));
                }
            }
        }
    }
    out
}
