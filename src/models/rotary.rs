//! Rotary position embeddings (RoPE) applied in place to the Q and K parts of the
//! fused `[tokens x 3H]` projections, positions counted from 0 in each sequence.
//! Both layouts: rotate-half (GPT-NeoX: pairs `(i, i + dims/2)`) and interleaved
//! (GPT-J: pairs `(2i, 2i + 1)`); only the first `dims` of each head rotate.

use rayon::prelude::*;

/// How a family rotates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rotary {
    /// Base of the frequencies (`rope_theta`).
    pub theta: f32,
    /// Rotated dimensions of each head (even, at most the head width).
    pub dims: usize,
    /// Pairs `(2i, 2i + 1)` instead of `(i, i + dims/2)`.
    pub interleaved: bool,
    /// Static NTK-aware scaling by this factor (GTE's `rope_scaling: {type: ntk}`):
    /// base `theta * f`, frequencies divided by `f^(2/dims)`.
    pub ntk_factor: Option<f32>,
}

/// cos and sin of every (position, frequency) for one [`Rotary`].
pub struct RotaryTable {
    rotary: Rotary,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RotaryTable {
    /// The table for positions `0..positions`, computed in f32 as PyTorch does:
    /// `inv_freq[i] = 1 / theta^(2i / dims)`, angle `= position * inv_freq[i]`.
    pub fn new(rotary: Rotary, positions: usize) -> Self {
        let half = rotary.dims / 2;
        let dims = rotary.dims as f32;
        let (base, shrink) = match rotary.ntk_factor {
            Some(f) => (rotary.theta * f, f.powf(2.0 / dims)),
            None => (rotary.theta, 1.0),
        };
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / dims) / shrink)
            .collect();
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for f in &inv {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Self { rotary, cos, sin }
    }

    /// Rotates Q and K of every head of every token of `qkv` (`[tokens x 3H]`,
    /// sequences delimited by `offsets`).
    pub fn apply(&self, qkv: &mut [f32], offsets: &[usize], heads: usize, dh: usize) {
        let h = heads * dh;
        let half = self.rotary.dims / 2;
        let mut positions = Vec::with_capacity(offsets.last().copied().unwrap_or(0));
        for w in offsets.windows(2) {
            positions.extend(0..w[1] - w[0]);
        }
        qkv.par_chunks_mut(3 * h)
            .zip(positions.par_iter())
            .with_min_len(16)
            .for_each(|(row, &p)| {
                let cos = &self.cos[p * half..(p + 1) * half];
                let sin = &self.sin[p * half..(p + 1) * half];
                for head in row[..2 * h].chunks_exact_mut(dh) {
                    let v = &mut head[..self.rotary.dims];
                    if self.rotary.interleaved {
                        for (i, pair) in v.chunks_exact_mut(2).enumerate() {
                            let (a, b) = (pair[0], pair[1]);
                            pair[0] = a * cos[i] - b * sin[i];
                            pair[1] = b * cos[i] + a * sin[i];
                        }
                    } else {
                        let (x1, x2) = v.split_at_mut(half);
                        for i in 0..half {
                            let (a, b) = (x1[i], x2[i]);
                            x1[i] = a * cos[i] - b * sin[i];
                            x2[i] = b * cos[i] + a * sin[i];
                        }
                    }
                }
            });
    }
}
