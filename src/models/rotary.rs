//! Rotary position embeddings (RoPE) applied in place to the query and key heads
//! of projection rows, at explicit positions. Both layouts: rotate-half (GPT-NeoX:
//! pairs `(i, i + dims/2)`) and interleaved (GPT-J: pairs `(2i, 2i + 1)`); only the
//! first `dims` of each head rotate. The frequency schedules transformers computes
//! (`modeling_rope_utils`): default, static NTK (GTE), linear, dynamic NTK, Llama 3
//! and YaRN, all in f32 as PyTorch does.

use rayon::prelude::*;

/// A RoPE frequency schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    /// `inv_freq[i] = 1 / theta^(2i / dims)`.
    None,
    /// Static NTK-aware scaling (GTE's `rope_scaling: {type: ntk}`): base
    /// `theta * f`, frequencies divided by `f^(2/dims)`.
    Ntk(f32),
    /// Positions divided by the factor (`linear`).
    Linear(f32),
    /// `dynamic`: a sequence longer than `max_positions` uses the base
    /// `theta * (factor * len / max_positions - (factor - 1))^(dims / (dims - 2))`.
    Dynamic {
        /// The scaling factor.
        factor: f32,
        /// `max_position_embeddings` of the config.
        max_positions: usize,
    },
    /// Llama 3.x: low frequencies divided by the factor, high ones kept, the band
    /// between smoothed.
    Llama3 {
        /// The scaling factor (8 in Llama 3.1).
        factor: f32,
        /// Wavelengths above `original / low_freq_factor` are scaled.
        low_freq_factor: f32,
        /// Wavelengths below `original / high_freq_factor` are kept.
        high_freq_factor: f32,
        /// The pre-training context (`original_max_position_embeddings`).
        original: usize,
    },
    /// YaRN: interpolated and extrapolated frequencies blended by a linear ramp over
    /// the dimensions, cos and sin multiplied by `attention_factor`.
    Yarn {
        /// The scaling factor.
        factor: f32,
        /// The pre-training context (`original_max_position_embeddings`).
        original: usize,
        /// Rotations bounding the ramp (`beta_fast`, default 32).
        beta_fast: f32,
        /// Rotations bounding the ramp (`beta_slow`, default 1).
        beta_slow: f32,
        /// Whether the ramp's bounds are rounded outwards (`truncate`, default true).
        truncate: bool,
        /// The cos/sin multiplier, resolved from the config at parse time.
        attention_factor: f32,
    },
}

/// How a model rotates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rotary {
    /// Base of the frequencies (`rope_theta`).
    pub theta: f32,
    /// Rotated dimensions of each head (even, at most the head width).
    pub dims: usize,
    /// Pairs `(2i, 2i + 1)` instead of `(i, i + dims/2)`.
    pub interleaved: bool,
    /// The frequency schedule.
    pub scaling: RopeScaling,
}

impl Rotary {
    /// Plain rotate-half RoPE over `dims` dimensions.
    pub fn plain(theta: f32, dims: usize) -> Self {
        Self {
            theta,
            dims,
            interleaved: false,
            scaling: RopeScaling::None,
        }
    }

    /// The inverse frequencies and the cos/sin multiplier for a sequence of
    /// `len` tokens (only dynamic scaling depends on it).
    pub fn inv_freq(&self, len: usize) -> (Vec<f32>, f32) {
        let half = self.dims / 2;
        let dims = self.dims as f32;
        let plain = |base: f32| -> Vec<f32> {
            (0..half)
                .map(|i| 1.0 / base.powf((2 * i) as f32 / dims))
                .collect()
        };
        match self.scaling {
            RopeScaling::None => (plain(self.theta), 1.0),
            RopeScaling::Ntk(f) => {
                let shrink = f.powf(2.0 / dims);
                let v = plain(self.theta * f).into_iter().map(|x| x / shrink);
                (v.collect(), 1.0)
            }
            RopeScaling::Linear(f) => (plain(self.theta).into_iter().map(|x| x / f).collect(), 1.0),
            RopeScaling::Dynamic {
                factor,
                max_positions,
            } => {
                let len = len.max(max_positions) as f64;
                let grow = (factor as f64 * len / max_positions as f64) - (factor as f64 - 1.0);
                let base = self.theta as f64 * grow.powf(dims as f64 / (dims as f64 - 2.0));
                (plain(base as f32), 1.0)
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original,
            } => {
                let old = original as f32;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                let v = plain(self.theta).into_iter().map(|f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                });
                (v.collect(), 1.0)
            }
            RopeScaling::Yarn {
                factor,
                original,
                beta_fast,
                beta_slow,
                truncate,
                attention_factor,
            } => {
                let base = self.theta as f64;
                let d = self.dims as f64;
                let correction = |rotations: f64| {
                    d * (original as f64 / (rotations * 2.0 * std::f64::consts::PI)).ln()
                        / (2.0 * base.ln())
                };
                let (mut low, mut high) =
                    (correction(beta_fast as f64), correction(beta_slow as f64));
                if truncate {
                    low = low.floor();
                    high = high.ceil();
                }
                let low = low.max(0.0) as f32;
                let mut high = high.min(d - 1.0) as f32;
                if low == high {
                    high += 0.001;
                }
                let v = (0..half).map(|i| {
                    let pos = self.theta.powf((2 * i) as f32 / dims);
                    let extrapolation = 1.0 / pos;
                    let interpolation = 1.0 / (factor * pos);
                    let ramp = ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
                    let keep = 1.0 - ramp;
                    interpolation * (1.0 - keep) + extrapolation * keep
                });
                (v.collect(), attention_factor)
            }
        }
    }

    /// YaRN's default cos/sin multiplier (`get_mscale`), from its config values.
    pub fn yarn_attention_factor(
        factor: f32,
        mscale: Option<f32>,
        mscale_all_dim: Option<f32>,
    ) -> f32 {
        let get = |scale: f64, m: f64| {
            if scale <= 1.0 {
                1.0
            } else {
                0.1 * m * scale.ln() + 1.0
            }
        };
        let f = factor as f64;
        match (mscale, mscale_all_dim) {
            (Some(m), Some(a)) if m != 0.0 && a != 0.0 => {
                (get(f, m as f64) / get(f, a as f64)) as f32
            }
            _ => get(f, 1.0) as f32,
        }
    }
}

/// cos and sin of every (position, frequency) for one [`Rotary`].
pub struct RotaryTable {
    rotary: Rotary,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RotaryTable {
    /// The table for positions `0..positions` of sequences of `len` tokens
    /// (`len` matters to dynamic scaling only), angles `position * inv_freq[i]` in
    /// f32 as PyTorch computes them.
    pub fn new(rotary: Rotary, positions: usize) -> Self {
        Self::for_len(rotary, positions, positions)
    }

    /// [`Self::new`] with the sequence length dynamic scaling reads.
    pub fn for_len(rotary: Rotary, positions: usize, len: usize) -> Self {
        let half = rotary.dims / 2;
        let (inv, scale) = rotary.inv_freq(len);
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for f in &inv {
                let angle = p as f32 * f;
                cos.push(angle.cos() * scale);
                sin.push(angle.sin() * scale);
            }
        }
        Self { rotary, cos, sin }
    }

    /// Positions the table covers.
    pub fn positions(&self) -> usize {
        self.cos.len() / (self.rotary.dims / 2).max(1)
    }

    /// Rotates Q and K of every head of every token of `qkv` (`[tokens x 3H]`,
    /// sequences delimited by `offsets`, positions from 0 in each).
    pub fn apply(&self, qkv: &mut [f32], offsets: &[usize], heads: usize, dh: usize) {
        let mut positions = Vec::with_capacity(offsets.last().copied().unwrap_or(0));
        for w in offsets.windows(2) {
            positions.extend(0..w[1] - w[0]);
        }
        self.apply_rows(qkv, 3 * heads * dh, 2 * heads, dh, &positions);
    }

    /// Rotates the first `heads` heads (of width `dh`) of each row of `rows` (row
    /// stride `stride`), row `r` at position `positions[r]` (below
    /// [`Self::positions`]).
    pub fn apply_rows(
        &self,
        rows: &mut [f32],
        stride: usize,
        heads: usize,
        dh: usize,
        positions: &[usize],
    ) {
        let half = self.rotary.dims / 2;
        rows.par_chunks_mut(stride)
            .zip(positions.par_iter())
            .with_min_len(16)
            .for_each(|(row, &p)| self.rotate(&mut row[..heads * dh], dh, p, half));
    }

    /// Rotates each head of `heads` (concatenated heads of width `dh`) at `p`.
    fn rotate(&self, heads: &mut [f32], dh: usize, p: usize, half: usize) {
        let cos = &self.cos[p * half..(p + 1) * half];
        let sin = &self.sin[p * half..(p + 1) * half];
        for head in heads.chunks_exact_mut(dh) {
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
    }
}
