//! `config.json` of a Hugging Face model folder. The family is read from
//! `model_type` (else `architectures`) and mapped by its own file onto an
//! [`EncoderConfig`] or a [`DecoderConfig`]; a family, or an option that changes the
//! math, that rinfer does not run is refused with the field named, never run as
//! something else.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::decoder::DecoderConfig;
use super::encoder::EncoderConfig;
use super::{bert, distilbert, gemma3, gte, llama, modernbert, mpnet, nomic, qwen, roberta};
use crate::error::{Error, Result};
use crate::kernels::Activation;

/// A family's mapping from a parsed `config.json` onto its model description.
#[derive(Clone, Copy)]
enum FamilyFn {
    Encoder(fn(&Value) -> std::result::Result<EncoderConfig, String>),
    Decoder(fn(&Value) -> std::result::Result<DecoderConfig, String>),
}

use FamilyFn::{Decoder as Dec, Encoder as Enc};

/// Every `model_type` rinfer runs, with the prefix of its `architectures` names.
const FAMILIES: &[(&str, &str, FamilyFn)] = &[
    ("bert", "Bert", Enc(bert::config)),
    ("roberta", "Roberta", Enc(roberta::config)),
    ("xlm-roberta", "XLMRoberta", Enc(roberta::config)),
    ("camembert", "Camembert", Enc(roberta::config)),
    ("distilbert", "DistilBert", Enc(distilbert::config)),
    ("mpnet", "MPNet", Enc(mpnet::config)),
    ("modernbert", "ModernBert", Enc(modernbert::config)),
    ("nomic_bert", "NomicBert", Enc(nomic::config)),
    ("new", "New", Enc(gte::config)),
    ("jina_bert", "JinaBert", Enc(super::jina::config)),
    ("qwen2", "Qwen2", Dec(qwen::qwen2)),
    ("qwen3", "Qwen3", Dec(qwen::qwen3)),
    ("llama", "Llama", Dec(llama::llama)),
    ("mistral", "Mistral", Dec(llama::mistral)),
    ("gemma3_text", "Gemma3", Dec(gemma3::gemma3)),
];

/// A model description: an encoder or a decoder.
#[derive(Clone, Debug)]
pub enum ModelConfig {
    /// A BERT-like encoder.
    Encoder(EncoderConfig),
    /// A Llama-like decoder.
    Decoder(DecoderConfig),
}

impl ModelConfig {
    /// The `model_type` it was read from.
    pub fn model_type(&self) -> &str {
        match self {
            Self::Encoder(c) => &c.model_type,
            Self::Decoder(c) => &c.model_type,
        }
    }

    /// Width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        match self {
            Self::Encoder(c) => c.hidden_size,
            Self::Decoder(c) => c.hidden_size,
        }
    }

    /// Layers.
    pub fn num_layers(&self) -> usize {
        match self {
            Self::Encoder(c) => c.num_hidden_layers,
            Self::Decoder(c) => c.num_hidden_layers,
        }
    }

    /// Token vocabulary size.
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Encoder(c) => c.vocab_size,
            Self::Decoder(c) => c.vocab_size,
        }
    }

    /// Longest sequence the model takes.
    pub fn max_tokens(&self) -> usize {
        match self {
            Self::Encoder(c) => c.max_tokens(),
            Self::Decoder(c) => c.max_tokens(),
        }
    }

    /// Prefixes the model's tensor names may carry.
    pub fn prefixes(&self) -> &'static [&'static str] {
        match self {
            Self::Encoder(c) => c.names.prefixes,
            Self::Decoder(_) => super::decoder::PREFIXES,
        }
    }

    /// Class labels by index (`id2label`), when the config has them.
    pub fn labels(&self) -> Option<&[String]> {
        match self {
            Self::Encoder(c) => c.labels.as_deref(),
            Self::Decoder(c) => c.labels.as_deref(),
        }
    }

    /// The encoder description, or an error naming what needs one.
    pub fn encoder(&self, what: &str) -> Result<&EncoderConfig> {
        match self {
            Self::Encoder(c) => Ok(c),
            Self::Decoder(c) => Err(Error::Unsupported(format!(
                "{what} needs an encoder; `{}` is a decoder",
                c.model_type
            ))),
        }
    }
}

/// The `model_type` values rinfer runs, for error messages and docs.
pub fn supported_model_types() -> Vec<&'static str> {
    FAMILIES.iter().map(|f| f.0).collect()
}

/// Reads `config.json`, finds the family and maps it.
pub fn from_file(path: &Path) -> Result<ModelConfig> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| Error::Config {
        path: path.to_path_buf(),
        reason,
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let family = family_of(&v).map_err(bad)?;
    let fail = |e: String| bad(format!("{} config: {e}", family.0));
    match family.2 {
        Enc(f) => {
            let cfg = f(&v).map_err(fail)?;
            cfg.validate().map_err(bad)?;
            Ok(ModelConfig::Encoder(cfg))
        }
        Dec(f) => {
            let cfg = f(&v).map_err(fail)?;
            cfg.validate().map_err(bad)?;
            Ok(ModelConfig::Decoder(cfg))
        }
    }
}

/// `XLM_RoBERTa` and `xlm-roberta` name the same family.
fn norm(model_type: &str) -> String {
    model_type.to_ascii_lowercase().replace('_', "-")
}

fn family_of(
    v: &Value,
) -> std::result::Result<&'static (&'static str, &'static str, FamilyFn), String> {
    let supported = || supported_model_types().join(", ");
    let archs: Vec<&str> = v
        .get("architectures")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match v.get("model_type").and_then(Value::as_str) {
        Some(mt) => FAMILIES
            .iter()
            .find(|f| norm(f.0) == norm(mt))
            .ok_or_else(|| {
                format!(
                    "model_type `{mt}` (architectures {archs:?}) is not supported; rinfer runs {}",
                    supported()
                )
            }),
        None => archs
            .iter()
            .find_map(|a| {
                // The longest matching prefix: `XLMRobertaModel` is not `Roberta...`.
                FAMILIES
                    .iter()
                    .filter(|f| a.starts_with(f.1))
                    .max_by_key(|f| f.1.len())
            })
            .ok_or_else(|| {
                format!(
                    "no `model_type`, and architectures {archs:?} name no supported family; rinfer runs {}",
                    supported()
                )
            }),
    }
}

/// serde defaults the family configs share.
pub(crate) mod defaults {
    pub fn gelu() -> String {
        "gelu".into()
    }
    pub fn yes() -> bool {
        true
    }
    pub fn eps_1e12() -> f64 {
        1e-12
    }
}

/// Parses the whole config as `T` (the fields a family reads).
pub(crate) fn parse<T: for<'de> Deserialize<'de>>(v: &Value) -> std::result::Result<T, String> {
    T::deserialize(v).map_err(|e| e.to_string())
}

/// Refuses options under which the encoder would compute something else.
pub(crate) fn refuse_flags(v: &Value, flags: &[&str]) -> std::result::Result<(), String> {
    for flag in flags {
        if v.get(*flag).and_then(Value::as_bool) == Some(true) {
            return Err(format!("`{flag}: true` is not supported (an encoder only)"));
        }
    }
    Ok(())
}

/// The feed-forward activation named by `hidden_act` / `activation`.
pub(crate) fn activation(name: &str) -> std::result::Result<Activation, String> {
    match name {
        "gelu" => Ok(Activation::GeluErf),
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
        "relu" => Ok(Activation::Relu),
        other => Err(format!(
            "activation `{other}` is not supported (gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu)"
        )),
    }
}

/// Class labels in index order from `id2label`, when the config has them.
pub(crate) fn labels(id2label: &Option<BTreeMap<String, String>>) -> Option<Vec<String>> {
    let map = id2label.as_ref()?;
    let mut pairs: Vec<(usize, &String)> = map
        .iter()
        .filter_map(|(k, v)| k.parse().ok().map(|i| (i, v)))
        .collect();
    pairs.sort();
    Some(pairs.into_iter().map(|(_, v)| v.clone()).collect())
}
