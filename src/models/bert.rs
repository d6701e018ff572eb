//! BERT (`model_type: bert`): learned absolute positions from 0, token types,
//! post-LN, GELU; the sequence-classification head is the pooler (tanh) then
//! `classifier`. Also the shape RoBERTa's file builds on.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::config::{activation, labels, parse, refuse_flags};
use super::encoder::{EncoderConfig, HeadAct, HeadNames, MlmNames, Qkv, TensorNames};

/// Tensor names of `BertModel` / `BertFor*` (and of RoBERTa, with its prefix and head).
pub const NAMES: TensorNames = TensorNames {
    prefixes: &["bert."],
    word: "embeddings.word_embeddings",
    position: Some("embeddings.position_embeddings"),
    token_type: Some("embeddings.token_type_embeddings"),
    emb_norm: "embeddings.LayerNorm",
    qkv: Qkv::Separate([
        "encoder.layer.{i}.attention.self.query",
        "encoder.layer.{i}.attention.self.key",
        "encoder.layer.{i}.attention.self.value",
    ]),
    attn_out: "encoder.layer.{i}.attention.output.dense",
    attn_norm: "encoder.layer.{i}.attention.output.LayerNorm",
    up: "encoder.layer.{i}.intermediate.dense",
    gate: None,
    down: "encoder.layer.{i}.output.dense",
    out_norm: "encoder.layer.{i}.output.LayerNorm",
    final_norm: None,
    head: HeadNames {
        dense: Some("pooler.dense"),
        dense_act: HeadAct::Tanh,
        norm: None,
        out: "classifier",
    },
    mlm: Some(MlmNames {
        dense: "cls.predictions.transform.dense",
        act_from_config: true,
        norm: "cls.predictions.transform.LayerNorm",
        decoder: "cls.predictions.decoder",
        bias: &["cls.predictions.decoder.bias", "cls.predictions.bias"],
    }),
};

static BERT_NAMES: TensorNames = NAMES;

fn default_positions() -> usize {
    512
}
fn default_types() -> usize {
    2
}
fn default_position_kind() -> String {
    "absolute".into()
}

/// The fields of a BERT-shaped `config.json` that inference reads.
#[derive(Deserialize)]
pub(crate) struct BertFields {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "super::config::defaults::gelu")]
    pub hidden_act: String,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_types")]
    pub type_vocab_size: usize,
    #[serde(default = "super::config::defaults::eps_1e12")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_position_kind")]
    pub position_embedding_type: String,
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

impl BertFields {
    /// Reads the BERT-shaped fields of `v` whatever its position scheme.
    pub fn read_any_positions(v: &Value) -> Result<Self, String> {
        refuse_flags(v, &["is_decoder", "add_cross_attention"])?;
        parse(v)
    }

    /// Reads and checks the BERT-shaped fields of `v` (absolute positions).
    pub fn read(v: &Value) -> Result<Self, String> {
        let f = Self::read_any_positions(v)?;
        if f.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type `{}` is not supported (only `absolute`)",
                f.position_embedding_type
            ));
        }
        Ok(f)
    }

    /// The encoder description, with the family's type, names and position offset.
    pub fn into_config(
        self,
        model_type: &str,
        names: &'static TensorNames,
        position_offset: usize,
    ) -> Result<EncoderConfig, String> {
        Ok(EncoderConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            act: activation(&self.hidden_act)?,
            max_position_embeddings: self.max_position_embeddings,
            position_offset,
            type_vocab_size: self.type_vocab_size,
            layer_norm_eps: self.layer_norm_eps as f32,
            labels: labels(&self.id2label),
            ..EncoderConfig::new(model_type, names)
        })
    }
}

/// Maps a BERT `config.json` (JinaBERT's ALiBi configs go to their own file).
pub fn config(v: &Value) -> Result<EncoderConfig, String> {
    if v.get("position_embedding_type").and_then(Value::as_str) == Some("alibi") {
        return super::jina::config(v);
    }
    BertFields::read(v)?.into_config("bert", &BERT_NAMES, 0)
}
