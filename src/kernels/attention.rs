//! Scaled dot-product attention over a ragged batch, from the fused `[tokens x 3H]`
//! QKV projection into `[tokens x H]`, one task per (sequence, head).
//!
//! Each task reads its head's Q, K and V straight out of the QKV rows (no gathers):
//! Kᵀ (scaled by `1/sqrt(dh)`) and V are packed into scratch panels reused across
//! the task's thread, `S = Q·Kᵀ` and `O = softmax(S)·V` run on the f32 microkernel,
//! and the task writes its `len x dh` block of the output in place.

use rayon::prelude::*;

use super::gemm::{gemm_serial_strided, PackedB};
use super::Kernels;
use crate::error::{Error, Result};

/// Scratch one pool thread reuses across its tasks.
struct Scratch {
    kt: PackedB,
    v: PackedB,
    scores: Vec<f32>,
    out: Vec<f32>,
}

/// The output matrix, written by many tasks at once, each to its own elements.
struct Shared {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: `Shared` is only used by `attention`, whose tasks write pairwise disjoint
// elements (distinct (sequence, head) pairs own distinct rows x column ranges) of a
// buffer that `attention` borrows mutably for the whole parallel section.
unsafe impl Sync for Shared {}

impl Shared {
    /// Copies `src` to elements `at..at + src.len()`.
    fn write(&self, at: usize, src: &[f32]) {
        assert!(at + src.len() <= self.len, "attention output out of bounds");
        // SAFETY: in bounds (asserted); the buffer outlives the parallel section and
        // no other task writes these elements (see the `Sync` impl above).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(at), src.len()) }
    }
}

/// `ctx[t, hd*dh..(hd+1)*dh] = softmax(q·kᵀ/sqrt(dh))·v` for every sequence
/// `offsets[s]..offsets[s+1]` and head `hd`, where row `t` of `qkv` is
/// `[q (H) | k (H) | v (H)]` with `H = heads * dh`. No mask: sequences are unpadded.
pub fn attention(
    kern: &'static Kernels,
    qkv: &[f32],
    offsets: &[usize],
    heads: usize,
    dh: usize,
    ctx: &mut [f32],
) -> Result<()> {
    let h = heads * dh;
    let t = offsets.last().copied().unwrap_or(0);
    if qkv.len() != t * 3 * h || ctx.len() != t * h || offsets.windows(2).any(|w| w[1] < w[0]) {
        return Err(Error::InvalidInput(format!(
            "attention: {} QKV values and {} outputs for {t} tokens of width {h}, or offsets not sorted",
            qkv.len(),
            ctx.len()
        )));
    }
    let scale = 1.0 / (dh as f32).sqrt();
    let jobs: Vec<(usize, usize)> = (0..offsets.len().saturating_sub(1))
        .filter(|&s| offsets[s + 1] > offsets[s])
        .flat_map(|s| (0..heads).map(move |hd| (s, hd)))
        .collect();
    let out = Shared {
        ptr: ctx.as_mut_ptr(),
        len: ctx.len(),
    };
    let scratch = || Scratch {
        kt: PackedB::empty(kern),
        v: PackedB::empty(kern),
        scores: Vec::new(),
        out: Vec::new(),
    };
    jobs.par_iter()
        .try_for_each_init(scratch, |sc, &(s, hd)| -> Result<()> {
            let (start, len) = (offsets[s], offsets[s + 1] - offsets[s]);
            let part = |tok: usize, which: usize| {
                let at = (start + tok) * 3 * h + which * h + hd * dh;
                &qkv[at..at + dh]
            };
            sc.kt.refill_cols(dh, len, scale, |j| part(j, 1));
            sc.v.refill_rows(len, dh, |j| part(j, 2));
            sc.scores.resize(len * len, 0.0);
            let q = &qkv[start * 3 * h + hd * dh..];
            gemm_serial_strided(q, 3 * h, len, &sc.kt, &mut sc.scores, len)?;
            for r in sc.scores.chunks_exact_mut(len) {
                (kern.softmax)(r, None);
            }
            sc.out.resize(len * dh, 0.0);
            gemm_serial_strided(&sc.scores, len, len, &sc.v, &mut sc.out, dh)?;
            for (i, o) in sc.out.chunks_exact(dh).enumerate() {
                out.write((start + i) * h + hd * dh, o);
            }
            Ok(())
        })
}
