//! BERT encoder on ragged batches: all tokens of all sequences go through the
//! linear layers together (one GEMM per weight), attention runs per sequence and
//! head, so a batch costs what its tokens cost. Q, K and V are one fused GEMM; GELU
//! runs in the up-projection's epilogue; residual adds are fused into LayerNorm.

use rayon::prelude::*;

use super::config::BertConfig;
use crate::error::{Error, Result};
use crate::kernels::{self, Activation, Kernels, PackedLinear, Precision};
use crate::weights::Weights;

/// Tokens of several sequences, concatenated, with no padding.
#[derive(Clone, Copy, Debug)]
pub struct TokenBatch<'a> {
    /// Token ids of all sequences, one after the other.
    pub ids: &'a [u32],
    /// Token type (segment) ids, same length as `ids`; `None` means all zero.
    pub type_ids: Option<&'a [u32]>,
    /// Sequence boundaries: sequence `i` is `ids[offsets[i]..offsets[i + 1]]`.
    /// Starts at 0, ends at `ids.len()`, never decreases.
    pub offsets: &'a [usize],
}

impl TokenBatch<'_> {
    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether the batch holds no sequence.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a model's weights are packed: the kernel table and the GEMM precision.
#[derive(Clone, Copy)]
struct Packing {
    kernels: &'static Kernels,
    precision: Precision,
}

/// A linear layer: weights packed for the GEMM microkernel, and a bias.
struct Linear {
    w: PackedLinear,
    b: Vec<f32>,
}

impl Linear {
    /// Loads `name.weight` (`out x in`) and `name.bias`.
    fn load(w: &Weights, name: &str, out: usize, inp: usize, p: Packing) -> Result<Self> {
        let weight = w.get_f32(&format!("{name}.weight"), &[out, inp])?;
        let bias = w.get_f32(&format!("{name}.bias"), &[out])?;
        Ok(Self {
            w: PackedLinear::from_nk(weight.data(), out, inp, p.kernels, p.precision)?,
            b: bias.into_data(),
        })
    }

    /// `Q`, `K` and `V` stacked into one `3H x H` projection.
    fn load_fused(w: &Weights, names: [&str; 3], h: usize, p: Packing) -> Result<Self> {
        let mut weight = Vec::with_capacity(3 * h * h);
        let mut bias = Vec::with_capacity(3 * h);
        for name in names {
            weight.extend_from_slice(w.get_f32(&format!("{name}.weight"), &[h, h])?.data());
            bias.extend_from_slice(w.get_f32(&format!("{name}.bias"), &[h])?.data());
        }
        Ok(Self {
            w: PackedLinear::from_nk(&weight, 3 * h, h, p.kernels, p.precision)?,
            b: bias,
        })
    }

    fn forward(&self, x: &[f32], rows: usize, act: Activation, out: &mut [f32]) -> Result<()> {
        self.w.gemm(x, rows, Some(&self.b), act, out)
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Norm {
    fn load(w: &Weights, name: &str, h: usize) -> Result<Self> {
        Ok(Self {
            gamma: w.get_f32(&format!("{name}.weight"), &[h])?.into_data(),
            beta: w.get_f32(&format!("{name}.bias"), &[h])?.into_data(),
        })
    }
}

/// Intermediate activations of one forward pass.
#[derive(Default)]
struct Workspace {
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    a: Vec<f32>,
    up: Vec<f32>,
}

/// Sizes `v` to `n` values; the contents are overwritten by the caller.
fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

/// A BERT encoder (embeddings + layers), with the pooler when the weights have one.
pub struct BertModel {
    cfg: BertConfig,
    /// Buffers of finished forward passes, reused by the next ones (no page faults
    /// or zero-filling of fresh allocations on every call).
    spare: std::sync::Mutex<Vec<Workspace>>,
    kernels: &'static Kernels,
    precision: Precision,
    act: Activation,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
    pooler: Option<Linear>,
}

impl std::fmt::Debug for BertModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertModel")
            .field("hidden", &self.cfg.hidden_size)
            .field("layers", &self.layers.len())
            .field("isa", &self.kernels.isa)
            .field("precision", &self.precision)
            .finish()
    }
}

impl BertModel {
    /// Builds the encoder from `weights` (names with or without the `bert.` prefix),
    /// packing every projection once for the active ISA, in f32.
    pub fn load(cfg: &BertConfig, weights: &Weights) -> Result<Self> {
        Self::load_with(cfg, weights, Precision::F32)
    }

    /// [`Self::load`] with the encoder layers' projections in `precision` (the
    /// pooler, embeddings, norms, softmax and activations stay f32). bf16 and int8
    /// need a path with such kernels ([`Kernels::lowp`]), else [`Error::Unsupported`].
    pub fn load_with(cfg: &BertConfig, weights: &Weights, precision: Precision) -> Result<Self> {
        let kern = kernels::try_active()?;
        let pack = Packing {
            kernels: kern,
            precision,
        };
        let f32_pack = Packing {
            kernels: kern,
            precision: Precision::F32,
        };
        let act = cfg.activation().map_err(|reason| Error::Config {
            path: weights.path().to_path_buf(),
            reason,
        })?;
        let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
        let emb = |name: &str, rows: usize| -> Result<Vec<f32>> {
            Ok(weights
                .get_f32(&format!("embeddings.{name}.weight"), &[rows, h])?
                .into_data())
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let q = format!("{p}.attention.self.query");
            let k = format!("{p}.attention.self.key");
            let v = format!("{p}.attention.self.value");
            layers.push(Layer {
                qkv: Linear::load_fused(weights, [&q, &k, &v], h, pack)?,
                attn_out: Linear::load(
                    weights,
                    &format!("{p}.attention.output.dense"),
                    h,
                    h,
                    pack,
                )?,
                attn_norm: Norm::load(weights, &format!("{p}.attention.output.LayerNorm"), h)?,
                up: Linear::load(weights, &format!("{p}.intermediate.dense"), inter, h, pack)?,
                down: Linear::load(weights, &format!("{p}.output.dense"), h, inter, pack)?,
                out_norm: Norm::load(weights, &format!("{p}.output.LayerNorm"), h)?,
            });
        }
        let pooler = match weights.view("pooler.dense.weight") {
            Ok(_) => Some(Linear::load(weights, "pooler.dense", h, h, f32_pack)?),
            Err(Error::MissingTensor { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(Self {
            cfg: cfg.clone(),
            spare: Default::default(),
            kernels: kern,
            precision,
            act,
            word: emb("word_embeddings", cfg.vocab_size)?,
            position: emb("position_embeddings", cfg.max_position_embeddings)?,
            token_type: emb("token_type_embeddings", cfg.type_vocab_size)?,
            emb_norm: Norm::load(weights, "embeddings.LayerNorm", h)?,
            layers,
            pooler,
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// Width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    /// Whether the weights include the pooler (`tanh(W · h_cls + b)`).
    pub fn has_pooler(&self) -> bool {
        self.pooler.is_some()
    }

    /// The kernel table the weights were packed for.
    pub fn kernels(&self) -> &'static Kernels {
        self.kernels
    }

    /// The precision of the encoder layers' matrix products.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Checks a batch against the model: offsets, id ranges, sequence lengths.
    pub fn validate(&self, batch: &TokenBatch) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidInput(m));
        let offs = batch.offsets;
        if offs.first() != Some(&0) || offs.last() != Some(&batch.ids.len()) {
            return bad(format!(
                "offsets must start at 0 and end at {} (the token count)",
                batch.ids.len()
            ));
        }
        for (i, w) in offs.windows(2).enumerate() {
            if w[1] < w[0] {
                return bad(format!("offsets decrease at sequence {i}"));
            }
            if w[1] - w[0] > self.cfg.max_position_embeddings {
                return bad(format!(
                    "sequence {i} has {} tokens, more than max_position_embeddings {}",
                    w[1] - w[0],
                    self.cfg.max_position_embeddings
                ));
            }
        }
        if let Some(pos) = batch
            .ids
            .iter()
            .position(|&t| t as usize >= self.cfg.vocab_size)
        {
            return bad(format!(
                "token id {} at position {pos} is outside the vocabulary (size {})",
                batch.ids[pos], self.cfg.vocab_size
            ));
        }
        if let Some(tt) = batch.type_ids {
            if tt.len() != batch.ids.len() {
                return bad(format!(
                    "{} type ids for {} tokens",
                    tt.len(),
                    batch.ids.len()
                ));
            }
            if let Some(pos) = tt
                .iter()
                .position(|&t| t as usize >= self.cfg.type_vocab_size)
            {
                return bad(format!(
                    "token type id {} at position {pos} is outside type_vocab_size {}",
                    tt[pos], self.cfg.type_vocab_size
                ));
            }
        }
        Ok(())
    }

    /// Hidden states of the last layer, `[tokens x hidden]`, row-major.
    pub fn forward(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        self.validate(batch)?;
        kernels::threads::install(|| self.forward_checked(batch))
    }

    fn forward_checked(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        let h = self.cfg.hidden_size;
        let t = batch.ids.len();
        let mut x = self.embed(batch);
        let mut ws = self
            .spare
            .lock()
            .map(|mut s| s.pop())
            .unwrap_or_default()
            .unwrap_or_default();
        let Workspace { qkv, ctx, a, up } = &mut ws;
        let (qkv, ctx) = (sized(qkv, t * 3 * h), sized(ctx, t * h));
        let (a, up) = (sized(a, t * h), sized(up, t * self.cfg.intermediate_size));
        for layer in &self.layers {
            layer.qkv.forward(&x, t, Activation::None, qkv)?;
            self.attention(qkv, batch.offsets, ctx)?;
            layer.attn_out.forward(ctx, t, Activation::None, a)?;
            self.norm_rows(a, Some(&x), &layer.attn_norm);
            layer.up.forward(a, t, self.act, up)?;
            layer.down.forward(up, t, Activation::None, &mut x)?;
            self.norm_rows(&mut x, Some(a), &layer.out_norm);
        }
        if let Ok(mut spare) = self.spare.lock() {
            // As many as forward passes ran at once, within reason.
            if spare.len() < 8 {
                spare.push(ws);
            }
        }
        Ok(x)
    }

    /// Word + position (restarting at 0 for each sequence) + token type, normalised.
    fn embed(&self, batch: &TokenBatch) -> Vec<f32> {
        let h = self.cfg.hidden_size;
        let mut x = vec![0.0f32; batch.ids.len() * h];
        for w in batch.offsets.windows(2) {
            for (pos, tok) in (w[0]..w[1]).enumerate() {
                let row = &mut x[tok * h..(tok + 1) * h];
                let id = batch.ids[tok] as usize;
                let tt = batch.type_ids.map_or(0, |t| t[tok] as usize);
                row.copy_from_slice(&self.word[id * h..(id + 1) * h]);
                (self.kernels.add_bias)(row, &self.position[pos * h..(pos + 1) * h]);
                (self.kernels.add_bias)(row, &self.token_type[tt * h..(tt + 1) * h]);
            }
        }
        self.norm_rows(&mut x, None, &self.emb_norm);
        x
    }

    /// `x = LayerNorm(x + residual)` row by row, spread over the pool.
    fn norm_rows(&self, x: &mut [f32], residual: Option<&[f32]>, norm: &Norm) {
        let h = self.cfg.hidden_size;
        let eps = self.cfg.layer_norm_eps as f32;
        let ln = self.kernels.layer_norm;
        match residual {
            Some(r) => x
                .par_chunks_mut(h)
                .zip(r.par_chunks(h))
                .with_min_len(16)
                .for_each(|(row, res)| ln(row, Some(res), &norm.gamma, &norm.beta, eps)),
            None => x
                .par_chunks_mut(h)
                .with_min_len(16)
                .for_each(|row| ln(row, None, &norm.gamma, &norm.beta, eps)),
        }
    }

    /// Scaled dot-product attention for every (sequence, head), from the fused
    /// `[tokens x 3H]` projections into `ctx` `[tokens x H]`.
    fn attention(&self, qkv: &[f32], offsets: &[usize], ctx: &mut [f32]) -> Result<()> {
        let heads = self.cfg.num_attention_heads;
        kernels::attention::attention(self.kernels, qkv, offsets, heads, self.cfg.head_dim(), ctx)
    }

    /// The pooler: `tanh(W · x + b)` on each row of `x` (`[rows x hidden]`).
    pub fn pool_dense(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let pooler = self.pooler.as_ref().ok_or_else(|| {
            Error::Unsupported("the model's weights have no pooler (pooler.dense)".into())
        })?;
        let mut out = vec![0.0f32; rows * self.cfg.hidden_size];
        pooler.forward(x, rows, Activation::None, &mut out)?;
        out.iter_mut().for_each(|v| *v = v.tanh());
        Ok(out)
    }
}
