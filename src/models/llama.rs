//! Llama (2, 3.x with its RoPE scaling) and Mistral decoders (e5-mistral shapes):
//! SwiGLU, RMSNorm, grouped-query attention; Mistral's layers all slide over
//! `sliding_window` when it is set.

use serde_json::Value;

use super::decoder::DecoderConfig;
use super::hf_decoder::{Common, Defaults};
use super::qwen::refuse_auto_map;

/// Maps a `llama` config.
pub fn llama(v: &Value) -> Result<DecoderConfig, String> {
    refuse_auto_map(v)?;
    let c = Common::read(v, None)?;
    let defaults = Defaults {
        act: "silu",
        tie: false,
        theta: 10000.0,
        kv_heads: None,
        head_dim: None,
    };
    let cfg = c.base(v, "llama", &defaults)?;
    // transformers' Llama has no sliding layers, whatever `layer_types` says.
    Ok(cfg)
}

/// Maps a `mistral` config.
pub fn mistral(v: &Value) -> Result<DecoderConfig, String> {
    refuse_auto_map(v)?;
    let c = Common::read(v, Some(4096))?;
    let defaults = Defaults {
        act: "silu",
        tie: false,
        theta: 10000.0,
        kv_heads: Some(8),
        head_dim: None,
    };
    let mut cfg = c.base(v, "mistral", &defaults)?;
    cfg.qkv_bias = false;
    cfg.o_bias = false;
    // transformers' Mistral slides every layer over `sliding_window` and ignores
    // `layer_types`.
    if let Some(w) = c.sliding_window.filter(|&w| w > 0) {
        cfg.sliding_window = Some(w);
        cfg.sliding_layers = vec![true; cfg.num_hidden_layers];
    }
    Ok(cfg)
}
