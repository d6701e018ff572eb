//! The encoder every BERT-like family runs on, driven by an [`EncoderConfig`] (the
//! family files under `models/` map their `config.json` and tensor names onto it):
//! absolute, rotary or no positions (ALiBi, relative bias); post-LN (BERT) or pre-LN
//! layers with a final norm (ModernBERT); plain or gated feed-forward; full or
//! local-window attention per layer.
//!
//! Ragged batches: all tokens of all sequences go through the linear layers together
//! (one GEMM per weight), attention runs per sequence and head, so a batch costs
//! what its tokens cost. Q, K and V are one fused GEMM; a plain MLP's activation
//! runs in the up-projection's epilogue; post-LN residual adds are fused into
//! LayerNorm.

use rayon::prelude::*;

pub use super::head::{HeadAct, HeadNames, HeadPooling};
use super::layers::{gate, sized, Layer, Linear, Norm, Packing, Workspace};
pub use super::rotary::Rotary;
use super::rotary::RotaryTable;
pub use super::splade::MlmNames;
use crate::error::{Error, Result};
use crate::kernels::{self, Activation, Kernels, Precision};
use crate::weights::Weights;

/// The Q, K and V projections: three tensors, or one with the three stacked.
#[derive(Debug)]
pub enum Qkv {
    /// `[query, key, value]`, each `H x H`.
    Separate([&'static str; 3]),
    /// One `3H x H` tensor, rows `[q; k; v]`.
    Fused(&'static str),
}

/// Where a family keeps its tensors. Layer names hold `{i}` for the layer index;
/// linear and norm names are completed with `.weight` / `.bias`.
#[derive(Debug)]
pub struct TensorNames {
    /// Prefixes the encoder's tensors may carry (`bert.` in a `BertFor*` file).
    pub prefixes: &'static [&'static str],
    /// Token embeddings table.
    pub word: &'static str,
    /// Absolute position table (none for rotary, ALiBi).
    pub position: Option<&'static str>,
    /// Token type table, where the family has one.
    pub token_type: Option<&'static str>,
    /// LayerNorm after the embeddings.
    pub emb_norm: &'static str,
    /// Query, key and value projections.
    pub qkv: Qkv,
    /// Attention output projection.
    pub attn_out: &'static str,
    /// Post-LN: the norm after attention. Pre-LN: the norm before it.
    pub attn_norm: &'static str,
    /// Feed-forward up projection (gated MLP: value and gate stacked, or the value
    /// half when `gate` names the other).
    pub up: &'static str,
    /// A separate gate projection of a gated MLP, stacked after `up` at load.
    pub gate: Option<&'static str>,
    /// Feed-forward down projection.
    pub down: &'static str,
    /// Post-LN: the norm after the feed-forward block. Pre-LN: the norm before it.
    pub out_norm: &'static str,
    /// The norm after the last layer (pre-LN families).
    pub final_norm: Option<&'static str>,
    /// The sequence-classification head of the family's `*ForSequenceClassification`.
    pub head: HeadNames,
    /// The masked-language-model head (`*ForMaskedLM`), for sparse output.
    pub mlm: Option<MlmNames>,
}

/// The feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mlp {
    /// `down(act(up(x)))`.
    Plain,
    /// `down(act(a) * b)` with `[a | b]` (`act_first`) or `[b | a]` the up output.
    Gated {
        /// Whether the first half of the up projection is the activated one.
        act_first: bool,
    },
}

/// Sliding-window attention on some layers (ModernBERT).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalAttention {
    /// A token sees keys at distance `<= half_window`.
    pub half_window: usize,
    /// Layer `i` is global (full attention) when `i % global_every == 0`.
    pub global_every: usize,
    /// The rotary base of local layers (global layers use [`EncoderConfig::rotary`]).
    pub local_theta: Option<f32>,
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
    /// Width of the feed-forward layer (of each half, for a gated MLP).
    pub intermediate_size: usize,
    /// Feed-forward activation.
    pub act: Activation,
    /// Plain or gated feed-forward.
    pub mlp: Mlp,
    /// Rows of the position table; the longest input of rotary models.
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
    /// Whether LayerNorms have a bias.
    pub norm_bias: bool,
    /// Whether the attention projections have biases.
    pub attn_bias: bool,
    /// Whether the feed-forward up (and gate) projection has a bias.
    pub up_bias: bool,
    /// Whether the feed-forward down projection has a bias.
    pub down_bias: bool,
    /// Whether the classification head's dense layer has a bias.
    pub head_bias: bool,
    /// Pre-LN layers (norm before attention and MLP, residual stream unnormalised,
    /// final norm) instead of BERT's post-LN.
    pub pre_norm: bool,
    /// Rotary positions (of global layers, with local attention).
    pub rotary: Option<Rotary>,
    /// Sliding-window attention on the non-global layers.
    pub local: Option<LocalAttention>,
    /// ALiBi: `-slope_head * |j - i|` added to the scores (JinaBERT).
    pub alibi: bool,
    /// A learned attention bias by relative distance, shared by all layers (MPNet).
    pub relative_bias: Option<RelativeBiasSpec>,
    /// What the classification head pools.
    pub head_pooling: HeadPooling,
    /// Class labels of a sequence-classification head, by index (`id2label`).
    pub labels: Option<Vec<String>>,
    /// Where the tensors are.
    pub names: &'static TensorNames,
}

impl EncoderConfig {
    /// A BERT-shaped description (post-LN, biases, learned positions from 0, plain
    /// MLP); families change what differs.
    pub fn new(model_type: &str, names: &'static TensorNames) -> Self {
        Self {
            model_type: model_type.to_string(),
            vocab_size: 0,
            hidden_size: 0,
            num_hidden_layers: 0,
            num_attention_heads: 0,
            intermediate_size: 0,
            act: Activation::GeluErf,
            mlp: Mlp::Plain,
            max_position_embeddings: 512,
            position_offset: 0,
            pad_token_id: None,
            type_vocab_size: 0,
            layer_norm_eps: 1e-12,
            norm_bias: true,
            attn_bias: true,
            up_bias: true,
            down_bias: true,
            head_bias: true,
            pre_norm: false,
            rotary: None,
            local: None,
            alibi: false,
            relative_bias: None,
            head_pooling: HeadPooling::First,
            labels: None,
            names,
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Longest sequence the model takes.
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
        if let Some(r) = self.rotary {
            if r.dims == 0 || !r.dims.is_multiple_of(2) || r.dims > self.head_dim() {
                return Err(format!(
                    "rotary dimensions {} must be even and at most the head width {}",
                    r.dims,
                    self.head_dim()
                ));
            }
            if !(r.theta.is_finite() && r.theta > 1.0) {
                return Err(format!("rotary base (rope_theta) {} is invalid", r.theta));
            }
        }
        if let Some(l) = self.local {
            if l.global_every == 0 {
                return Err("global_attn_every_n_layers must be positive".into());
            }
        }
        Ok(())
    }

    /// The rotary of layer `i` (local layers may have their own base).
    fn rotary_of(&self, i: usize) -> Option<Rotary> {
        let r = self.rotary?;
        match self.local {
            Some(l) if !self.is_global(i) => Some(Rotary {
                theta: l.local_theta.unwrap_or(r.theta),
                ..r
            }),
            _ => Some(r),
        }
    }

    /// Whether layer `i` attends to the whole sequence.
    fn is_global(&self, i: usize) -> bool {
        self.local.is_none_or(|l| i.is_multiple_of(l.global_every))
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

    /// Checks offsets (from 0 to the token count, never decreasing), each
    /// sequence's length against `max_tokens` and every id against `vocab_size`.
    pub fn check(&self, max_tokens: usize, vocab_size: usize) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidInput(m));
        let offs = self.offsets;
        if offs.first() != Some(&0) || offs.last() != Some(&self.ids.len()) {
            return bad(format!(
                "offsets must start at 0 and end at {} (the token count)",
                self.ids.len()
            ));
        }
        for (i, w) in offs.windows(2).enumerate() {
            if w[1] < w[0] {
                return bad(format!("offsets decrease at sequence {i}"));
            }
            if w[1] - w[0] > max_tokens {
                return bad(format!(
                    "sequence {i} has {} tokens, more than the model's {} positions",
                    w[1] - w[0],
                    max_tokens
                ));
            }
        }
        if let Some(pos) = self.ids.iter().position(|&t| t as usize >= vocab_size) {
            return bad(format!(
                "token id {} at position {pos} is outside the vocabulary (size {})",
                self.ids[pos], vocab_size
            ));
        }
        Ok(())
    }
}

/// An encoder (embeddings + layers) of any family [`EncoderConfig`] describes.
pub struct Encoder {
    cfg: EncoderConfig,
    /// Buffers of finished forward passes, reused by the next ones (no page faults
    /// or zero-filling of fresh allocations on every call).
    spare: std::sync::Mutex<Vec<Workspace>>,
    kernels: &'static Kernels,
    precision: Precision,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
    final_norm: Option<Norm>,
    /// `[rows x heads]`, with [`EncoderConfig::relative_bias`].
    relative_table: Vec<f32>,
    /// ALiBi slope of each head.
    slopes: Vec<f32>,
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

/// ALiBi slopes as the ALiBi paper (and JinaBERT) define them: a geometric series
/// for the largest power of two of heads, interleaved extras for the rest.
pub fn alibi_slopes(heads: usize) -> Vec<f32> {
    fn pow2(n: usize) -> Vec<f64> {
        let start = 2f64.powf(-(2f64.powf(-((n as f64).log2() - 3.0))));
        (0..n).map(|i| start * start.powi(i as i32)).collect()
    }
    if heads.is_power_of_two() {
        return pow2(heads).into_iter().map(|s| s as f32).collect();
    }
    let closest = 1usize << (usize::BITS - 1 - heads.leading_zeros());
    let mut s = pow2(closest);
    s.extend(
        pow2(2 * closest)
            .into_iter()
            .step_by(2)
            .take(heads - closest),
    );
    s.into_iter().map(|v| v as f32).collect()
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
        let p = Packing {
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
            let qkv = match names.qkv {
                Qkv::Separate(qkv) => {
                    let [q, k, v] = qkv.map(n);
                    Linear::stacked(weights, &[&q, &k, &v], h, h, cfg.attn_bias, p)?
                }
                Qkv::Fused(name) => Linear::load(weights, &n(name), 3 * h, h, cfg.attn_bias, p)?,
            };
            let attn_norm_name = n(names.attn_norm);
            // Pre-LN families may feed the first layer its (normalised) embeddings as
            // they are: no norm tensor there.
            let attn_norm = if cfg.pre_norm
                && i == 0
                && weights.view(&format!("{attn_norm_name}.weight")).is_err()
            {
                None
            } else {
                Some(Norm::load(weights, &attn_norm_name, h, cfg.norm_bias)?)
            };
            let up = match (cfg.mlp, names.gate) {
                (Mlp::Plain, _) => Linear::load(weights, &n(names.up), inter, h, cfg.up_bias, p)?,
                (Mlp::Gated { .. }, None) => {
                    Linear::load(weights, &n(names.up), 2 * inter, h, cfg.up_bias, p)?
                }
                (Mlp::Gated { .. }, Some(g)) => {
                    Linear::stacked(weights, &[&n(names.up), &n(g)], inter, h, cfg.up_bias, p)?
                }
            };
            layers.push(Layer {
                qkv,
                attn_out: Linear::load(weights, &n(names.attn_out), h, h, cfg.attn_bias, p)?,
                attn_norm,
                up,
                down: Linear::load(weights, &n(names.down), h, inter, cfg.down_bias, p)?,
                out_norm: Norm::load(weights, &n(names.out_norm), h, cfg.norm_bias)?,
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
        let position = match names.position {
            Some(name) if cfg.rotary.is_none() && !cfg.alibi => {
                emb(name, cfg.max_position_embeddings)?
            }
            _ => Vec::new(),
        };
        let final_norm = match names.final_norm {
            Some(name) => Some(Norm::load(weights, name, h, cfg.norm_bias)?),
            None => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            spare: Default::default(),
            kernels: kern,
            precision,
            word: emb(names.word, cfg.vocab_size)?,
            position,
            token_type,
            emb_norm: Norm::load(weights, names.emb_norm, h, cfg.norm_bias)?,
            layers,
            final_norm,
            relative_table,
            slopes: if cfg.alibi {
                alibi_slopes(cfg.num_attention_heads)
            } else {
                Vec::new()
            },
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
        batch.check(self.cfg.max_tokens(), self.cfg.vocab_size)?;
        let bad = |m: String| Err(Error::InvalidInput(m));
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
        let cfg = &self.cfg;
        let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
        let t = batch.ids.len();
        let offsets = batch.offsets;
        let longest = offsets.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        let mut x = self.embed(batch);
        let buckets = self.buckets(longest);
        // One rotary table per distinct base (global and local layers may differ).
        let mut tables: Vec<(Rotary, RotaryTable)> = Vec::new();
        for i in 0..self.layers.len() {
            if let Some(r) = cfg.rotary_of(i) {
                if !tables.iter().any(|(q, _)| *q == r) {
                    tables.push((r, RotaryTable::new(r, longest)));
                }
            }
        }
        let mut ws = self
            .spare
            .lock()
            .map(|mut s| s.pop())
            .unwrap_or_default()
            .unwrap_or_default();
        let Workspace {
            qkv,
            ctx,
            a,
            up,
            gated,
        } = &mut ws;
        let up_width = match cfg.mlp {
            Mlp::Plain => inter,
            Mlp::Gated { .. } => 2 * inter,
        };
        let (qkv, ctx) = (sized(qkv, t * 3 * h), sized(ctx, t * h));
        let (a, up) = (sized(a, t * h), sized(up, t * up_width));
        let gated = sized(gated, if up_width == inter { 0 } else { t * inter });
        let add = self.kernels.add_bias;
        for (i, layer) in self.layers.iter().enumerate() {
            let input: &[f32] = if cfg.pre_norm {
                a.copy_from_slice(&x);
                if let Some(norm) = &layer.attn_norm {
                    self.norm_rows(a, None, norm);
                }
                a
            } else {
                &x
            };
            layer.qkv.forward(input, t, Activation::None, qkv)?;
            if let Some(r) = cfg.rotary_of(i) {
                let (_, table) = tables.iter().find(|(q, _)| *q == r).expect("built above");
                table.apply(qkv, offsets, cfg.num_attention_heads, cfg.head_dim());
            }
            self.attention(i, qkv, offsets, &buckets, ctx)?;
            layer.attn_out.forward(ctx, t, Activation::None, a)?;
            if cfg.pre_norm {
                add(&mut x, a);
                a.copy_from_slice(&x);
                self.norm_rows(a, None, &layer.out_norm);
            } else {
                let norm = layer.attn_norm.as_ref().expect("post-LN layers have one");
                self.norm_rows(a, Some(&x), norm);
            }
            // `a` now holds the feed-forward input; `x` the residual of pre-LN.
            let ff_out: &mut [f32] = if cfg.pre_norm { ctx } else { &mut x };
            match cfg.mlp {
                Mlp::Plain => {
                    layer.up.forward(a, t, cfg.act, up)?;
                    layer.down.forward(up, t, Activation::None, ff_out)?;
                }
                Mlp::Gated { act_first } => {
                    layer.up.forward(a, t, Activation::None, up)?;
                    gate(self.kernels, cfg.act, act_first, up, inter, gated);
                    layer.down.forward(gated, t, Activation::None, ff_out)?;
                }
            }
            if cfg.pre_norm {
                add(&mut x, ctx);
            } else {
                self.norm_rows(&mut x, Some(a), &layer.out_norm);
            }
        }
        if let Some(norm) = &self.final_norm {
            self.norm_rows(&mut x, None, norm);
        }
        if let Ok(mut spare) = self.spare.lock() {
            // As many as forward passes ran at once, within reason.
            if spare.len() < 8 {
                spare.push(ws);
            }
        }
        Ok(x)
    }

    /// Word + position (absolute families; restarting at the family's offset for
    /// each sequence) + token type (where the family has them), normalised.
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
                row.copy_from_slice(&self.word[id * h..(id + 1) * h]);
                if !self.position.is_empty() {
                    let pos = match pad {
                        Some(p) if p as usize == id => p as usize,
                        _ => {
                            next += 1;
                            next - 1
                        }
                    };
                    (self.kernels.add_bias)(row, &self.position[pos * h..(pos + 1) * h]);
                }
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

    /// Scaled dot-product attention of layer `layer` for every (sequence, head),
    /// from the fused `[tokens x 3H]` projections into `ctx` `[tokens x H]`, with the
    /// family's score biases (relative table, ALiBi, local window).
    fn attention(
        &self,
        layer: usize,
        qkv: &[f32],
        offsets: &[usize],
        buckets: &[usize],
        ctx: &mut [f32],
    ) -> Result<()> {
        let heads = self.cfg.num_attention_heads;
        let dh = self.cfg.head_dim();
        let k = self.kernels;
        let window = match self.cfg.local {
            Some(l) if !self.cfg.is_global(layer) => Some(l.half_window),
            _ => None,
        };
        if buckets.is_empty() && self.slopes.is_empty() {
            return kernels::attention::attention_biased(
                k, qkv, offsets, heads, dh, None, window, ctx,
            );
        }
        // buckets[d + longest - 1] is the table row of distance d.
        let shift = (buckets.len() / 2) as isize;
        let table = &self.relative_table;
        let slopes = &self.slopes;
        let bias = move |hd: usize, d: isize| -> f32 {
            let mut b = 0.0;
            if !buckets.is_empty() {
                b += table[buckets[(d + shift) as usize] * heads + hd];
            }
            if !slopes.is_empty() {
                b -= slopes[hd] * d.abs() as f32;
            }
            b
        };
        kernels::attention::attention_biased(k, qkv, offsets, heads, dh, Some(&bias), window, ctx)
    }

    /// The relative-bias row of each distance `-(longest-1)..=longest-1` of this
    /// batch (empty without a relative bias).
    fn buckets(&self, longest: usize) -> Vec<usize> {
        let Some(spec) = self.cfg.relative_bias else {
            return Vec::new();
        };
        let longest = longest.max(1) as isize;
        (-(longest - 1)..longest).map(spec.bucket).collect()
    }
}
