//! MPNet (`model_type: mpnet`, all-mpnet-base-v2 and friends): BERT's post-LN
//! layers under the `mpnet.` prefix (`attention.attn.q/k/v/o`), no token types,
//! positions counted from 2 (padding index 1, fixed by the model, whatever
//! `pad_token_id` says), and one learned relative-position bias shared by every
//! layer: `encoder.relative_attention_bias[bucket(j - i)][head]`, with the T5-style
//! bidirectional buckets transformers computes (32 buckets, max distance 128: the
//! model passes those constants, not `relative_attention_num_buckets`).
//! Classification head: `classifier.dense` (tanh) then `classifier.out_proj`.

use serde_json::Value;

use super::bert::BertFields;
use super::encoder::{EncoderConfig, Qkv, RelativeBiasSpec, TensorNames};

static NAMES: TensorNames = TensorNames {
    prefixes: &["mpnet."],
    word: "embeddings.word_embeddings",
    position: Some("embeddings.position_embeddings"),
    token_type: None,
    emb_norm: "embeddings.LayerNorm",
    qkv: Qkv::Separate([
        "encoder.layer.{i}.attention.attn.q",
        "encoder.layer.{i}.attention.attn.k",
        "encoder.layer.{i}.attention.attn.v",
    ]),
    attn_out: "encoder.layer.{i}.attention.attn.o",
    attn_norm: "encoder.layer.{i}.attention.LayerNorm",
    up: "encoder.layer.{i}.intermediate.dense",
    gate: None,
    down: "encoder.layer.{i}.output.dense",
    out_norm: "encoder.layer.{i}.output.LayerNorm",
    final_norm: None,
    head: super::roberta::HEAD,
    mlm: Some(super::roberta::MLM),
};

/// Padding index of MPNet's embeddings (a constant of the model).
const PADDING_IDX: u32 = 1;

/// transformers' `MPNetEncoder.relative_position_bucket(j - i, 32, 128)`: half the
/// buckets for keys after the query, exact distances below 8, then logarithmic up
/// to 128 (computed in f32 as PyTorch does, truncated toward zero).
pub fn bucket(relative: isize) -> usize {
    const HALF: isize = 16;
    const EXACT: isize = HALF / 2;
    let n = -relative;
    let base = if n < 0 { HALF } else { 0 };
    let n = n.abs();
    if n < EXACT {
        return (base + n) as usize;
    }
    let ratio = (n as f32 / EXACT as f32).ln() / (128.0f64 / EXACT as f64).ln() as f32;
    let large = EXACT + (ratio * (HALF - EXACT) as f32) as isize;
    (base + large.min(HALF - 1)) as usize
}

/// Maps an MPNet `config.json`.
pub fn config(v: &Value) -> Result<EncoderConfig, String> {
    let rows = v
        .get("relative_attention_num_buckets")
        .and_then(Value::as_u64)
        .unwrap_or(32) as usize;
    if rows < 32 {
        return Err(format!(
            "relative_attention_num_buckets {rows} is under the 32 buckets MPNet indexes"
        ));
    }
    let mut cfg = BertFields::read(v)?.into_config("mpnet", &NAMES, PADDING_IDX as usize + 1)?;
    cfg.type_vocab_size = 0;
    cfg.pad_token_id = Some(PADDING_IDX);
    cfg.relative_bias = Some(RelativeBiasSpec {
        table: "encoder.relative_attention_bias",
        rows,
        bucket,
    });
    Ok(cfg)
}
