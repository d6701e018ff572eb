//! JinaBERT v2 (`model_type: bert` with `position_embedding_type: alibi`;
//! jina-embeddings-v2-*), following jinaai/jina-bert-implementation as
//! text-embeddings-inference and candle reimplement it: BERT's post-LN layers and
//! names, no position table but symmetric ALiBi (`-slope_h * |i - j|` added to the
//! scaled scores), and a gated MLP `mlp.wo(act(a) * b)` with `[a | b] =
//! mlp.gated_layers(x)` (no bias), then `mlp.layernorm` with the residual.
//! `feed_forward_type`: `geglu` (exact GELU) or `reglu` (ReLU). The qk-post-norm
//! variant (jina-embeddings-v2-base-code, jina-reranker-v1) has other tensors and
//! is refused at load by their absence.

use serde_json::Value;

use super::bert::{BertFields, NAMES as BERT};
use super::encoder::{EncoderConfig, Mlp, TensorNames};
use crate::kernels::Activation;

static NAMES: TensorNames = TensorNames {
    position: None,
    up: "encoder.layer.{i}.mlp.gated_layers",
    down: "encoder.layer.{i}.mlp.wo",
    out_norm: "encoder.layer.{i}.mlp.layernorm",
    ..BERT
};

/// Maps a JinaBERT `config.json` (a BERT config with ALiBi positions).
pub fn config(v: &Value) -> Result<EncoderConfig, String> {
    let act = match v.get("feed_forward_type").and_then(Value::as_str) {
        Some("geglu") | None => Activation::GeluErf,
        Some("reglu") => Activation::Relu,
        Some(other) => {
            return Err(format!(
                "feed_forward_type `{other}` is not supported (geglu, reglu)"
            ))
        }
    };
    let f = BertFields::read_any_positions(v)?;
    let mut cfg = f.into_config("jina_bert", &NAMES, 0)?;
    cfg.act = act;
    cfg.mlp = Mlp::Gated { act_first: true };
    cfg.up_bias = false;
    cfg.alibi = true;
    Ok(cfg)
}
