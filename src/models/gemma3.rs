//! Gemma 3 text decoders (`gemma3_text`; EmbeddingGemma with bidirectional
//! attention): `1 + weight` RMSNorms, norms around attention and MLP outputs, q/k
//! norms, GeGLU, embeddings scaled by `sqrt(hidden)`, scores scaled by
//! `query_pre_attn_scalar^-0.5`, local sliding-window layers with their own RoPE
//! base between global ones.

use serde::Deserialize;
use serde_json::Value;

use super::config::parse;
use super::decoder::DecoderConfig;
use super::hf_decoder::{rope, Common, Defaults};
use super::qwen::refuse_auto_map;

#[derive(Deserialize)]
struct Gemma3Fields {
    #[serde(default)]
    query_pre_attn_scalar: Option<f64>,
    #[serde(default)]
    rope_local_base_freq: Option<f64>,
    #[serde(default)]
    sliding_window_pattern: Option<usize>,
}

/// Maps a `gemma3_text` config.
pub fn gemma3(v: &Value) -> Result<DecoderConfig, String> {
    refuse_auto_map(v)?;
    let c = Common::read(v, Some(4096))?;
    let g: Gemma3Fields = parse(v)?;
    let defaults = Defaults {
        act: "gelu_pytorch_tanh",
        tie: true,
        theta: 1_000_000.0,
        kv_heads: Some(4),
        head_dim: Some(256),
    };
    let mut cfg = c.base(v, "gemma3_text", &defaults)?;
    cfg.norm_unit_offset = true;
    cfg.qk_norm = true;
    cfg.sandwich_norms = true;
    cfg.embed_scale = Some((c.hidden_size as f32).sqrt());
    let scalar = g.query_pre_attn_scalar.unwrap_or(256.0);
    if !(scalar.is_finite() && scalar > 0.0) {
        return Err(format!("query_pre_attn_scalar {scalar} is invalid"));
    }
    cfg.query_scale = scalar.powf(-0.5) as f32;
    let dh = cfg.head_dim;
    let nested = v
        .get("rope_parameters")
        .is_some_and(|p| p.get("sliding_attention").is_some());
    cfg.rotary = rope(
        v,
        Some("full_attention"),
        dh,
        c.max_position_embeddings,
        1_000_000.0,
    )?;
    cfg.local_rotary = Some(if nested {
        rope(
            v,
            Some("sliding_attention"),
            dh,
            c.max_position_embeddings,
            g.rope_local_base_freq.unwrap_or(10_000.0),
        )?
    } else {
        // The hub's layout: local layers rotate with `rope_local_base_freq`, unscaled.
        super::rotary::Rotary::plain(
            g.rope_local_base_freq.unwrap_or(10_000.0) as f32,
            cfg.rotary.dims,
        )
    });
    let pattern = g.sliding_window_pattern.unwrap_or(6).max(1);
    c.sliding_layers(&mut cfg, |i| (i + 1) % pattern != 0)?;
    Ok(cfg)
}
