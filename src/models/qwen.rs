//! Qwen2 and Qwen3 decoders (Qwen3-Embedding, Qwen3-Reranker, gte-Qwen2 shapes):
//! Llama's layout; Qwen2 with biases on Q, K and V; Qwen3 with per-head q/k
//! RMSNorm. Sliding-window layers are those from `max_window_layers` on when
//! `use_sliding_window` is set (or as `layer_types` says).

use serde_json::Value;

use super::decoder::DecoderConfig;
use super::hf_decoder::{Common, Defaults};

/// Sliding layers of a Qwen config without `layer_types`.
fn qwen_sliding(c: &Common) -> impl Fn(usize) -> bool + '_ {
    move |i| c.use_sliding_window == Some(true) && i >= c.max_window_layers.unwrap_or(28)
}

/// Refuses custom modeling code: its math is not in the config.
pub(crate) fn refuse_auto_map(v: &Value) -> Result<(), String> {
    if let Some(m) = v.get("auto_map").filter(|m| !m.is_null()) {
        return Err(format!(
            "config.json names custom modeling code (auto_map {m}); rinfer runs only the \
             transformers implementation of the family and cannot tell what that code changes \
             (for example bidirectional attention)"
        ));
    }
    Ok(())
}

/// Maps a `qwen2` config.
pub fn qwen2(v: &Value) -> Result<DecoderConfig, String> {
    refuse_auto_map(v)?;
    let c = Common::read(v, Some(4096))?;
    let defaults = Defaults {
        act: "silu",
        tie: false,
        theta: 10000.0,
        kv_heads: Some(32),
        head_dim: None,
    };
    let mut cfg = c.base(v, "qwen2", &defaults)?;
    cfg.qkv_bias = true;
    cfg.o_bias = false;
    c.sliding_layers(&mut cfg, qwen_sliding(&c))?;
    Ok(cfg)
}

/// Maps a `qwen3` config.
pub fn qwen3(v: &Value) -> Result<DecoderConfig, String> {
    refuse_auto_map(v)?;
    let c = Common::read(v, Some(4096))?;
    let defaults = Defaults {
        act: "silu",
        tie: false,
        theta: 10000.0,
        kv_heads: Some(32),
        head_dim: Some(128),
    };
    let mut cfg = c.base(v, "qwen3", &defaults)?;
    cfg.qk_norm = true;
    c.sliding_layers(&mut cfg, qwen_sliding(&c))?;
    Ok(cfg)
}
