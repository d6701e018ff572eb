//! Sparse (SPLADE) output: the family's masked-language-model head turns each
//! token's hidden state into vocabulary logits, `log(1 + relu(logit))` (once more
//! `log1p` for the `log1p_relu` variant) is pooled over the sequence by max or sum,
//! and the non-zero entries are the sparse vector. Logits are computed a few
//! dozen tokens at a time, so a batch never holds `tokens x vocab` values.

use super::encoder::EncoderConfig;
use crate::error::{Error, Result};
use crate::kernels::{self, Activation, Kernels, PackedB};
use crate::weights::Weights;

/// Where a family keeps its masked-language-model head.
#[derive(Debug)]
pub struct MlmNames {
    /// The transform's dense layer (`h -> h`).
    pub dense: &'static str,
    /// Its activation: the config's `hidden_act` (BERT) or always GELU (RoBERTa).
    pub act_from_config: bool,
    /// The transform's LayerNorm.
    pub norm: &'static str,
    /// The decoder (`h -> vocab`); its weight is the word embeddings when absent
    /// (tied, as most checkpoints store it).
    pub decoder: &'static str,
    /// The decoder's bias, under the names checkpoints use.
    pub bias: &'static [&'static str],
}

/// How token scores are pooled over a sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpladePooling {
    /// Element-wise maximum.
    Max,
    /// Sum.
    Sum,
}

/// A loaded MLM head with SPLADE pooling.
pub struct SparseHead {
    dense: PackedB,
    dense_b: Vec<f32>,
    act: Activation,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
    decoder: PackedB,
    bias: Vec<f32>,
    vocab: usize,
    pooling: SpladePooling,
    twice: bool,
    kernels: &'static Kernels,
}

impl std::fmt::Debug for SparseHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparseHead")
            .field("vocab", &self.vocab)
            .field("pooling", &self.pooling)
            .finish()
    }
}

/// One sparse vector: vocabulary ids (ascending) and their weights.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseVector {
    /// Token ids with a non-zero weight, ascending.
    pub indices: Vec<u32>,
    /// Their weights.
    pub values: Vec<f32>,
}

impl SparseHead {
    /// Loads the family's MLM head; `log1p_twice` is the `log1p_relu` activation.
    pub fn load(
        cfg: &EncoderConfig,
        weights: &Weights,
        kern: &'static Kernels,
        pooling: SpladePooling,
        log1p_twice: bool,
    ) -> Result<Self> {
        let names = cfg.names.mlm.as_ref().ok_or_else(|| {
            Error::Unsupported(format!(
                "sparse (SPLADE) output is not available for family `{}`",
                cfg.model_type
            ))
        })?;
        let (h, v) = (cfg.hidden_size, cfg.vocab_size);
        let dense_w = weights.get_f32(&format!("{}.weight", names.dense), &[h, h])?;
        let dec_name = format!("{}.weight", names.decoder);
        let dec_w = match weights.info(&dec_name) {
            Some(_) => weights.get_f32(&dec_name, &[v, h])?,
            None => weights.get_f32(&format!("{}.weight", cfg.names.word), &[v, h])?,
        };
        let bias = names
            .bias
            .iter()
            .find(|b| weights.info(b).is_some())
            .ok_or_else(|| Error::MissingTensor {
                path: weights.path().to_path_buf(),
                name: names.bias[0].to_string(),
                tried: names.bias.join(", "),
            })?;
        let act = if names.act_from_config {
            cfg.act
        } else {
            Activation::GeluErf
        };
        Ok(Self {
            dense: PackedB::from_nk(dense_w.data(), h, h, kern)?,
            dense_b: weights
                .get_f32(&format!("{}.bias", names.dense), &[h])?
                .into_data(),
            act,
            gamma: weights
                .get_f32(&format!("{}.weight", names.norm), &[h])?
                .into_data(),
            beta: weights
                .get_f32(&format!("{}.bias", names.norm), &[h])?
                .into_data(),
            eps: cfg.layer_norm_eps,
            decoder: PackedB::from_nk(dec_w.data(), v, h, kern)?,
            bias: weights.get_f32(bias, &[v])?.into_data(),
            vocab: v,
            pooling,
            twice: log1p_twice,
            kernels: kern,
        })
    }

    /// Vocabulary size (the dense width of a sparse vector).
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Sparse vectors of each sequence from the encoder's hidden states, keeping
    /// the `top_k` largest weights when given.
    pub fn pool(
        &self,
        hidden: &[f32],
        h: usize,
        offsets: &[usize],
        top_k: Option<usize>,
    ) -> Result<Vec<SparseVector>> {
        const CHUNK: usize = 64;
        let v = self.vocab;
        let mut mid = vec![0.0f32; CHUNK * h];
        let mut logits = vec![0.0f32; CHUNK * v];
        let mut out = Vec::with_capacity(offsets.len().saturating_sub(1));
        for w in offsets.windows(2) {
            let mut acc = vec![0.0f32; v];
            let mut t = w[0];
            while t < w[1] {
                let rows = CHUNK.min(w[1] - t);
                let x = &hidden[t * h..(t + rows) * h];
                let mid = &mut mid[..rows * h];
                kernels::gemm(x, rows, &self.dense, Some(&self.dense_b), self.act, mid)?;
                for row in mid.chunks_exact_mut(h) {
                    (self.kernels.layer_norm)(row, None, &self.gamma, &self.beta, self.eps);
                }
                let logits = &mut logits[..rows * v];
                kernels::gemm(
                    mid,
                    rows,
                    &self.decoder,
                    Some(&self.bias),
                    Activation::Relu,
                    logits,
                )?;
                for row in logits.chunks_exact(v) {
                    for (a, &x) in acc.iter_mut().zip(row) {
                        let mut y = x.ln_1p();
                        if self.twice {
                            y = y.ln_1p();
                        }
                        match self.pooling {
                            SpladePooling::Max => *a = a.max(y),
                            SpladePooling::Sum => *a += y,
                        }
                    }
                }
                t += rows;
            }
            out.push(sparse(&acc, top_k));
        }
        Ok(out)
    }
}

/// The non-zero entries of `dense`, the `top_k` largest when given.
fn sparse(dense: &[f32], top_k: Option<usize>) -> SparseVector {
    let mut nz: Vec<(u32, f32)> = dense
        .iter()
        .enumerate()
        .filter(|(_, &x)| x > 0.0)
        .map(|(i, &x)| (i as u32, x))
        .collect();
    if let Some(k) = top_k {
        if nz.len() > k {
            nz.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            nz.truncate(k);
            nz.sort_by_key(|e| e.0);
        }
    }
    SparseVector {
        indices: nz.iter().map(|e| e.0).collect(),
        values: nz.iter().map(|e| e.1).collect(),
    }
}
