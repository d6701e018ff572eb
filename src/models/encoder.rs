//! The encoder every BERT-like family runs on, driven by an [`EncoderConfig`] (the
//! family files under `models/` map their `config.json` and tensor names onto it).
//! Ragged batches: all tokens of all sequences go through the linear layers together
//! (one GEMM per weight), attention runs per sequence and head, so a batch costs
//! what its tokens cost. Q, K and V are one fused GEMM; the activation runs in the
//! up-projection's epilogue; residual adds are fused into LayerNorm.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::{self, Activation, Kernels, PackedB, PackedLinear, Precision};
use crate::weights::Weights;

/// Where a family keeps its tensors. Layer names hold `{i}` for the layer index;
/// linear and norm names are completed with `.weight` / `.bias`.
#[derive(Debug)]
pub struct TensorNames {
    /// Prefixes the encoder's tensors may carry (`bert.` in a `BertFor*` file).
    pub prefixes: &'static [&'static str],
    /// Token embeddings table.
    pub word: &'static str,
    /// Absolute position table.
    pub position: &'static str,
    /// Token type table, where the family has one.
    pub token_type: Option<&'static str>,
    /// LayerNorm after the embeddings.
    pub emb_norm: &'static str,
    /// Query, key and value projections.
    pub qkv: [&'static str; 3],
    /// Attention output projection.
    pub attn_out: &'static str,
    /// LayerNorm after attention (post-LN, residual added).
    pub attn_norm: &'static str,
    /// Feed-forward up projection (activation in its epilogue).
    pub up: &'static str,
    /// Feed-forward down projection.
    pub down: &'static str,
    /// LayerNorm after the feed-forward block.
    pub out_norm: &'static str,
    /// The sequence-classification head of the family's `*ForSequenceClassification`.
    pub head: HeadNames,
}

/// A classification head on the first token: `out(act(dense(h_0)))`.
#[derive(Debug)]
pub struct HeadNames {
    /// The dense layer on the first token's hidden state.
    pub dense: &'static str,
    /// Its activation.
    pub dense_act: HeadAct,
    /// The output projection to the logits.
    pub out: &'static str,
}

/// Activation of a classification head's dense layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadAct {
    /// `tanh` (BERT's pooler, RoBERTa's head).
    Tanh,
    /// ReLU (DistilBERT's `pre_classifier`).
    Relu,
}

/// The shape and numerics of an encoder, whatever family it came from.
#[derive(Clone, Debug)]
pub struct EncoderConfig {
    /// The `model_type` it was read from (`bert`, `xlm-roberta`, `distilbert`, ...).
    pub model_type: String,
    /// Token vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    pub act: Activation,
    /// Rows of the position table.
    pub max_position_embeddings: usize,
    /// Position id of a sequence's first token (0 for BERT; RoBERTa counts from
    /// `pad_token_id + 1`).
    pub position_offset: usize,
    /// RoBERTa's rule: a token equal to this id takes position `pad_token_id` and
    /// does not advance the count (`None`: every token advances it).
    pub pad_token_id: Option<u32>,
    /// Token type table rows; 0 when the family has none.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// Class labels of a sequence-classification head, by index (`id2label`).
    pub labels: Option<Vec<String>>,
    /// Where the tensors are.
    pub names: &'static TensorNames,
    /// A learned attention bias by relative distance, shared by all layers (MPNet).
    pub relative_bias: Option<RelativeBiasSpec>,
}

/// A learned relative-position attention bias: `table[bucket(j - i)][head]` is
/// added to the score of query `i` and key `j` in every layer.
#[derive(Clone, Copy, Debug)]
pub struct RelativeBiasSpec {
    /// The `[rows x heads]` table.
    pub table: &'static str,
    /// Rows of the table.
    pub rows: usize,
    /// The bucket (row) of a distance `j - i`; always `< rows`.
    pub bucket: fn(isize) -> usize,
}

impl EncoderConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Longest sequence the position table covers.
    pub fn max_tokens(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.position_offset)
    }

    /// Checks sizes every family shares.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(format!("`{name}` must be positive"));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.max_tokens() == 0 {
            return Err(format!(
                "max_position_embeddings {} leaves no position after the offset {}",
                self.max_position_embeddings, self.position_offset
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps >= 0.0) {
            return Err(format!("layer_norm_eps {} is invalid", self.layer_norm_eps));
        }
        Ok(())
    }
}

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
    fn load_fused(w: &Weights, names: [String; 3], h: usize, p: Packing) -> Result<Self> {
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

/// An encoder (embeddings + layers) of any family [`EncoderConfig`] describes.
pub struct Encoder {
    cfg: EncoderConfig,
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
    /// `[rows x heads]`, with [`EncoderConfig::relative_bias`].
    relative_table: Vec<f32>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("model_type", &self.cfg.model_type)
            .field("hidden", &self.cfg.hidden_size)
            .field("layers", &self.layers.len())
            .field("isa", &self.kernels.isa)
            .field("precision", &self.precision)
            .finish()
    }
}

/// Fills `{i}` of a layer tensor name.
fn layer_name(template: &str, i: usize) -> String {
    template.replace("{i}", &i.to_string())
}

impl Encoder {
    /// Builds the encoder from `weights` (opened with the family's
    /// [`TensorNames::prefixes`]), packing every projection once for the active ISA,
    /// in f32.
    pub fn load(cfg: &EncoderConfig, weights: &Weights) -> Result<Self> {
        Self::load_with(cfg, weights, Precision::F32)
    }

    /// [`Self::load`] with the encoder layers' projections in `precision` (the
    /// embeddings, norms, softmax and activations stay f32). bf16 and int8 need a
    /// path with such kernels ([`Kernels::lowp`]), else [`Error::Unsupported`].
    pub fn load_with(cfg: &EncoderConfig, weights: &Weights, precision: Precision) -> Result<Self> {
        let kern = kernels::try_active()?;
        let pack = Packing {
            kernels: kern,
            precision,
        };
        let names = cfg.names;
        let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
        let emb = |name: &str, rows: usize| -> Result<Vec<f32>> {
            Ok(weights
                .get_f32(&format!("{name}.weight"), &[rows, h])?
                .into_data())
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let n = |t: &str| layer_name(t, i);
            layers.push(Layer {
                qkv: Linear::load_fused(weights, names.qkv.map(n), h, pack)?,
                attn_out: Linear::load(weights, &n(names.attn_out), h, h, pack)?,
                attn_norm: Norm::load(weights, &n(names.attn_norm), h)?,
                up: Linear::load(weights, &n(names.up), inter, h, pack)?,
                down: Linear::load(weights, &n(names.down), h, inter, pack)?,
                out_norm: Norm::load(weights, &n(names.out_norm), h)?,
            });
        }
        let relative_table = match cfg.relative_bias {
            Some(spec) => weights
                .get_f32(
                    &format!("{}.weight", spec.table),
                    &[spec.rows, cfg.num_attention_heads],
                )?
                .into_data(),
            None => Vec::new(),
        };
        let token_type = match names.token_type {
            Some(name) if cfg.type_vocab_size > 0 => emb(name, cfg.type_vocab_size)?,
            _ => Vec::new(),
        };
        Ok(Self {
            cfg: cfg.clone(),
            spare: Default::default(),
            kernels: kern,
            precision,
            act: cfg.act,
            word: emb(names.word, cfg.vocab_size)?,
            position: emb(names.position, cfg.max_position_embeddings)?,
            token_type,
            emb_norm: Norm::load(weights, names.emb_norm, h)?,
            layers,
            relative_table,
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &EncoderConfig {
        &self.cfg
    }

    /// Width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
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
            if w[1] - w[0] > self.cfg.max_tokens() {
                return bad(format!(
                    "sequence {i} has {} tokens, more than the model's {} positions",
                    w[1] - w[0],
                    self.cfg.max_tokens()
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
        if let Some(tt) = batch.type_ids.filter(|_| self.cfg.type_vocab_size > 0) {
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
        let buckets = self.buckets(batch.offsets);
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
            self.attention(qkv, batch.offsets, &buckets, ctx)?;
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

    /// Word + position (restarting at the family's offset for each sequence) +
    /// token type (where the family has them), normalised.
    fn embed(&self, batch: &TokenBatch) -> Vec<f32> {
        let h = self.cfg.hidden_size;
        let offset = self.cfg.position_offset;
        let mut x = vec![0.0f32; batch.ids.len() * h];
        let pad = self.cfg.pad_token_id;
        for w in batch.offsets.windows(2) {
            let mut next = offset;
            for tok in w[0]..w[1] {
                let row = &mut x[tok * h..(tok + 1) * h];
                let id = batch.ids[tok] as usize;
                let pos = match pad {
                    Some(p) if p as usize == id => p as usize,
                    _ => {
                        next += 1;
                        next - 1
                    }
                };
                row.copy_from_slice(&self.word[id * h..(id + 1) * h]);
                (self.kernels.add_bias)(row, &self.position[pos * h..(pos + 1) * h]);
                if !self.token_type.is_empty() {
                    let tt = batch.type_ids.map_or(0, |t| t[tok] as usize);
                    (self.kernels.add_bias)(row, &self.token_type[tt * h..(tt + 1) * h]);
                }
            }
        }
        self.norm_rows(&mut x, None, &self.emb_norm);
        x
    }

    /// `x = LayerNorm(x + residual)` row by row, spread over the pool.
    fn norm_rows(&self, x: &mut [f32], residual: Option<&[f32]>, norm: &Norm) {
        let h = self.cfg.hidden_size;
        let eps = self.cfg.layer_norm_eps;
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
    fn attention(
        &self,
        qkv: &[f32],
        offsets: &[usize],
        buckets: &[usize],
        ctx: &mut [f32],
    ) -> Result<()> {
        let heads = self.cfg.num_attention_heads;
        let dh = self.cfg.head_dim();
        let k = self.kernels;
        if buckets.is_empty() {
            return kernels::attention::attention(k, qkv, offsets, heads, dh, ctx);
        }
        // buckets[d + longest - 1] is the table row of distance d.
        let shift = (buckets.len() / 2) as isize;
        let table = &self.relative_table;
        let bias = move |hd: usize, d: isize| table[buckets[(d + shift) as usize] * heads + hd];
        kernels::attention::attention_biased(k, qkv, offsets, heads, dh, Some(&bias), ctx)
    }

    /// The relative-bias row of each distance `-(longest-1)..=longest-1` of this
    /// batch (empty without a relative bias).
    fn buckets(&self, offsets: &[usize]) -> Vec<usize> {
        let Some(spec) = self.cfg.relative_bias else {
            return Vec::new();
        };
        let longest = offsets
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(0)
            .max(1) as isize;
        (-(longest - 1)..longest).map(spec.bucket).collect()
    }
}

/// A sequence-classification head on the first token of each sequence, as the
/// family's `*ForSequenceClassification` computes it: `out(act(dense(h_0)))`.
pub struct ClassifierHead {
    dense: PackedB,
    dense_b: Vec<f32>,
    act: HeadAct,
    out: PackedB,
    out_b: Vec<f32>,
    labels: usize,
}

impl std::fmt::Debug for ClassifierHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifierHead")
            .field("labels", &self.labels)
            .field("act", &self.act)
            .finish()
    }
}

impl ClassifierHead {
    /// Loads the head the family names; its width is read from the output weight.
    pub fn load(cfg: &EncoderConfig, weights: &Weights, kern: &'static Kernels) -> Result<Self> {
        let names = &cfg.names.head;
        let h = cfg.hidden_size;
        let out_name = format!("{}.weight", names.out);
        let labels = match weights.info(&out_name) {
            Some((_, shape)) if shape.len() == 2 && shape[0] > 0 => shape[0],
            _ => {
                return Err(Error::MissingTensor {
                    path: weights.path().to_path_buf(),
                    name: out_name.clone(),
                    tried: format!(
                        "`{out_name}`: not a sequence-classification model of family `{}`",
                        cfg.model_type
                    ),
                })
            }
        };
        let dense_w = weights.get_f32(&format!("{}.weight", names.dense), &[h, h])?;
        let out_w = weights.get_f32(&out_name, &[labels, h])?;
        Ok(Self {
            dense: PackedB::from_nk(dense_w.data(), h, h, kern)?,
            dense_b: weights
                .get_f32(&format!("{}.bias", names.dense), &[h])?
                .into_data(),
            act: names.dense_act,
            out: PackedB::from_nk(out_w.data(), labels, h, kern)?,
            out_b: weights
                .get_f32(&format!("{}.bias", names.out), &[labels])?
                .into_data(),
            labels,
        })
    }

    /// Number of logits.
    pub fn labels(&self) -> usize {
        self.labels
    }

    /// Logits `[sequences x labels]` from the encoder's hidden states.
    pub fn logits(&self, hidden: &[f32], h: usize, offsets: &[usize]) -> Result<Vec<f32>> {
        let n = offsets.len().saturating_sub(1);
        let mut first = Vec::with_capacity(n * h);
        for w in offsets.windows(2) {
            first.extend_from_slice(&hidden[w[0] * h..(w[0] + 1) * h]);
        }
        let mut mid = vec![0.0f32; n * h];
        let act = match self.act {
            HeadAct::Relu => Activation::Relu,
            HeadAct::Tanh => Activation::None,
        };
        kernels::gemm(&first, n, &self.dense, Some(&self.dense_b), act, &mut mid)?;
        if self.act == HeadAct::Tanh {
            mid.iter_mut().for_each(|v| *v = v.tanh());
        }
        let mut out = vec![0.0f32; n * self.labels];
        kernels::gemm(
            &mid,
            n,
            &self.out,
            Some(&self.out_b),
            Activation::None,
            &mut out,
        )?;
        Ok(out)
    }
}
