//! NomicBERT (`model_type: nomic_bert`; nomic-embed-text-v1/v1.5), following
//! nomic-ai/contrastors' `modeling_hf_nomic_bert.py` (the Hub's remote code):
//! post-LN layers (`norm1`, `norm2`), fused `attn.Wqkv` (rows `[q; k; v]`) and
//! `attn.out_proj` (biases per `qkv_proj_bias`), rotary positions over
//! `rotary_emb_fraction` of each head (rotate-half, or interleaved), no position
//! table, token types, and a gated MLP `fc2(fc11(x) * act(fc12(x)))` (`swiglu`:
//! SiLU, `geglu`: GELU) whose width is `n_inner` rounded up to a multiple of 256.
//! The dynamic NTK of `rotary_scaling_factor` depends on the padded batch length in
//! the reference, so it is refused rather than approximated.

use serde::Deserialize;
use serde_json::Value;

use super::config::{labels, parse, refuse_flags};
use super::encoder::{EncoderConfig, HeadAct, HeadNames, Mlp, Qkv, Rotary, TensorNames};
use super::rotary::RopeScaling;
use crate::kernels::Activation;

static NAMES: TensorNames = TensorNames {
    prefixes: &["bert."],
    word: "embeddings.word_embeddings",
    position: None,
    token_type: Some("embeddings.token_type_embeddings"),
    emb_norm: "emb_ln",
    qkv: Qkv::Fused("encoder.layers.{i}.attn.Wqkv"),
    attn_out: "encoder.layers.{i}.attn.out_proj",
    attn_norm: "encoder.layers.{i}.norm1",
    up: "encoder.layers.{i}.mlp.fc11",
    gate: Some("encoder.layers.{i}.mlp.fc12"),
    down: "encoder.layers.{i}.mlp.fc2",
    out_norm: "encoder.layers.{i}.norm2",
    final_norm: None,
    head: HeadNames {
        dense: Some("pooler.dense"),
        dense_act: HeadAct::Tanh,
        norm: None,
        out: "classifier",
    },
    mlm: None,
};

fn d_types() -> usize {
    2
}
fn d_eps() -> f64 {
    1e-5
}
fn d_base() -> f32 {
    10_000.0
}
fn d_positions() -> usize {
    1024
}

#[derive(Deserialize)]
struct Fields {
    vocab_size: usize,
    n_embd: usize,
    n_layer: usize,
    n_head: usize,
    #[serde(default)]
    n_inner: Option<usize>,
    activation_function: String,
    #[serde(default)]
    rotary_emb_fraction: f32,
    #[serde(default = "d_base")]
    rotary_emb_base: f32,
    #[serde(default)]
    rotary_emb_interleaved: bool,
    #[serde(default)]
    rotary_scaling_factor: Option<f32>,
    #[serde(default = "d_positions")]
    n_positions: usize,
    #[serde(default = "super::config::defaults::yes")]
    qkv_proj_bias: bool,
    #[serde(default = "super::config::defaults::yes")]
    mlp_fc1_bias: bool,
    #[serde(default = "super::config::defaults::yes")]
    mlp_fc2_bias: bool,
    #[serde(default = "d_eps")]
    layer_norm_epsilon: f64,
    #[serde(default = "d_types")]
    type_vocab_size: usize,
    #[serde(default)]
    id2label: Option<std::collections::BTreeMap<String, String>>,
}

/// Maps a NomicBERT `config.json`.
pub fn config(v: &Value) -> Result<EncoderConfig, String> {
    refuse_flags(v, &["prenorm"])?;
    let f: Fields = parse(v)?;
    let act = match f.activation_function.as_str() {
        "swiglu" => Activation::Silu,
        "geglu" => Activation::GeluErf,
        other => {
            return Err(format!(
                "activation_function `{other}` is not supported (swiglu, geglu)"
            ))
        }
    };
    if f.rotary_scaling_factor.is_some() {
        return Err(
            "rotary_scaling_factor (dynamic NTK over the padded batch length) is not supported"
                .into(),
        );
    }
    if f.n_head == 0 || !f.n_embd.is_multiple_of(f.n_head) {
        return Err("n_embd must be a multiple of n_head".into());
    }
    let head_dim = f.n_embd / f.n_head;
    let dims = (head_dim as f32 * f.rotary_emb_fraction) as usize;
    if dims == 0 {
        return Err("rotary_emb_fraction 0 (learned positions) is not supported".into());
    }
    let inter = f.n_inner.unwrap_or(8 * f.n_embd / 3).div_ceil(256) * 256;
    Ok(EncoderConfig {
        vocab_size: f.vocab_size,
        hidden_size: f.n_embd,
        num_hidden_layers: f.n_layer,
        num_attention_heads: f.n_head,
        intermediate_size: inter,
        act,
        mlp: Mlp::Gated { act_first: false },
        max_position_embeddings: f.n_positions,
        type_vocab_size: f.type_vocab_size,
        layer_norm_eps: f.layer_norm_epsilon as f32,
        attn_bias: f.qkv_proj_bias,
        up_bias: f.mlp_fc1_bias,
        down_bias: f.mlp_fc2_bias,
        rotary: Some(Rotary {
            theta: f.rotary_emb_base,
            dims,
            interleaved: f.rotary_emb_interleaved,
            scaling: RopeScaling::None,
        }),
        labels: labels(&f.id2label),
        ..EncoderConfig::new("nomic_bert", &NAMES)
    })
}
