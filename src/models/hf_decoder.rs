//! The `config.json` fields decoder families share (Llama's layout, which Qwen,
//! Mistral and Gemma keep), read once: sizes, grouped-query heads, RoPE in both the
//! hub's spelling (`rope_theta` + `rope_scaling`) and transformers 5's
//! (`rope_parameters`, flat or per layer type), sliding-window layers and
//! bidirectional attention. Families fill in what differs.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::config::{labels, parse};
use super::decoder::DecoderConfig;
use super::rotary::{RopeScaling, Rotary};
use crate::kernels::Activation;

/// What a family's transformers config class defaults, where a `config.json`
/// leaves a field out.
pub(crate) struct Defaults {
    /// `hidden_act` / `hidden_activation`.
    pub act: &'static str,
    /// `tie_word_embeddings`.
    pub tie: bool,
    /// `rope_theta`.
    pub theta: f64,
    /// `num_key_value_heads` (none: as many as query heads).
    pub kv_heads: Option<usize>,
    /// `head_dim` (none: hidden / heads).
    pub head_dim: Option<usize>,
}

/// The fields every decoder family's config has (or defaults).
#[derive(Deserialize)]
pub(crate) struct Common {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default)]
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub hidden_activation: Option<String>,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub rms_norm_eps: Option<f64>,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    #[serde(default)]
    pub max_window_layers: Option<usize>,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    #[serde(default)]
    pub use_bidirectional_attention: Option<bool>,
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
}

impl Common {
    /// Reads the shared fields; `sliding_window` left out of the file takes
    /// `default_window` (the family's config class default), `null` stays none.
    pub fn read(v: &Value, default_window: Option<usize>) -> Result<Self, String> {
        let mut c: Self = parse(v)?;
        if v.get("sliding_window").is_none() {
            c.sliding_window = default_window;
        }
        Ok(c)
    }

    /// The head width (`head_dim`, else the family's default, else hidden / heads).
    pub fn head_dim(&self, default: Option<usize>) -> Result<usize, String> {
        match self.head_dim.or(default) {
            Some(d) if d > 0 => Ok(d),
            _ if self.num_attention_heads > 0
                && self.hidden_size.is_multiple_of(self.num_attention_heads) =>
            {
                Ok(self.hidden_size / self.num_attention_heads)
            }
            _ => Err(format!(
                "no head_dim, and hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )),
        }
    }

    /// The description every family starts from: causal, no sliding layers, no
    /// biases unless `attention_bias`, the family's activation and defaults.
    pub fn base(&self, v: &Value, model_type: &str, d: &Defaults) -> Result<DecoderConfig, String> {
        if self.use_bidirectional_attention == Some(true) && model_type != "gemma3_text" {
            return Err(format!(
                "`use_bidirectional_attention: true` is not part of transformers' {model_type}"
            ));
        }
        if self.attn_logit_softcapping.is_some() {
            return Err("`attn_logit_softcapping` is not supported".into());
        }
        let dh = self.head_dim(d.head_dim)?;
        let act_name = self
            .hidden_activation
            .as_deref()
            .or(self.hidden_act.as_deref())
            .unwrap_or(d.act);
        let act = match act_name {
            "silu" | "swish" => Activation::Silu,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Activation::GeluTanh,
            "gelu" => Activation::GeluErf,
            other => {
                return Err(format!(
                    "activation `{other}` is not supported (silu, gelu_pytorch_tanh, gelu)"
                ))
            }
        };
        let rotary = rope(v, None, dh, self.max_position_embeddings, d.theta)?;
        Ok(DecoderConfig {
            model_type: model_type.to_string(),
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self
                .num_key_value_heads
                .or(d.kv_heads)
                .unwrap_or(self.num_attention_heads),
            head_dim: dh,
            intermediate_size: self.intermediate_size,
            act,
            rms_norm_eps: self.rms_norm_eps.unwrap_or(1e-6) as f32,
            norm_unit_offset: false,
            qkv_bias: self.attention_bias,
            o_bias: self.attention_bias,
            mlp_bias: self.mlp_bias,
            qk_norm: false,
            sandwich_norms: false,
            rotary,
            local_rotary: None,
            sliding_window: None,
            sliding_layers: vec![false; self.num_hidden_layers],
            bidirectional: self.use_bidirectional_attention.unwrap_or(false),
            embed_scale: None,
            query_scale: 1.0 / (dh as f32).sqrt(),
            final_logit_softcapping: self.final_logit_softcapping.map(|c| c as f32),
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(d.tie),
            max_position_embeddings: self.max_position_embeddings,
            labels: labels(&self.id2label),
        })
    }

    /// Sliding layers from `layer_types` when the config has it, else `fallback(i)`
    /// for each layer; a sliding layer needs a `sliding_window`.
    pub fn sliding_layers(
        &self,
        cfg: &mut DecoderConfig,
        fallback: impl Fn(usize) -> bool,
    ) -> Result<(), String> {
        let n = self.num_hidden_layers;
        cfg.sliding_layers = match &self.layer_types {
            Some(types) => {
                if types.len() != n {
                    return Err(format!(
                        "layer_types has {} entries for {n} layers",
                        types.len()
                    ));
                }
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        "full_attention" => Ok(false),
                        "sliding_attention" => Ok(true),
                        other => Err(format!("layer type `{other}` is not supported")),
                    })
                    .collect::<Result<_, _>>()?
            }
            None => (0..n).map(fallback).collect(),
        };
        if cfg.sliding_layers.iter().any(|&s| s) {
            match self.sliding_window {
                Some(w) if w > 0 => cfg.sliding_window = Some(w),
                _ => return Err("sliding-window layers without a positive `sliding_window`".into()),
            }
        }
        Ok(())
    }
}

/// A field of a JSON object as f64.
fn num(d: &Value, key: &str) -> Option<f64> {
    d.get(key).and_then(Value::as_f64)
}

/// The RoPE of a config (of the layer type `layer_type` where `rope_parameters` is
/// given per layer type): its base, rotated dimensions and scaling. Types other
/// than default, linear, dynamic, llama3 and yarn are refused.
pub(crate) fn rope(
    v: &Value,
    layer_type: Option<&str>,
    head_dim: usize,
    max_positions: usize,
    default_theta: f64,
) -> Result<Rotary, String> {
    let null = Value::Null;
    // transformers: `rope_scaling or rope_parameters`.
    let params = v
        .get("rope_parameters")
        .filter(|p| !p.is_null())
        .filter(|_| v.get("rope_scaling").is_none_or(Value::is_null));
    let (dict, theta) = match params {
        Some(p) => {
            let nested = p
                .get("full_attention")
                .or(p.get("sliding_attention"))
                .is_some();
            let d = match (nested, layer_type) {
                (true, Some(t)) => p.get(t).unwrap_or(&null),
                (true, None) => p.get("full_attention").unwrap_or(&null),
                (false, _) => p,
            };
            // Local (sliding) layers fall back to the caller's base, not the global one.
            let top = num(v, "rope_theta").filter(|_| layer_type != Some("sliding_attention"));
            let theta = num(d, "rope_theta").or(top).unwrap_or(default_theta);
            (d, theta)
        }
        None => (
            v.get("rope_scaling").unwrap_or(&null),
            num(v, "rope_theta").unwrap_or(default_theta),
        ),
    };
    // transformers' Llama-family decoders rotate the whole head whatever
    // `partial_rotary_factor` says (or fail on it): refuse anything else.
    let prf = num(dict, "partial_rotary_factor")
        .or(num(v, "partial_rotary_factor"))
        .unwrap_or(1.0);
    if prf != 1.0 {
        return Err(format!(
            "partial_rotary_factor {prf} is not supported (these decoders rotate the whole head)"
        ));
    }
    let dims = head_dim;
    if dims == 0 || !dims.is_multiple_of(2) {
        return Err(format!(
            "head_dim {head_dim} must be even and positive for RoPE"
        ));
    }
    if !(theta.is_finite() && theta > 1.0) {
        return Err(format!("rope_theta {theta} is invalid"));
    }
    let kind = dict
        .get("rope_type")
        .or(dict.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let factor = || -> Result<f32, String> {
        match num(dict, "factor") {
            Some(f) if f.is_finite() && f > 0.0 => Ok(f as f32),
            _ => Err(format!("rope {kind} scaling needs a positive `factor`")),
        }
    };
    // A top-level `original_max_position_embeddings` wins (transformers, Phi-3 style).
    let original = || {
        num(v, "original_max_position_embeddings")
            .or(num(dict, "original_max_position_embeddings"))
            .map_or(max_positions, |x| x as usize)
    };
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear(factor()?),
        "dynamic" => RopeScaling::Dynamic {
            factor: factor()?,
            max_positions,
        },
        "llama3" => {
            let (low, high) = (num(dict, "low_freq_factor"), num(dict, "high_freq_factor"));
            match (low, high) {
                (Some(l), Some(h)) if l > 0.0 && h > l => RopeScaling::Llama3 {
                    factor: factor()?,
                    low_freq_factor: l as f32,
                    high_freq_factor: h as f32,
                    original: original(),
                },
                _ => return Err(
                    "llama3 rope scaling needs low_freq_factor < high_freq_factor, both positive"
                        .into(),
                ),
            }
        }
        "yarn" => {
            let orig = original();
            let f = match num(dict, "factor") {
                Some(f) if f > 0.0 => f as f32,
                _ => max_positions as f32 / orig as f32,
            };
            let attention_factor = match num(dict, "attention_factor") {
                Some(a) => a as f32,
                None => Rotary::yarn_attention_factor(
                    f,
                    num(dict, "mscale").map(|x| x as f32),
                    num(dict, "mscale_all_dim").map(|x| x as f32),
                ),
            };
            RopeScaling::Yarn {
                factor: f,
                original: orig,
                beta_fast: num(dict, "beta_fast").filter(|b| *b != 0.0).unwrap_or(32.0) as f32,
                beta_slow: num(dict, "beta_slow").filter(|b| *b != 0.0).unwrap_or(1.0) as f32,
                truncate: dict
                    .get("truncate")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
                attention_factor,
            }
        }
        other => {
            return Err(format!(
                "rope type `{other}` is not supported (default, linear, dynamic, llama3, yarn)"
            ))
        }
    };
    Ok(Rotary {
        theta: theta as f32,
        dims,
        interleaved: false,
        scaling,
    })
}
