//! The parts an encoder layer is made of: linear layers (packed once, with or
//! without bias), LayerNorms (with or without bias), the gated feed-forward, and
//! the per-thread workspace of a forward pass.

use crate::error::{Error, Result};
use crate::kernels::{Activation, Kernels, PackedLinear, Precision};
use crate::weights::Weights;

/// How a model's weights are packed: the kernel table and the GEMM precision.
#[derive(Clone, Copy)]
pub(crate) struct Packing {
    pub kernels: &'static Kernels,
    pub precision: Precision,
}

/// A linear layer: weights packed for the GEMM microkernel, and a bias (zeros when
/// the family has none).
pub(crate) struct Linear {
    w: PackedLinear,
    b: Option<Vec<f32>>,
}

impl Linear {
    /// Loads `name.weight` (`out x in`) and, with `bias`, `name.bias`.
    pub fn load(
        w: &Weights,
        name: &str,
        out: usize,
        inp: usize,
        bias: bool,
        p: Packing,
    ) -> Result<Self> {
        Self::stacked(w, &[name], out, inp, bias, p)
    }

    /// Several projections of the same input stacked into one (`names.len() * out`
    /// rows): Q, K and V, or an up and a gate projection.
    pub fn stacked(
        w: &Weights,
        names: &[&str],
        out: usize,
        inp: usize,
        bias: bool,
        p: Packing,
    ) -> Result<Self> {
        let parts: Vec<(&str, usize)> = names.iter().map(|n| (*n, out)).collect();
        Self::concat(w, &parts, inp, bias, p)
    }

    /// Projections of the same input with their own output widths, stacked in
    /// order (grouped-query Q, K and V).
    pub fn concat(
        w: &Weights,
        parts: &[(&str, usize)],
        inp: usize,
        bias: bool,
        p: Packing,
    ) -> Result<Self> {
        let rows: usize = parts.iter().map(|(_, out)| out).sum();
        let mut weight = Vec::with_capacity(rows * inp);
        let mut b = Vec::with_capacity(if bias { rows } else { 0 });
        for &(name, out) in parts {
            weight.extend_from_slice(w.get_f32(&format!("{name}.weight"), &[out, inp])?.data());
            if bias {
                b.extend_from_slice(w.get_f32(&format!("{name}.bias"), &[out])?.data());
            } else {
                refuse_present(w, &format!("{name}.bias"))?;
            }
        }
        Ok(Self {
            w: PackedLinear::from_nk(&weight, rows, inp, p.kernels, p.precision)?,
            b: bias.then_some(b),
        })
    }

    /// `out[rows x n] = act(x · Wᵀ + b)`.
    pub fn forward(&self, x: &[f32], rows: usize, act: Activation, out: &mut [f32]) -> Result<()> {
        self.w.gemm(x, rows, self.b.as_deref(), act, out)
    }
}

/// A bias the configuration says is absent must be absent: a checkpoint that has
/// one was saved from another configuration, and ignoring it would compute
/// something else.
fn refuse_present(w: &Weights, name: &str) -> Result<()> {
    if w.info(name).is_some() {
        return Err(Error::Config {
            path: w.path().to_path_buf(),
            reason: format!("tensor `{name}` exists but config.json says this layer has no bias"),
        });
    }
    Ok(())
}

/// A LayerNorm: scale and shift (zeros for a norm without bias).
pub(crate) struct Norm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

impl Norm {
    pub fn load(w: &Weights, name: &str, h: usize, bias: bool) -> Result<Self> {
        let gamma = w.get_f32(&format!("{name}.weight"), &[h])?.into_data();
        let beta = if bias {
            w.get_f32(&format!("{name}.bias"), &[h])?.into_data()
        } else {
            refuse_present(w, &format!("{name}.bias"))?;
            vec![0.0; h]
        };
        Ok(Self { gamma, beta })
    }
}

/// Intermediate activations of one forward pass, reused across calls.
#[derive(Default)]
pub(crate) struct Workspace {
    pub qkv: Vec<f32>,
    pub ctx: Vec<f32>,
    pub a: Vec<f32>,
    pub up: Vec<f32>,
    pub gated: Vec<f32>,
}

/// Sizes `v` to `n` values; the contents are overwritten by the caller.
pub(crate) fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

/// One encoder layer's weights.
pub(crate) struct Layer {
    pub qkv: Linear,
    pub attn_out: Linear,
    /// Post-LN: after attention (residual added). Pre-LN: before attention (none
    /// where the family feeds the first layer its embeddings as they are).
    pub attn_norm: Option<Norm>,
    /// Up projection; for a gated MLP, value and gate stacked (`2I` outputs).
    pub up: Linear,
    pub down: Linear,
    /// Post-LN: after the feed-forward block. Pre-LN: before it.
    pub out_norm: Norm,
}

/// `out[i] = act(a[i]) * b[i]` row by row, where each `[2I]` row of `up` holds the
/// two halves and `act_first` says which half goes through the activation.
pub(crate) fn gate(
    kern: &Kernels,
    act: Activation,
    act_first: bool,
    up: &[f32],
    inter: usize,
    out: &mut [f32],
) {
    use rayon::prelude::*;
    out.par_chunks_mut(inter)
        .zip(up.par_chunks(2 * inter))
        .with_min_len(8)
        .for_each(|(o, row)| {
            let (first, second) = row.split_at(inter);
            let (activated, other) = if act_first {
                (first, second)
            } else {
                (second, first)
            };
            o.copy_from_slice(activated);
            crate::kernels::gemm::bias_act(kern, None, act, o);
            o.iter_mut().zip(other).for_each(|(x, y)| *x *= y);
        });
}
