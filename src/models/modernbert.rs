//! ModernBERT (`model_type: modernbert`; ModernBERT-base/-large, gte-modernbert,
//! gte-reranker-modernbert): pre-LN layers (the first takes the normalised
//! embeddings as they are) with a final norm, no biases by default, no position
//! table but rotary positions (rotate-half, full head width) with one base for
//! global layers and another for local ones, sliding-window attention
//! (`|i - j| <= local_attention / 2`) except on every `global_attn_every_n_layers`-th
//! layer, and a GeGLU feed-forward `Wo(gelu(a) * b)` with `[a | b] = Wi(x)`.
//! Classification: pool (cls or mean, `classifier_pooling`), `head.dense`, GELU,
//! `head.norm`, then `classifier`.
//!
//! Both config formats are read: the Hub's (`global_attn_every_n_layers`,
//! `global_rope_theta`, `local_rope_theta`) and transformers 5's (`layer_types`,
//! `rope_parameters`).

use serde::Deserialize;
use serde_json::Value;

use super::config::{activation, labels, parse};
use super::encoder::{
    EncoderConfig, HeadAct, HeadNames, HeadPooling, LocalAttention, Mlp, Qkv, Rotary, TensorNames,
};
use super::rotary::RopeScaling;

static NAMES: TensorNames = TensorNames {
    prefixes: &["model."],
    word: "embeddings.tok_embeddings",
    position: None,
    token_type: None,
    emb_norm: "embeddings.norm",
    qkv: Qkv::Fused("layers.{i}.attn.Wqkv"),
    attn_out: "layers.{i}.attn.Wo",
    attn_norm: "layers.{i}.attn_norm",
    up: "layers.{i}.mlp.Wi",
    gate: None,
    down: "layers.{i}.mlp.Wo",
    out_norm: "layers.{i}.mlp_norm",
    final_norm: Some("final_norm"),
    head: HeadNames {
        dense: Some("head.dense"),
        dense_act: HeadAct::Gelu,
        norm: Some("head.norm"),
        out: "classifier",
    },
    mlm: None,
};

fn d_positions() -> usize {
    8192
}
fn d_eps() -> f64 {
    1e-5
}
fn d_window() -> usize {
    128
}
fn d_every() -> usize {
    3
}
fn d_pooling() -> String {
    "cls".into()
}

#[derive(Deserialize)]
struct Fields {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default = "super::config::defaults::gelu")]
    hidden_activation: String,
    #[serde(default = "d_positions")]
    max_position_embeddings: usize,
    #[serde(default = "d_eps")]
    norm_eps: f64,
    #[serde(default)]
    norm_bias: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default)]
    classifier_bias: bool,
    #[serde(default = "super::config::defaults::gelu")]
    classifier_activation: String,
    #[serde(default = "d_pooling")]
    classifier_pooling: String,
    #[serde(default = "d_window")]
    local_attention: usize,
    #[serde(default = "d_every")]
    global_attn_every_n_layers: usize,
    #[serde(default)]
    global_rope_theta: Option<f32>,
    #[serde(default)]
    local_rope_theta: Option<f32>,
    #[serde(default)]
    layer_types: Option<Vec<String>>,
    #[serde(default)]
    rope_parameters: Option<Value>,
    #[serde(default)]
    rope_scaling: Option<Value>,
    #[serde(default)]
    id2label: Option<std::collections::BTreeMap<String, String>>,
}

/// The `rope_theta` of one layer type in transformers 5's `rope_parameters`,
/// refusing scaled variants.
fn theta_of(params: &Option<Value>, kind: &str) -> Result<Option<f32>, String> {
    let Some(p) = params.as_ref().and_then(|p| p.get(kind)) else {
        return Ok(None);
    };
    if let Some(t) = p.get("rope_type").and_then(Value::as_str) {
        if t != "default" {
            return Err(format!(
                "rope_parameters.{kind}.rope_type `{t}` is not supported (only default)"
            ));
        }
    }
    Ok(p.get("rope_theta")
        .and_then(Value::as_f64)
        .map(|t| t as f32))
}

/// Maps a ModernBERT `config.json`.
pub fn config(v: &Value) -> Result<EncoderConfig, String> {
    let f: Fields = parse(v)?;
    if f.rope_scaling.as_ref().is_some_and(|s| !s.is_null()) {
        return Err("rope_scaling is not supported for ModernBERT".into());
    }
    if f.global_attn_every_n_layers == 0 {
        return Err("global_attn_every_n_layers must be positive".into());
    }
    let mut every = f.global_attn_every_n_layers;
    if let Some(types) = &f.layer_types {
        // transformers 5 writes the per-layer list; rinfer describes the
        // global-every-n pattern it is derived from, and refuses any other.
        every = types
            .iter()
            .skip(1)
            .position(|t| t == "full_attention")
            .map_or(types.len().max(1), |p| p + 1);
        let derived = (0..f.num_hidden_layers).map(|i| {
            if i % every == 0 {
                "full_attention"
            } else {
                "sliding_attention"
            }
        });
        if types.len() != f.num_hidden_layers || types.iter().map(String::as_str).ne(derived) {
            return Err(format!(
                "layer_types {types:?} is not a global-every-n pattern over {} layers",
                f.num_hidden_layers
            ));
        }
    }
    build(&f, every)
}

fn build(f: &Fields, every: usize) -> Result<EncoderConfig, String> {
    if f.classifier_activation != "gelu" {
        return Err(format!(
            "classifier_activation `{}` is not supported (gelu)",
            f.classifier_activation
        ));
    }
    let head_pooling = match f.classifier_pooling.as_str() {
        "cls" => HeadPooling::First,
        "mean" => HeadPooling::Mean,
        other => {
            return Err(format!(
                "classifier_pooling `{other}` is not supported (cls, mean)"
            ))
        }
    };
    let global = theta_of(&f.rope_parameters, "full_attention")?
        .or(f.global_rope_theta)
        .unwrap_or(160_000.0);
    let local = theta_of(&f.rope_parameters, "sliding_attention")?
        .or(f.local_rope_theta)
        .unwrap_or(10_000.0);
    if f.num_attention_heads == 0 || !f.hidden_size.is_multiple_of(f.num_attention_heads) {
        return Err("hidden_size must be a multiple of num_attention_heads".into());
    }
    Ok(EncoderConfig {
        vocab_size: f.vocab_size,
        hidden_size: f.hidden_size,
        num_hidden_layers: f.num_hidden_layers,
        num_attention_heads: f.num_attention_heads,
        intermediate_size: f.intermediate_size,
        act: activation(&f.hidden_activation)?,
        mlp: Mlp::Gated { act_first: true },
        max_position_embeddings: f.max_position_embeddings,
        layer_norm_eps: f.norm_eps as f32,
        norm_bias: f.norm_bias,
        attn_bias: f.attention_bias,
        up_bias: f.mlp_bias,
        down_bias: f.mlp_bias,
        head_bias: f.classifier_bias,
        pre_norm: true,
        rotary: Some(Rotary {
            theta: global,
            dims: f.hidden_size / f.num_attention_heads,
            interleaved: false,
            scaling: RopeScaling::None,
        }),
        local: Some(LocalAttention {
            half_window: f.local_attention / 2,
            global_every: every,
            local_theta: Some(local),
        }),
        head_pooling,
        labels: labels(&f.id2label),
        ..EncoderConfig::new("modernbert", &NAMES)
    })
}
