//! DistilBERT (`model_type: distilbert`): BERT's post-LN layers under other names
//! (`transformer.layer.{i}.attention.q_lin`, `sa_layer_norm`, `ffn.lin1`, ...), no
//! token types, LayerNorm epsilon fixed at 1e-12, and a classification head
//! `pre_classifier` (ReLU) then `classifier`. Sinusoidal position tables are stored
//! in the weights like learned ones, so both read the same way.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::config::{activation, labels, parse};
use super::encoder::{EncoderConfig, HeadAct, HeadNames, MlmNames, Qkv, TensorNames};

static NAMES: TensorNames = TensorNames {
    prefixes: &["distilbert."],
    word: "embeddings.word_embeddings",
    position: Some("embeddings.position_embeddings"),
    token_type: None,
    emb_norm: "embeddings.LayerNorm",
    qkv: Qkv::Separate([
        "transformer.layer.{i}.attention.q_lin",
        "transformer.layer.{i}.attention.k_lin",
        "transformer.layer.{i}.attention.v_lin",
    ]),
    attn_out: "transformer.layer.{i}.attention.out_lin",
    attn_norm: "transformer.layer.{i}.sa_layer_norm",
    up: "transformer.layer.{i}.ffn.lin1",
    gate: None,
    down: "transformer.layer.{i}.ffn.lin2",
    out_norm: "transformer.layer.{i}.output_layer_norm",
    final_norm: None,
    head: HeadNames {
        dense: Some("pre_classifier"),
        dense_act: HeadAct::Relu,
        norm: None,
        out: "classifier",
    },
    mlm: Some(MlmNames {
        dense: "vocab_transform",
        act_from_config: true,
        norm: "vocab_layer_norm",
        decoder: "vocab_projector",
        bias: &["vocab_projector.bias"],
    }),
};

fn default_positions() -> usize {
    512
}

#[derive(Deserialize)]
struct Fields {
    vocab_size: usize,
    dim: usize,
    n_layers: usize,
    n_heads: usize,
    hidden_dim: usize,
    #[serde(default = "super::config::defaults::gelu")]
    activation: String,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default)]
    id2label: Option<BTreeMap<String, String>>,
}

/// Maps a DistilBERT `config.json`.
pub fn config(v: &Value) -> Result<EncoderConfig, String> {
    let f: Fields = parse(v)?;
    Ok(EncoderConfig {
        vocab_size: f.vocab_size,
        hidden_size: f.dim,
        num_hidden_layers: f.n_layers,
        num_attention_heads: f.n_heads,
        intermediate_size: f.hidden_dim,
        act: activation(&f.activation)?,
        max_position_embeddings: f.max_position_embeddings,
        layer_norm_eps: 1e-12,
        labels: labels(&f.id2label),
        ..EncoderConfig::new("distilbert", &NAMES)
    })
}
