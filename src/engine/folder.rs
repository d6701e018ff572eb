//! The parts every model folder has (config, weights, tokenizer, length limit,
//! precision and its measured quality), the load options and what a model reports.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::kernels::{self, Precision};
use crate::models::{config, Model, ModelConfig, TokenBatch};
use crate::quality::{Quality, PROBE_TEXTS};
use crate::tokenizer::{Encoded, Tokenizer};
use crate::weights::Weights;

/// Options of `load_with` ([`Embedder::load_with`] and friends).
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Precision of the encoder's matrix products. bf16 and int8 need a path with
    /// such kernels (every x86-64 path has them); elsewhere the model runs in f32
    /// and [`ModelInfo::note`] says why.
    pub dtype: Precision,
    /// Loading fails ([`Error::QualityBelowFloor`]) when the lowest probe cosine to
    /// f32 is under this; `None` uses [`Quality::default_floor`] (0.999 for bf16,
    /// 0.99 for int8).
    pub quality_floor: Option<f32>,
    /// Embedders: keep only the first this-many dimensions of every vector
    /// (Matryoshka), after the model's normalisation.
    pub truncate_dim: Option<usize>,
}

/// What a loaded model is.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// The folder it was loaded from.
    pub path: PathBuf,
    /// The family, as `config.json`'s `model_type` names it.
    pub model_type: String,
    /// Hidden size of the encoder.
    pub hidden_size: usize,
    /// Encoder layers.
    pub layers: usize,
    /// Output width (embedding dimension, or number of labels).
    pub dim: usize,
    /// Longest input, in tokens, before truncation.
    pub max_seq_length: usize,
    /// Precision the encoder's matrix products run in.
    pub dtype: &'static str,
    /// Precision asked for at load (differs from `dtype` after a fallback).
    pub requested_dtype: &'static str,
    /// The ISA path the weights were packed for.
    pub isa: &'static str,
    /// The GEMM microkernel in use, e.g. `avx512bf16 int8 12x32`.
    pub gemm_kernel: String,
    /// For bf16 and int8: agreement with f32 on the probe set, measured at load.
    pub quality: Option<Quality>,
    /// Why the model does not run as asked, when it does not (a fallback).
    pub note: Option<String>,
}

/// The parts every model folder has: config, weights, tokenizer, length limit.
pub(crate) struct Folder {
    pub(crate) dir: PathBuf,
    pub(crate) cfg: ModelConfig,
    pub(crate) model: Model,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) requested: Precision,
    pub(crate) quality: Option<Quality>,
    pub(crate) note: Option<String>,
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl Folder {
    pub(crate) fn open(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "model folder not found"),
            });
        }
        let cfg = config::from_file(&dir.join("config.json"))?;
        let weights = Weights::open_dir(dir)?.with_prefixes(cfg.prefixes());
        let max_len = Self::configured_max_len(dir, &cfg)?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tok_path, max_len)?;
        // Decoder tokenizers may add tokens past the embedding table (Gemma 3's
        // `<image_soft_token>`); ids out of range are refused at run time.
        let tokens = match &cfg {
            ModelConfig::Encoder(_) => tokenizer.vocab_size(),
            ModelConfig::Decoder(_) => tokenizer.base_vocab_size(),
        };
        if tokens > cfg.vocab_size() {
            return Err(Error::Config {
                path: tok_path,
                reason: format!(
                    "the tokenizer has {} tokens but config.json's vocab_size is {}: they belong to different models",
                    tokens,
                    cfg.vocab_size()
                ),
            });
        }
        let kern = kernels::try_active()?;
        let (precision, note) = if opts.dtype != Precision::F32 && kern.lowp.is_none() {
            let note = format!(
                "{} requested, but the {} path has no {} kernels: running f32",
                opts.dtype, kern.isa, opts.dtype
            );
            (Precision::F32, Some(note))
        } else {
            (opts.dtype, None)
        };
        let model = Model::load_with(&cfg, &weights, precision)?;
        let mut folder = Self {
            dir: dir.to_path_buf(),
            cfg,
            model,
            tokenizer,
            requested: opts.dtype,
            quality: None,
            note,
        };
        if precision != Precision::F32 {
            let reference = Model::load_with(&folder.cfg, &weights, Precision::F32)?;
            let quality = folder.probe(&reference)?;
            folder.quality = Some(quality);
            let floor = opts.quality_floor.or(Quality::default_floor(precision));
            if let Some(floor) = floor {
                if quality.min_cosine.is_nan() || quality.min_cosine < floor {
                    return Err(Error::QualityBelowFloor {
                        dtype: precision.name().to_string(),
                        min_cosine: quality.min_cosine,
                        floor,
                    });
                }
            }
        }
        Ok(folder)
    }

    /// Runs the probe texts through `reference` and this folder's model and compares
    /// the mean of each text's last hidden states.
    fn probe(&self, reference: &Model) -> Result<Quality> {
        let enc = self.tokenizer.encode(PROBE_TEXTS, true)?;
        let batch = TokenBatch {
            ids: &enc.ids,
            type_ids: Some(&enc.type_ids),
            offsets: &enc.offsets,
        };
        let h = self.cfg.hidden_size();
        let kern = self.model.kernels();
        let pooled = |hidden: Vec<f32>| {
            let mut out = vec![0.0f32; enc.len() * h];
            for (i, row) in out.chunks_exact_mut(h).enumerate() {
                let span = &hidden[enc.offsets[i] * h..enc.offsets[i + 1] * h];
                (kern.mean_rows)(span, row);
            }
            out
        };
        let want = pooled(reference.forward(&batch)?);
        let got = pooled(self.model.forward(&batch)?);
        Ok(Quality::compare(&want, &got, h))
    }

    /// The current input limit in tokens (special tokens included).
    pub(crate) fn max_len(&self) -> usize {
        self.tokenizer.max_len()
    }

    /// Sets the input limit, within the positions the model has.
    pub(crate) fn set_max_len(&self, n: usize) -> Result<()> {
        let limit = self.cfg.max_tokens();
        if n == 0 || n > limit {
            return Err(Error::InvalidInput(format!(
                "max_seq_length {n} must be in 1..={limit} (the model's positions)"
            )));
        }
        self.tokenizer.set_max_len(n)
    }

    /// `sentence_bert_config.json`'s `max_seq_length`, else the tokenizer config's
    /// `model_max_length`, else the positions the model has.
    fn configured_max_len(dir: &Path, cfg: &ModelConfig) -> Result<usize> {
        let limit = cfg.max_tokens();
        let sbert = dir.join("sentence_bert_config.json");
        if sbert.is_file() {
            let v: serde_json::Value = read_json(&sbert)?;
            if let Some(n) = v.get("max_seq_length").and_then(|n| n.as_u64()) {
                let n = n as usize;
                if n == 0 || n > limit {
                    return Err(Error::Config {
                        path: sbert,
                        reason: format!(
                            "max_seq_length {n} must be in 1..={limit} (the model's positions)"
                        ),
                    });
                }
                return Ok(n);
            }
        }
        let tok_cfg = dir.join("tokenizer_config.json");
        if tok_cfg.is_file() {
            let v: serde_json::Value = read_json(&tok_cfg)?;
            if let Some(n) = v.get("model_max_length").and_then(|n| n.as_u64()) {
                if n > 0 {
                    return Ok((n as usize).min(limit));
                }
            }
        }
        Ok(limit)
    }

    pub(crate) fn info(&self, dim: usize) -> ModelInfo {
        ModelInfo {
            path: self.dir.clone(),
            model_type: self.cfg.model_type().to_string(),
            hidden_size: self.cfg.hidden_size(),
            layers: self.cfg.num_layers(),
            dim,
            max_seq_length: self.max_len(),
            dtype: self.model.precision().name(),
            requested_dtype: self.requested.name(),
            isa: self.model.kernels().isa.name(),
            gemm_kernel: self.gemm_kernel(),
            quality: self.quality,
            note: self.note.clone(),
        }
    }

    fn gemm_kernel(&self) -> String {
        let kern = self.model.kernels();
        let precision = self.model.precision();
        match (precision, kern.lowp) {
            (Precision::F32, _) | (_, None) => {
                format!("{} {precision} {}x{}", kern.isa, kern.mr, kern.nr)
            }
            (_, Some(lp)) => {
                let how = if precision == Precision::Bf16 {
                    lp.bf16_compute
                } else {
                    lp.int8_compute
                };
                format!(
                    "{} {precision} {}x{} ({how})",
                    kern.isa,
                    lp.mr,
                    kernels::LOWP_NR
                )
            }
        }
    }

    /// Hidden states of a validated batch of token ids.
    pub(crate) fn hidden(&self, enc: &Encoded) -> Result<Vec<f32>> {
        self.model.forward(&TokenBatch {
            ids: &enc.ids,
            type_ids: Some(&enc.type_ids),
            offsets: &enc.offsets,
        })
    }
}

/// What a model folder holds: `"reranker"` (a sequence-classification head with
/// one output, or a causal LM with a `LogitScore` module), `"classifier"`
/// (several), `"sparse"` (a SPLADE folder: its `modules.json` has a
/// `SpladePooling`), `"generator"` (a decoder saved as `*ForCausalLM` without
/// sentence-transformers modules) or `"embedder"`. Reads only the configs and
/// the weights' header.
pub fn model_kind(dir: impl AsRef<Path>) -> Result<&'static str> {
    let dir = dir.as_ref();
    let cfg = config::from_file(&dir.join("config.json"))?;
    let weights = Weights::open_dir(dir)?.with_prefixes(cfg.prefixes());
    let modules = dir.join("modules.json");
    if modules.is_file() {
        let v: serde_json::Value = read_json(&modules)?;
        let splade = v.as_array().is_some_and(|m| {
            m.iter().any(|x| {
                x.get("type")
                    .and_then(|t| t.as_str())
                    .is_some_and(|t| t.ends_with("SpladePooling"))
            })
        });
        if splade {
            return Ok("sparse");
        }
    }
    let head = match &cfg {
        ModelConfig::Encoder(c) => c.names.head.out,
        ModelConfig::Decoder(_) => crate::models::decoder::SCORE,
    };
    if let ModelConfig::Decoder(_) = &cfg {
        if crate::models::decoder::yes_no_reranker(dir)?.is_some() {
            return Ok("reranker");
        }
        // A causal LM saved as such, without sentence-transformers modules: text
        // generation.
        let v: serde_json::Value = read_json(&dir.join("config.json"))?;
        let causal = v["architectures"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|a| a.as_str())
            .is_some_and(|a| a.ends_with("ForCausalLM"));
        if causal && !modules.is_file() {
            return Ok("generator");
        }
    }
    Ok(match weights.info(&format!("{head}.weight")) {
        Some((_, shape)) if shape.len() == 2 && shape[0] == 1 => "reranker",
        Some((_, shape)) if shape.len() == 2 => "classifier",
        _ => "embedder",
    })
}

/// Builds a ragged batch from caller-supplied token ids.
pub(crate) fn encoded_from_ids<S: AsRef<[u32]>>(seqs: &[S], max_len: usize) -> Result<Encoded> {
    let mut enc = Encoded {
        offsets: vec![0],
        ..Default::default()
    };
    for (index, s) in seqs.iter().enumerate() {
        let s = s.as_ref();
        if s.is_empty() {
            return Err(Error::InvalidInput(format!("input {index} has no token")));
        }
        if s.len() > max_len {
            return Err(Error::InputTooLong {
                index,
                tokens: s.len(),
                max: max_len,
            });
        }
        enc.ids.extend_from_slice(s);
        enc.offsets.push(enc.ids.len());
    }
    enc.type_ids = vec![0; enc.ids.len()];
    Ok(enc)
}
