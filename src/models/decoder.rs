//! The decoder every Llama-like family runs on (Qwen2, Qwen3, Llama, Mistral,
//! Gemma 3), driven by a [`DecoderConfig`]: RMSNorm (Gemma's `1 + weight` folded in
//! at load), grouped-query attention with optional per-head q/k norms, RoPE with the
//! config's scaling (a second base on Gemma's local layers), causal or
//! bidirectional masks, sliding-window layers, gated MLPs (SwiGLU, GeGLU), Gemma's
//! sandwich norms and embedding scale.
//!
//! Ragged batches as in the encoder: every token of every sequence goes through the
//! projections at once (Q, K and V one GEMM, gate and up one GEMM), attention runs
//! per sequence, so nothing is padded and no left-padding trick is needed for
//! last-token pooling. Each layer's keys and values after norm and RoPE are the
//! rows a KV cache keeps: [`Decoder::forward`] computes whole sequences from
//! position 0, [`Decoder::forward_cached`] continues sequences from their caches'
//! blocks (see [`super::kv_cache`]).

use std::sync::Arc;

use rayon::prelude::*;

use super::kv_cache::{KvCache, KvDtype, KvPool, KvShape};
use super::layers::{gate, sized, Linear, Packing};
use super::rotary::{RopeScaling, Rotary, RotaryTable};
use super::TokenBatch;
use crate::error::{Error, Result};
use crate::kernels::attention::{attention_shaped, AttnShape};
use crate::kernels::{self, Activation, Kernels, PackedLinear, Precision};
use crate::weights::Weights;

/// Tensor-name prefixes of decoder checkpoints: `model.` in `*ForCausalLM` and
/// `*ForSequenceClassification` files, none in a bare `*Model` (embedding) file.
pub const PREFIXES: &[&str] = &["model."];

/// The shape and numerics of a decoder, whatever family it came from.
#[derive(Clone, Debug)]
pub struct DecoderConfig {
    /// The `model_type` it was read from (`qwen3`, `llama`, `gemma3_text`, ...).
    pub model_type: String,
    /// Token vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads per layer.
    pub num_attention_heads: usize,
    /// Key/value heads per layer (grouped-query attention when fewer).
    pub num_key_value_heads: usize,
    /// Width of one head (need not be hidden / heads).
    pub head_dim: usize,
    /// Width of each half of the gated MLP.
    pub intermediate_size: usize,
    /// The gate's activation (SiLU: SwiGLU; tanh GELU: GeGLU).
    pub act: Activation,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// Gemma's norms scale by `1 + weight`.
    pub norm_unit_offset: bool,
    /// Biases on the Q, K and V projections.
    pub qkv_bias: bool,
    /// A bias on the attention output projection.
    pub o_bias: bool,
    /// Biases on the MLP projections.
    pub mlp_bias: bool,
    /// RMSNorm of each query and key head before RoPE (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// Gemma 3's norms after attention and around the MLP.
    pub sandwich_norms: bool,
    /// RoPE of full-attention layers.
    pub rotary: Rotary,
    /// RoPE of sliding-window layers, where it differs (Gemma 3's local base).
    pub local_rotary: Option<Rotary>,
    /// `sliding_window` of the config: a causal sliding layer's query at `i` sees
    /// keys `j` with `0 <= i - j < sliding_window`; a bidirectional one (EmbeddingGemma:
    /// transformers turns the window into `w / 2 + 1`) keys with `|i - j| <= w / 2`.
    pub sliding_window: Option<usize>,
    /// Which layers are sliding-window layers.
    pub sliding_layers: Vec<bool>,
    /// Every token sees the whole sequence (`use_bidirectional_attention`).
    pub bidirectional: bool,
    /// Multiplier of the token embeddings (Gemma: `sqrt(hidden)`).
    pub embed_scale: Option<f32>,
    /// Multiplier of the scores `q·k` (`head_dim^-0.5`, Gemma 3:
    /// `query_pre_attn_scalar^-0.5`).
    pub query_scale: f32,
    /// `logits = cap * tanh(logits / cap)` on the language-model logits.
    pub final_logit_softcapping: Option<f32>,
    /// The language-model head is the embedding table.
    pub tie_word_embeddings: bool,
    /// Positions the model was built for.
    pub max_position_embeddings: usize,
    /// Class labels of a sequence-classification head, by index (`id2label`).
    pub labels: Option<Vec<String>>,
}

impl DecoderConfig {
    /// Longest sequence the model takes. Dynamic RoPE scaling exists to run past
    /// `max_position_embeddings` (its frequencies follow the length), and
    /// transformers sets no bound; rinfer takes up to four times the scaled length
    /// (`4 x factor x max_position_embeddings`) so inputs stay bounded.
    /// YaRN stretches the pre-training context by its factor (Qwen2.5 keeps
    /// `max_position_embeddings` at the original length): `factor x original`.
    pub fn max_tokens(&self) -> usize {
        match self.rotary.scaling {
            RopeScaling::Dynamic { factor, .. } if factor > 1.0 => {
                (4.0 * self.max_position_embeddings as f32 * factor) as usize
            }
            RopeScaling::Yarn {
                factor, original, ..
            } => self
                .max_position_embeddings
                .max((factor * original as f32) as usize),
            _ => self.max_position_embeddings,
        }
    }

    /// Checks the sizes.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(format!("`{name}` must be positive"));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.sliding_layers.len() != self.num_hidden_layers {
            return Err("one sliding flag per layer is needed".into());
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps >= 0.0) {
            return Err(format!("rms_norm_eps {} is invalid", self.rms_norm_eps));
        }
        for r in std::iter::once(&self.rotary).chain(&self.local_rotary) {
            if r.dims == 0 || !r.dims.is_multiple_of(2) || r.dims > self.head_dim {
                return Err(format!(
                    "rotary dimensions {} must be even and at most head_dim {}",
                    r.dims, self.head_dim
                ));
            }
        }
        if let Some(c) = self.final_logit_softcapping {
            if !(c.is_finite() && c > 0.0) {
                return Err(format!("final_logit_softcapping {c} is invalid"));
            }
        }
        Ok(())
    }

    /// The RoPE of layer `i`.
    fn rotary_of(&self, i: usize) -> Rotary {
        match self.local_rotary {
            Some(r) if self.sliding_layers[i] => r,
            _ => self.rotary,
        }
    }

    /// The attention of layer `i`.
    fn attn_shape(&self, i: usize) -> AttnShape {
        AttnShape {
            heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads,
            dh: self.head_dim,
            scale: self.query_scale,
            causal: !self.bidirectional,
            window: match self.sliding_window {
                Some(w) if self.sliding_layers[i] && self.bidirectional => Some(w / 2),
                Some(w) if self.sliding_layers[i] => Some(w.saturating_sub(1)),
                _ => None,
            },
        }
    }
}

/// One decoder layer's weights.
struct Layer {
    /// Q, K and V stacked: `(heads + 2 kv_heads) * head_dim` outputs.
    qkv: Linear,
    o: Linear,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    input_norm: Vec<f32>,
    /// Gemma 3: the norm of the attention output.
    post_attn_norm: Option<Vec<f32>>,
    /// The norm before the MLP (Llama's `post_attention_layernorm`, Gemma's
    /// `pre_feedforward_layernorm`).
    pre_mlp_norm: Vec<f32>,
    /// Gemma 3: the norm of the MLP output.
    post_mlp_norm: Option<Vec<f32>>,
    /// Gate and up stacked (`2 * intermediate` outputs, gate first).
    gate_up: Linear,
    down: Linear,
}

/// Buffers of one forward pass, reused across calls.
#[derive(Default)]
struct Workspace {
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    a: Vec<f32>,
    up: Vec<f32>,
    gated: Vec<f32>,
}

/// A decoder (embeddings, layers, final norm, language-model head rows) of any
/// family [`DecoderConfig`] describes.
pub struct Decoder {
    cfg: DecoderConfig,
    kernels: &'static Kernels,
    precision: Precision,
    embed: Vec<f32>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// An untied `lm_head` (`[vocab x hidden]`), where the file has one.
    lm_head: Option<Vec<f32>>,
    /// The language-model head packed for the GEMM, on first use (generation).
    lm_packed: std::sync::OnceLock<std::result::Result<PackedLinear, String>>,
    spare: std::sync::Mutex<Vec<Workspace>>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("model_type", &self.cfg.model_type)
            .field("hidden", &self.cfg.hidden_size)
            .field("layers", &self.layers.len())
            .field("isa", &self.kernels.isa)
            .field("precision", &self.precision)
            .finish()
    }
}

impl Decoder {
    /// Builds the decoder from `weights` (opened with [`PREFIXES`]), its layers'
    /// projections packed for the active ISA in `precision`.
    pub fn load_with(cfg: &DecoderConfig, weights: &Weights, precision: Precision) -> Result<Self> {
        let kern = kernels::try_active()?;
        let p = Packing {
            kernels: kern,
            precision,
        };
        let (h, dh, inter) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let norm = |name: &str, width: usize| -> Result<Vec<f32>> {
            let mut g = weights
                .get_f32(&format!("{name}.weight"), &[width])?
                .into_data();
            if cfg.norm_unit_offset {
                g.iter_mut().for_each(|x| *x += 1.0);
            }
            Ok(g)
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = format!("layers.{i}");
            let att = format!("{l}.self_attn");
            let qkv = Linear::concat(
                weights,
                &[
                    (&format!("{att}.q_proj"), nh * dh),
                    (&format!("{att}.k_proj"), nkv * dh),
                    (&format!("{att}.v_proj"), nkv * dh),
                ],
                h,
                cfg.qkv_bias,
                p,
            )?;
            let gate_up = Linear::concat(
                weights,
                &[
                    (&format!("{l}.mlp.gate_proj"), inter),
                    (&format!("{l}.mlp.up_proj"), inter),
                ],
                h,
                cfg.mlp_bias,
                p,
            )?;
            let (q_norm, k_norm) = if cfg.qk_norm {
                (
                    Some(norm(&format!("{att}.q_norm"), dh)?),
                    Some(norm(&format!("{att}.k_norm"), dh)?),
                )
            } else {
                (None, None)
            };
            let sandwich = |name: &str| -> Result<Option<Vec<f32>>> {
                if cfg.sandwich_norms {
                    Ok(Some(norm(&format!("{l}.{name}"), h)?))
                } else {
                    Ok(None)
                }
            };
            let pre_mlp = if cfg.sandwich_norms {
                "pre_feedforward_layernorm"
            } else {
                "post_attention_layernorm"
            };
            layers.push(Layer {
                qkv,
                o: Linear::load(weights, &format!("{att}.o_proj"), h, nh * dh, cfg.o_bias, p)?,
                q_norm,
                k_norm,
                input_norm: norm(&format!("{l}.input_layernorm"), h)?,
                post_attn_norm: sandwich("post_attention_layernorm")?,
                pre_mlp_norm: norm(&format!("{l}.{pre_mlp}"), h)?,
                post_mlp_norm: sandwich("post_feedforward_layernorm")?,
                gate_up,
                down: Linear::load(
                    weights,
                    &format!("{l}.mlp.down_proj"),
                    h,
                    inter,
                    cfg.mlp_bias,
                    p,
                )?,
            });
        }
        let embed = weights
            .get_f32("embed_tokens.weight", &[cfg.vocab_size, h])?
            .into_data();
        let lm_head = match weights.info("lm_head.weight") {
            Some(_) if !cfg.tie_word_embeddings => Some(
                weights
                    .get_f32("lm_head.weight", &[cfg.vocab_size, h])?
                    .into_data(),
            ),
            _ => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            kernels: kern,
            precision,
            embed,
            layers,
            norm: norm("norm", h)?,
            lm_head,
            lm_packed: Default::default(),
            spare: Default::default(),
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    /// The kernel table the weights were packed for.
    pub fn kernels(&self) -> &'static Kernels {
        self.kernels
    }

    /// The precision of the layers' matrix products.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Checks a batch against the model: offsets, id ranges, sequence lengths.
    pub fn validate(&self, batch: &TokenBatch) -> Result<()> {
        batch.check(self.cfg.max_tokens(), self.cfg.vocab_size)
    }

    /// Hidden states after the final norm, `[tokens x hidden]`, row-major.
    pub fn forward(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        self.validate(batch)?;
        kernels::threads::install(|| self.forward_checked(batch))
    }

    fn forward_checked(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        self.run(batch.ids, batch.offsets, None)
    }

    /// Hidden states of new tokens of several sequences, each continuing from its
    /// [`KvCache`] (empty for a fresh prompt), whose keys and values the call
    /// appends: `ids[offsets[s]..offsets[s + 1]]` are sequence `s`'s new tokens at
    /// positions `caches[s].len()..`. Returns `[new tokens x hidden]`.
    pub fn forward_cached(
        &self,
        ids: &[u32],
        offsets: &[usize],
        caches: &mut [&mut KvCache],
    ) -> Result<Vec<f32>> {
        self.validate(&TokenBatch {
            ids,
            type_ids: None,
            offsets,
        })?;
        let n = offsets.len().saturating_sub(1);
        if caches.len() != n {
            return Err(Error::InvalidInput(format!(
                "{} caches for {n} sequences",
                caches.len()
            )));
        }
        let shape = self.kv_shape();
        for (s, cache) in caches.iter_mut().enumerate() {
            let new = offsets[s + 1] - offsets[s];
            if cache.shape() != shape {
                return Err(Error::InvalidInput(format!(
                    "cache {s} holds {:?} per position, the model {shape:?}",
                    cache.shape()
                )));
            }
            if cache.len() + new > self.cfg.max_tokens() {
                return Err(Error::InvalidInput(format!(
                    "sequence {s} would reach {} positions, more than the model's {}",
                    cache.len() + new,
                    self.cfg.max_tokens()
                )));
            }
            cache.make_room(new)?;
        }
        kernels::threads::install(|| self.run(ids, offsets, Some(caches)))
    }

    /// What a KV cache of this model holds per position.
    pub fn kv_shape(&self) -> KvShape {
        KvShape {
            layers: self.cfg.num_hidden_layers,
            kv_heads: self.cfg.num_key_value_heads,
            head_dim: self.cfg.head_dim,
        }
    }

    /// A block pool for this model's caches with room for `positions` positions
    /// (a token budget, rounded up to whole blocks), allocated now.
    pub fn kv_pool(&self, positions: usize, dtype: KvDtype) -> Result<Arc<KvPool>> {
        KvPool::new(self.kv_shape(), positions, dtype)
    }

    /// A cache of f32 keys and values with room for `capacity` positions, on a
    /// pool of its own.
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        self.new_cache_with(capacity, KvDtype::F32)
    }

    /// [`Self::new_cache`] storing `dtype`.
    pub fn new_cache_with(&self, capacity: usize, dtype: KvDtype) -> Result<KvCache> {
        self.kv_pool(capacity, dtype)?.cache(capacity)
    }

    fn run(
        &self,
        ids: &[u32],
        offsets: &[usize],
        mut caches: Option<&mut [&mut KvCache]>,
    ) -> Result<Vec<f32>> {
        let cfg = &self.cfg;
        let (h, dh, inter) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let width = (nh + 2 * nkv) * dh;
        let t = ids.len();
        let past: Vec<usize> = match &caches {
            Some(c) => c.iter().map(|c| c.len()).collect(),
            None => vec![0; offsets.len().saturating_sub(1)],
        };
        let fresh = past.iter().all(|&p| p == 0);
        let mut x = self.embed_tokens(ids);
        let tables = self.rope_tables(offsets, &past);
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
        let (qkv, ctx) = (sized(qkv, t * width), sized(ctx, t * nh * dh));
        let (a, up, gated) = (
            sized(a, t * h),
            sized(up, t * 2 * inter),
            sized(gated, t * inter),
        );
        let kern = self.kernels;
        for (i, layer) in self.layers.iter().enumerate() {
            a.copy_from_slice(&x);
            self.rms_rows(a, h, &layer.input_norm);
            layer.qkv.forward(a, t, Activation::None, qkv)?;
            if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                let eps = cfg.rms_norm_eps;
                qkv.par_chunks_mut(width).with_min_len(16).for_each(|row| {
                    let (q, rest) = row.split_at_mut(nh * dh);
                    q.chunks_exact_mut(dh)
                        .for_each(|hd| (kern.rms_norm)(hd, qn, eps));
                    rest[..nkv * dh]
                        .chunks_exact_mut(dh)
                        .for_each(|hd| (kern.rms_norm)(hd, kn, eps));
                });
            }
            let rotary = cfg.rotary_of(i);
            for (r, table, rows, positions) in &tables {
                if *r == rotary {
                    let (start, end) = *rows;
                    table.apply_rows(
                        &mut qkv[start * width..end * width],
                        width,
                        nh + nkv,
                        dh,
                        positions,
                    );
                }
            }
            if let Some(caches) = caches.as_deref_mut() {
                // Each new position's keys and values into its block.
                let (k0, kv) = (nh * dh, nkv * dh);
                for (s, cache) in caches.iter_mut().enumerate() {
                    for r in offsets[s]..offsets[s + 1] {
                        let row = &qkv[r * width..(r + 1) * width];
                        let pos = past[s] + r - offsets[s];
                        cache.write(i, pos, &row[k0..k0 + kv], &row[k0 + kv..k0 + 2 * kv]);
                    }
                }
            }
            match caches.as_deref() {
                Some(caches) if !fresh => {
                    self.cached_attention(i, qkv, offsets, &past, caches, ctx)
                }
                _ => attention_shaped(kern, qkv, offsets, cfg.attn_shape(i), None, ctx)?,
            }
            layer.o.forward(ctx, t, Activation::None, a)?;
            if let Some(n) = &layer.post_attn_norm {
                self.rms_rows(a, h, n);
            }
            (kern.add_bias)(&mut x, a);
            a.copy_from_slice(&x);
            self.rms_rows(a, h, &layer.pre_mlp_norm);
            layer.gate_up.forward(a, t, Activation::None, up)?;
            gate(kern, cfg.act, true, up, inter, gated);
            layer.down.forward(gated, t, Activation::None, a)?;
            if let Some(n) = &layer.post_mlp_norm {
                self.rms_rows(a, h, n);
            }
            (kern.add_bias)(&mut x, a);
        }
        self.rms_rows(&mut x, h, &self.norm);
        if let Some(caches) = caches {
            for (s, cache) in caches.iter_mut().enumerate() {
                cache.commit(offsets[s + 1] - offsets[s]);
            }
        }
        if let Ok(mut spare) = self.spare.lock() {
            if spare.len() < 8 {
                spare.push(ws);
            }
        }
        Ok(x)
    }

    /// Token embeddings, scaled where the family scales them.
    fn embed_tokens(&self, ids: &[u32]) -> Vec<f32> {
        let h = self.cfg.hidden_size;
        let mut x = vec![0.0f32; ids.len() * h];
        x.par_chunks_mut(h)
            .zip(ids.par_iter())
            .with_min_len(64)
            .for_each(|(row, &id)| {
                let id = id as usize;
                row.copy_from_slice(&self.embed[id * h..(id + 1) * h]);
                if let Some(s) = self.cfg.embed_scale {
                    row.iter_mut().for_each(|v| *v *= s);
                }
            });
        x
    }

    /// The RoPE tables of a batch: for each distinct rotary of the layers, one
    /// table for all tokens, or, for dynamic scaling, one per sequence (its length
    /// decides the frequencies). Each entry: the rotary, its table, the token rows
    /// it covers, and their positions.
    #[allow(clippy::type_complexity)]
    fn rope_tables(
        &self,
        offsets: &[usize],
        past: &[usize],
    ) -> Vec<(Rotary, RotaryTable, (usize, usize), Vec<usize>)> {
        let longest = offsets
            .windows(2)
            .zip(past)
            .map(|(w, p)| p + w[1] - w[0])
            .max()
            .unwrap_or(0);
        let t = offsets.last().copied().unwrap_or(0);
        let mut rotaries: Vec<Rotary> = Vec::new();
        for i in 0..self.cfg.num_hidden_layers {
            let r = self.cfg.rotary_of(i);
            if !rotaries.contains(&r) {
                rotaries.push(r);
            }
        }
        let mut out = Vec::new();
        for r in rotaries {
            if matches!(r.scaling, RopeScaling::Dynamic { .. }) {
                for (w, &p) in offsets.windows(2).zip(past).filter(|(w, _)| w[1] > w[0]) {
                    let len = p + w[1] - w[0];
                    let table = RotaryTable::for_len(r, len, len);
                    out.push((r, table, (w[0], w[1]), (p..len).collect()));
                }
            } else {
                let mut positions = Vec::with_capacity(t);
                for (w, &p) in offsets.windows(2).zip(past) {
                    positions.extend(p..p + w[1] - w[0]);
                }
                out.push((r, RotaryTable::new(r, longest), (0, t), positions));
            }
        }
        out
    }

    /// Attention of new tokens over their sequences' caches (which already hold the
    /// new keys and values): query `i` of sequence `s` sits at position
    /// `past[s] + i` and sees the keys its layer's mask allows, read block by block.
    fn cached_attention(
        &self,
        layer: usize,
        qkv: &[f32],
        offsets: &[usize],
        past: &[usize],
        caches: &[&mut KvCache],
        ctx: &mut [f32],
    ) {
        let shape = self.cfg.attn_shape(layer);
        let (nh, nkv, dh) = (shape.heads, shape.kv_heads, shape.dh);
        let (width, group) = ((nh + 2 * nkv) * dh, nh / nkv);
        let kern = self.kernels;
        let mut parts = Vec::with_capacity(caches.len());
        let mut rest = ctx;
        for s in 0..caches.len() {
            let (rows, tail) = rest.split_at_mut((offsets[s + 1] - offsets[s]) * nh * dh);
            parts.push((s, rows));
            rest = tail;
        }
        // One head of one query: scores over the keys its mask allows, softmax,
        // weighted values into `o`.
        let head = |s: usize, i: usize, hd: usize, o: &mut [f32], scores: &mut Vec<f32>| {
            let pos = past[s] + i;
            let lo = shape.window.map_or(0, |w| pos.saturating_sub(w));
            let hi = if shape.causal {
                pos + 1
            } else {
                past[s] + offsets[s + 1] - offsets[s]
            };
            let q = &qkv[(offsets[s] + i) * width + hd * dh..][..dh];
            caches[s].attend(kern, layer, hd / group, q, lo..hi, shape.scale, o, scores);
        };
        if parts.len() >= rayon::current_num_threads() {
            parts.into_par_iter().for_each(|(s, rows)| {
                let mut scores = Vec::new();
                for (i, out) in rows.chunks_exact_mut(nh * dh).enumerate() {
                    for (hd, o) in out.chunks_exact_mut(dh).enumerate() {
                        head(s, i, hd, o, &mut scores);
                    }
                }
            });
        } else {
            // Few sequences (decoding one): spread the heads of each row instead.
            for (s, rows) in parts {
                for (i, out) in rows.chunks_exact_mut(nh * dh).enumerate() {
                    out.par_chunks_mut(dh)
                        .enumerate()
                        .for_each_init(Vec::new, |scores, (hd, o)| head(s, i, hd, o, scores));
                }
            }
        }
    }

    /// RMSNorm of every `width`-wide row of `x`, spread over the pool.
    fn rms_rows(&self, x: &mut [f32], width: usize, gamma: &[f32]) {
        let eps = self.cfg.rms_norm_eps;
        let f = self.kernels.rms_norm;
        x.par_chunks_mut(width)
            .with_min_len(16)
            .for_each(|row| f(row, gamma, eps));
    }

    /// Whether [`Self::logits`] is available: a tied head, or an `lm_head` tensor.
    pub fn has_lm_head(&self) -> bool {
        self.cfg.tie_word_embeddings || self.lm_head.is_some()
    }

    /// Language-model logits of one hidden state (`hidden` wide) for the token ids
    /// `ids` (all of the vocabulary when `None`), with the family's soft-capping.
    pub fn logits(&self, hidden: &[f32], ids: Option<&[u32]>) -> Result<Vec<f32>> {
        let h = self.cfg.hidden_size;
        if hidden.len() != h {
            return Err(Error::InvalidInput(format!(
                "a hidden state of {} values for a model of width {h}",
                hidden.len()
            )));
        }
        let table = match (&self.lm_head, self.cfg.tie_word_embeddings) {
            (Some(head), _) => head,
            (None, true) => &self.embed,
            (None, false) => {
                return Err(Error::Unsupported(
                    "this checkpoint has no lm_head (an embedding-only file): no token logits"
                        .into(),
                ))
            }
        };
        let all: Vec<u32>;
        let ids = match ids {
            Some(ids) => ids,
            None => {
                all = (0..self.cfg.vocab_size as u32).collect();
                &all
            }
        };
        let cap = self.cfg.final_logit_softcapping;
        ids.iter()
            .map(|&id| {
                let id = id as usize;
                if id >= self.cfg.vocab_size {
                    return Err(Error::InvalidInput(format!(
                        "token id {id} is outside the vocabulary (size {})",
                        self.cfg.vocab_size
                    )));
                }
                let row = &table[id * h..(id + 1) * h];
                let dot: f64 = row
                    .iter()
                    .zip(hidden)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                let v = dot as f32;
                Ok(cap.map_or(v, |c| c * (v / c).tanh()))
            })
            .collect()
    }

    /// Full-vocabulary logits of `rows` hidden states (`[rows x hidden]` in,
    /// `[rows x vocab]` out) through the language-model head packed in the layers'
    /// precision, with the family's soft-capping.
    pub fn lm_logits(&self, hidden: &[f32], rows: usize) -> Result<Vec<f32>> {
        let (h, vocab) = (self.cfg.hidden_size, self.cfg.vocab_size);
        if hidden.len() != rows * h {
            return Err(Error::InvalidInput(format!(
                "{} values for {rows} hidden states of width {h}",
                hidden.len()
            )));
        }
        let packed = self.lm_packed.get_or_init(|| {
            let table =
                match (&self.lm_head, self.cfg.tie_word_embeddings) {
                    (Some(head), _) => head,
                    (None, true) => &self.embed,
                    (None, false) => return Err(
                        "this checkpoint has no lm_head (an embedding-only file): no token logits"
                            .to_string(),
                    ),
                };
            // In the layers' precision: decoding reads the whole head every token.
            PackedLinear::from_nk(table, vocab, h, self.kernels, self.precision)
                .map_err(|e| e.to_string())
        });
        let packed = packed.as_ref().map_err(|e| Error::Unsupported(e.clone()))?;
        let mut out = vec![0.0f32; rows * vocab];
        kernels::threads::install(|| packed.gemm(hidden, rows, None, Activation::None, &mut out))?;
        if let Some(c) = self.cfg.final_logit_softcapping {
            out.iter_mut().for_each(|v| *v = c * (*v / c).tanh());
        }
        Ok(out)
    }

    /// The language-model head row of a token (to build a scoring head from it,
    /// as a yes/no reranker does).
    pub fn lm_row(&self, id: u32) -> Result<&[f32]> {
        let h = self.cfg.hidden_size;
        let id = id as usize;
        if id >= self.cfg.vocab_size {
            return Err(Error::InvalidInput(format!(
                "token id {id} is outside the vocabulary (size {})",
                self.cfg.vocab_size
            )));
        }
        let table = match &self.lm_head {
            Some(head) => head,
            None if self.cfg.tie_word_embeddings => &self.embed,
            None => {
                return Err(Error::Unsupported(
                    "this checkpoint has no lm_head (an embedding-only file)".into(),
                ))
            }
        };
        Ok(&table[id * h..(id + 1) * h])
    }
}

/// The sequence-classification head of `*ForSequenceClassification` decoders
/// (`score.weight`, no bias, read at each sequence's last token).
pub const SCORE: &str = "score";

/// The token ids a causal-LM reranker compares at the last position:
/// sentence-transformers' `LogitScore` module (score = `logit[true] - logit[false]`,
/// or `logit[true]` alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogitScore {
    /// The token meaning "relevant" (`yes`).
    pub true_token_id: u32,
    /// The token meaning "not relevant" (`no`), when scores are log-odds.
    pub false_token_id: Option<u32>,
}

/// The `LogitScore` module of a sentence-transformers CrossEncoder folder
/// (`modules.json`), where it has one.
pub fn yes_no_reranker(dir: &std::path::Path) -> Result<Option<LogitScore>> {
    let modules = dir.join("modules.json");
    if !modules.is_file() {
        return Ok(None);
    }
    let read = |path: &std::path::Path| -> Result<serde_json::Value> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    };
    let list = read(&modules)?;
    let Some(entry) = list.as_array().and_then(|m| {
        m.iter().find(|x| {
            x.get("type")
                .and_then(|t| t.as_str())
                .is_some_and(|t| t.ends_with("LogitScore"))
        })
    }) else {
        return Ok(None);
    };
    let sub = entry.get("path").and_then(|p| p.as_str()).unwrap_or("");
    let cfg_path = dir.join(sub).join("config.json");
    let cfg = read(&cfg_path)?;
    let bad = |reason: &str| Error::Config {
        path: cfg_path.clone(),
        reason: reason.to_string(),
    };
    if cfg
        .get("module_input_name")
        .and_then(|v| v.as_str())
        .is_some_and(|n| n != "causal_logits")
    {
        return Err(bad("LogitScore reads something other than `causal_logits`"));
    }
    let id = |key: &str| -> Result<Option<u32>> {
        match cfg.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| bad(&format!("`{key}` is not a token id"))),
        }
    };
    let true_token_id = id("true_token_id")?.ok_or_else(|| bad("no `true_token_id`"))?;
    Ok(Some(LogitScore {
        true_token_id,
        false_token_id: id("false_token_id")?,
    }))
}
