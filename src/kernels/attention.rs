//! Scaled dot-product attention over a ragged batch, from the fused `[tokens x 3H]`
//! QKV projection into `[tokens x H]`: one task per sequence when there are enough
//! sequences to keep the pool busy (the task owns its rows of the output), else one
//! per (sequence, head).
//!
//! A head reads its Q, K and V straight out of the QKV rows (no gathers): Kᵀ
//! (scaled by `1/sqrt(dh)`) and V are packed into scratch panels reused by the
//! thread, `S = Q·Kᵀ` runs on the f32 microkernel, `E = exp(S - max)` row by row,
//! `O = E·V` is written in place, and only then divided by the row sums (`len x dh`
//! divisions instead of `len x len`).

use rayon::prelude::*;

use super::gemm::{gemm_serial_strided, PackedB};
use super::Kernels;
use crate::error::{Error, Result};

/// Scratch one pool thread reuses across its tasks.
struct Scratch {
    kt: PackedB,
    v: PackedB,
    scores: Vec<f32>,
    sums: Vec<f32>,
    out: Vec<f32>,
    rel: Vec<f32>,
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

/// An additive score bias that depends only on the head and the distance
/// `j - i` from query `i` to key `j` of a sequence: `bias(head, j - i)`. MPNet's
/// bucketed relative bias, ALiBi and local windows (`-inf` outside) are such biases.
pub type RelativeBias<'a> = &'a (dyn Fn(usize, isize) -> f32 + Sync);

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
    attention_biased(kern, qkv, offsets, heads, dh, None, None, ctx)
}

/// Query rows per block of windowed or causal attention.
const WINDOW_BLOCK: usize = 64;

/// The shape and masking of one attention call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnShape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention: `heads` is a multiple of it; query
    /// head `i` reads key/value head `i / (heads / kv_heads)`).
    pub kv_heads: usize,
    /// Width of one head.
    pub dh: usize,
    /// Multiplier of the scores `q·k` (usually `1/sqrt(dh)`).
    pub scale: f32,
    /// A query sees only keys at or before its own position.
    pub causal: bool,
    /// With `Some(w)`, keys farther than `w` positions from the query are left out.
    pub window: Option<usize>,
}

impl AttnShape {
    /// Multi-head attention of an encoder: `heads` heads of width `dh` for Q, K
    /// and V, scale `1/sqrt(dh)`, no mask.
    pub fn mha(heads: usize, dh: usize) -> Self {
        Self {
            heads,
            kv_heads: heads,
            dh,
            scale: 1.0 / (dh as f32).sqrt(),
            causal: false,
            window: None,
        }
    }

    /// Values in one projection row `[q (heads·dh) | k (kv_heads·dh) | v (kv_heads·dh)]`.
    pub fn row_width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.dh
    }
}

/// [`attention`] with `bias(head, j - i)` added to each score `q_i·k_j/sqrt(dh)`
/// before the softmax, and, with `window: Some(w)`, keys farther than `w` from the
/// query left out. A windowed sequence longer than a few windows runs in blocks of
/// query rows that each read only the keys their window reaches, so its cost grows
/// linearly with its length.
#[allow(clippy::too_many_arguments)]
pub fn attention_biased(
    kern: &'static Kernels,
    qkv: &[f32],
    offsets: &[usize],
    heads: usize,
    dh: usize,
    bias: Option<RelativeBias>,
    window: Option<usize>,
    ctx: &mut [f32],
) -> Result<()> {
    let shape = AttnShape {
        window,
        ..AttnShape::mha(heads, dh)
    };
    attention_shaped(kern, qkv, offsets, shape, bias, ctx)
}

/// Attention of any [`AttnShape`] over a ragged batch: row `t` of `qkv` holds
/// token `t`'s `[q | k | v]` ([`AttnShape::row_width`] values), `ctx` receives
/// `heads·dh` values per token. Causal and windowed sequences run in blocks of query
/// rows that read only the keys they may see.
pub fn attention_shaped(
    kern: &'static Kernels,
    qkv: &[f32],
    offsets: &[usize],
    shape: AttnShape,
    bias: Option<RelativeBias>,
    ctx: &mut [f32],
) -> Result<()> {
    let AttnShape {
        heads,
        kv_heads,
        dh,
        scale,
        causal,
        window,
    } = shape;
    if kv_heads == 0 || heads % kv_heads != 0 {
        return Err(Error::InvalidInput(format!(
            "attention: {heads} query heads are not a multiple of {kv_heads} key/value heads"
        )));
    }
    let group = heads / kv_heads;
    let h = heads * dh;
    let stride = shape.row_width();
    let t = offsets.last().copied().unwrap_or(0);
    if qkv.len() != t * stride || ctx.len() != t * h || offsets.windows(2).any(|w| w[1] < w[0]) {
        return Err(Error::InvalidInput(format!(
            "attention: {} QKV values and {} outputs for {t} tokens of width {h}, or offsets not sorted",
            qkv.len(),
            ctx.len()
        )));
    }
    let scratch = || Scratch {
        kt: PackedB::empty(kern),
        v: PackedB::empty(kern),
        scores: Vec::new(),
        sums: Vec::new(),
        out: Vec::new(),
        rel: Vec::new(),
    };
    // Query rows q0..q1 against keys k0..k1 of one (sequence, head), into rows
    // q0..q1 of `out`.
    let block = |sc: &mut Scratch,
                 start: usize,
                 hd: usize,
                 (q0, q1): (usize, usize),
                 (k0, k1): (usize, usize),
                 out: &mut [f32],
                 ldo: usize|
     -> Result<()> {
        let kv = hd / group;
        let part = |tok: usize, which: usize| {
            let at = (start + tok) * stride + heads * dh + (which - 1) * kv_heads * dh + kv * dh;
            &qkv[at..at + dh]
        };
        let (ql, kl) = (q1 - q0, k1 - k0);
        sc.kt.refill_cols(dh, kl, scale, |j| part(k0 + j, 1));
        sc.v.refill_rows(kl, dh, |j| part(k0 + j, 2));
        sc.scores.resize(ql * kl, 0.0);
        let q = &qkv[(start + q0) * stride + hd * dh..];
        gemm_serial_strided(q, stride, ql, &sc.kt, &mut sc.scores, kl)?;
        if bias.is_some() || window.is_some() || causal {
            // Distances d = (k0 + j) - (q0 + i) run from k0 - q1 + 1 to k1 - 1 - q0:
            // rel[d - lo] holds the bias of d, and row i reads ql - 1 - i onwards.
            let lo = k0 as isize - (q1 as isize - 1);
            sc.rel.clear();
            sc.rel.extend((0..ql + kl - 1).map(|k| {
                let d = lo + k as isize;
                if window.is_some_and(|w| d.unsigned_abs() > w) || (causal && d > 0) {
                    f32::NEG_INFINITY
                } else {
                    bias.map_or(0.0, |b| b(hd, d))
                }
            }));
            for (i, row) in sc.scores.chunks_exact_mut(kl).enumerate() {
                let r = &sc.rel[ql - 1 - i..ql - 1 - i + kl];
                row.iter_mut().zip(r).for_each(|(s, b)| *s += b);
            }
        }
        sc.sums.clear();
        sc.sums.extend(
            sc.scores
                .chunks_exact_mut(kl)
                .map(|r| (kern.exp_shifted)(r)),
        );
        let o = &mut out[q0 * ldo..];
        gemm_serial_strided(&sc.scores, kl, ql, &sc.v, o, ldo)?;
        for (i, sum) in sc.sums.iter().enumerate() {
            let inv = 1.0 / sum;
            o[i * ldo..i * ldo + dh].iter_mut().for_each(|x| *x *= inv);
        }
        Ok(())
    };
    let head =
        |sc: &mut Scratch, start: usize, len: usize, hd: usize, out: &mut [f32], ldo: usize| {
            let blocked = (causal && len > WINDOW_BLOCK)
                || window.is_some_and(|w| len > 2 * w + 2 * WINDOW_BLOCK);
            if !blocked {
                return block(sc, start, hd, (0, len), (0, len), out, ldo);
            }
            let mut q0 = 0;
            while q0 < len {
                let q1 = (q0 + WINDOW_BLOCK).min(len);
                let k0 = window.map_or(0, |w| q0.saturating_sub(w));
                let k1 = if causal {
                    q1
                } else {
                    window.map_or(len, |w| (q1 + w).min(len))
                };
                block(sc, start, hd, (q0, q1), (k0, k1), out, ldo)?;
                q0 = q1;
            }
            Ok(())
        };
    let seqs: Vec<usize> = (0..offsets.len().saturating_sub(1))
        .filter(|&s| offsets[s + 1] > offsets[s])
        .collect();
    if seqs.len() >= 2 * rayon::current_num_threads() {
        // Each task owns its sequence's rows of the output.
        let mut parts = Vec::with_capacity(seqs.len());
        let mut rest = ctx;
        let mut at = 0;
        for &s in &seqs {
            let (_, tail) = rest.split_at_mut((offsets[s] - at) * h);
            let (rows, tail) = tail.split_at_mut((offsets[s + 1] - offsets[s]) * h);
            parts.push((s, rows));
            rest = tail;
            at = offsets[s + 1];
        }
        return parts
            .into_par_iter()
            .try_for_each_init(scratch, |sc, (s, rows)| -> Result<()> {
                let (start, len) = (offsets[s], offsets[s + 1] - offsets[s]);
                for hd in 0..heads {
                    head(sc, start, len, hd, &mut rows[hd * dh..], h)?;
                }
                Ok(())
            });
    }
    let jobs: Vec<(usize, usize)> = seqs
        .iter()
        .flat_map(|&s| (0..heads).map(move |hd| (s, hd)))
        .collect();
    let out = Shared {
        ptr: ctx.as_mut_ptr(),
        len: ctx.len(),
    };
    jobs.par_iter()
        .try_for_each_init(scratch, |sc, &(s, hd)| -> Result<()> {
            let (start, len) = (offsets[s], offsets[s + 1] - offsets[s]);
            let mut o = std::mem::take(&mut sc.out);
            o.resize(len * dh, 0.0);
            head(sc, start, len, hd, &mut o, dh)?;
            for (i, row) in o.chunks_exact(dh).enumerate() {
                out.write((start + i) * h + hd * dh, row);
            }
            sc.out = o;
            Ok(())
        })
}
