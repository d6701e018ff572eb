//! GTE "new" (`model_type: new`; gte-base/large-en-v1.5, gte-multilingual-base and
//! its reranker), following Alibaba-NLP/new-impl's `modeling.py` (the Hub's remote
//! code): post-LN layers (`attn_ln`, `mlp_ln`), fused `attention.qkv_proj` (rows
//! `[q; k; v]`) and `o_proj` with biases, rotary positions over the whole head
//! (rotate-half) with optional static NTK scaling, no position table, token types
//! when `type_vocab_size > 0`, and a GLU `down_proj(act(gate) * up)` where
//! `[up | gate] = up_gate_proj(x)` (no bias on `up_gate_proj`). Classification:
//! `tanh(pooler.dense(h_0))` then `classifier`.

use serde::Deserialize;
use serde_json::Value;

use super::config::{activation, labels, parse};
use super::encoder::{EncoderConfig, HeadAct, HeadNames, Mlp, Qkv, Rotary, TensorNames};
use super::rotary::RopeScaling;

static NAMES: TensorNames = TensorNames {
    prefixes: &["new."],
    word: "embeddings.word_embeddings",
    position: None,
    token_type: Some("embeddings.token_type_embeddings"),
    emb_norm: "embeddings.LayerNorm",
    qkv: Qkv::Fused("encoder.layer.{i}.attention.qkv_proj"),
    attn_out: "encoder.layer.{i}.attention.o_proj",
    attn_norm: "encoder.layer.{i}.attn_ln",
    up: "encoder.layer.{i}.mlp.up_gate_proj",
    gate: None,
    down: "encoder.layer.{i}.mlp.down_proj",
    out_norm: "encoder.layer.{i}.mlp_ln",
    final_norm: None,
    head: HeadNames {
        dense: Some("pooler.dense"),
        dense_act: HeadAct::Tanh,
        norm: None,
        out: "classifier",
    },
    mlm: None,
};

fn d_positions() -> usize {
    2048
}
fn d_types() -> usize {
    1
}
fn d_theta() -> f32 {
    10_000.0
}
fn d_rope() -> String {
    "rope".into()
}
fn d_norm() -> String {
    "layer_norm".into()
}

#[derive(Deserialize)]
struct Fields {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "super::config::defaults::gelu")]
    hidden_act: String,
    #[serde(default = "d_positions")]
    max_position_embeddings: usize,
    #[serde(default = "d_types")]
    type_vocab_size: usize,
    #[serde(default = "super::config::defaults::eps_1e12")]
    layer_norm_eps: f64,
    #[serde(default = "d_norm")]
    layer_norm_type: String,
    #[serde(default = "d_rope")]
    position_embedding_type: String,
    #[serde(default = "d_theta")]
    rope_theta: f32,
    #[serde(default)]
    rope_scaling: Option<Value>,
    #[serde(default = "super::config::defaults::yes")]
    pack_qkv: bool,
    #[serde(default)]
    logn_attention_scale: bool,
    #[serde(default)]
    id2label: Option<std::collections::BTreeMap<String, String>>,
}

/// Maps a GTE-new `config.json`.
pub fn config(v: &Value) -> Result<EncoderConfig, String> {
    let f: Fields = parse(v)?;
    let refuse = |what: &str| Err(format!("{what} is not supported"));
    if f.layer_norm_type != "layer_norm" {
        return refuse(&format!("layer_norm_type `{}`", f.layer_norm_type));
    }
    if f.position_embedding_type != "rope" {
        return refuse(&format!(
            "position_embedding_type `{}`",
            f.position_embedding_type
        ));
    }
    if !f.pack_qkv {
        return refuse("pack_qkv: false");
    }
    if f.logn_attention_scale {
        return refuse("logn_attention_scale: true");
    }
    let ntk_factor = match &f.rope_scaling {
        None | Some(Value::Null) => None,
        Some(s) => {
            let kind = s.get("type").and_then(Value::as_str).unwrap_or("");
            if kind != "ntk" || s.get("mixed_b").is_some_and(|b| !b.is_null()) {
                return refuse(&format!("rope_scaling {s}"));
            }
            match s.get("factor").and_then(Value::as_f64) {
                Some(x) if x > 0.0 => Some(x as f32),
                _ => return refuse(&format!("rope_scaling {s} (needs a positive factor)")),
            }
        }
    };
    if f.num_attention_heads == 0 || !f.hidden_size.is_multiple_of(f.num_attention_heads) {
        return Err("hidden_size must be a multiple of num_attention_heads".into());
    }
    Ok(EncoderConfig {
        vocab_size: f.vocab_size,
        hidden_size: f.hidden_size,
        num_hidden_layers: f.num_hidden_layers,
        num_attention_heads: f.num_attention_heads,
        intermediate_size: f.intermediate_size,
        act: activation(&f.hidden_act)?,
        mlp: Mlp::Gated { act_first: false },
        max_position_embeddings: f.max_position_embeddings,
        type_vocab_size: f.type_vocab_size,
        layer_norm_eps: f.layer_norm_eps as f32,
        up_bias: false,
        rotary: Some(Rotary {
            theta: f.rope_theta,
            dims: f.hidden_size / f.num_attention_heads,
            interleaved: false,
            scaling: ntk_factor.map_or(RopeScaling::None, RopeScaling::Ntk),
        }),
        labels: labels(&f.id2label),
        ..EncoderConfig::new("new", &NAMES)
    })
}
