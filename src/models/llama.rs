//! Llama (2, 3.x with its RoPE scaling) and Mistral decoders (e5-mistral shapes):
//! SwiGLU, RMSNorm, grouped-query attention; Mistral's layers all slide over
//! `sliding_window` when it is set.

use serde_json::Value;

use super::decoder::DecoderConfig;
use super::hf_decoder::Common;
use super::qwen::refuse_auto_map;

/// Maps a `llama` config.
pub fn llama(v: &Value) -> Result<DecoderConfig, String> {
    refuse_auto_map(v)?;
    let c = Common::read(v)?;
    let mut cfg = c.base(v, "llama", "silu", false, 10000.0)?;
    c.sliding_layers(&mut cfg, |_| false)?;
    Ok(cfg)
}

/// Maps a `mistral` config.
pub fn mistral(v: &Value) -> Result<DecoderConfig, String> {
    refuse_auto_map(v)?;
    let c = Common::read(v)?;
    let mut cfg = c.base(v, "mistral", "silu", false, 10000.0)?;
    cfg.qkv_bias = false;
    cfg.o_bias = false;
    let sliding = c.sliding_window.is_some_and(|w| w > 0);
    c.sliding_layers(&mut cfg, |_| sliding)?;
    Ok(cfg)
}
