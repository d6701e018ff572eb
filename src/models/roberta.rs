//! RoBERTa, XLM-RoBERTa and CamemBERT (`model_type: roberta | xlm-roberta |
//! camembert`): BERT's layers under the `roberta.` prefix, with positions counted
//! from `pad_token_id + 1` (a token equal to the pad id keeps position `pad_token_id`,
//! as transformers' `create_position_ids_from_input_ids` does), and a
//! classification head `classifier.dense` (tanh) then `classifier.out_proj`.

use serde_json::Value;

use super::bert::{BertFields, NAMES as BERT};
use super::encoder::{EncoderConfig, HeadAct, HeadNames, MlmNames, TensorNames};

/// RoBERTa's classification head (also MPNet's).
pub(crate) const HEAD: HeadNames = HeadNames {
    dense: Some("classifier.dense"),
    dense_act: HeadAct::Tanh,
    norm: None,
    out: "classifier.out_proj",
};

/// RoBERTa's masked-LM head (also MPNet's): always exact GELU.
pub(crate) const MLM: MlmNames = MlmNames {
    dense: "lm_head.dense",
    act_from_config: false,
    norm: "lm_head.layer_norm",
    decoder: "lm_head.decoder",
    bias: &["lm_head.decoder.bias", "lm_head.bias"],
};

static NAMES: TensorNames = TensorNames {
    prefixes: &["roberta."],
    head: HEAD,
    mlm: Some(MLM),
    ..BERT
};

/// Maps a RoBERTa-family `config.json`.
pub fn config(v: &Value) -> Result<EncoderConfig, String> {
    let model_type = v
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("roberta")
        .to_string();
    let f = BertFields::read(v)?;
    let pad = f.pad_token_id.unwrap_or(1);
    let mut cfg = f.into_config(&model_type, &NAMES, pad as usize + 1)?;
    cfg.pad_token_id = Some(pad);
    Ok(cfg)
}
