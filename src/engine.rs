//! What users load and call: [`Embedder`] (sentence embeddings), [`Classifier`]
//! (sequence classification) and [`Reranker`] (cross-encoder scoring), each built
//! from a Hugging Face / sentence-transformers model folder of any supported family
//! (`config.json`'s `model_type` decides; see [`crate::models::config`]).

use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::kernels::{self, Precision};
use crate::models::{
    config, ClassifierHead, Encoder, EncoderConfig, Pooling, PoolingMode, TokenBatch,
};
use crate::quality::{Quality, PROBE_TEXTS};
use crate::tokenizer::{Encoded, Tokenizer};
use crate::weights::Weights;

/// Options of [`Embedder::encode_with`].
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// L2-normalise the vectors; `None` follows the model (its `Normalize` module).
    pub normalize: Option<bool>,
    /// Cut inputs longer than the model's limit (else [`Error::InputTooLong`]).
    pub truncate: bool,
    /// Inputs per engine batch (the batch is ragged: no padding either way).
    pub batch_size: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            normalize: None,
            truncate: true,
            batch_size: 128,
        }
    }
}

/// Options of `load_with` ([`Embedder::load_with`] and friends).
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Precision of the encoder's matrix products. bf16 and int8 need a path with
    /// such kernels (AVX512-BF16 + VNNI); elsewhere the model runs in f32 and
    /// [`ModelInfo::note`] says why.
    pub dtype: Precision,
    /// Loading fails ([`Error::QualityBelowFloor`]) when the lowest probe cosine to
    /// f32 is under this; `None` uses [`Quality::default_floor`] (0.999 for bf16,
    /// 0.99 for int8).
    pub quality_floor: Option<f32>,
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

#[derive(Deserialize)]
struct StModule {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The parts every model folder has: config, weights, tokenizer, length limit.
struct Folder {
    dir: PathBuf,
    cfg: EncoderConfig,
    model: Encoder,
    tokenizer: Tokenizer,
    max_len: usize,
    requested: Precision,
    quality: Option<Quality>,
    note: Option<String>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
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
    fn open(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "model folder not found"),
            });
        }
        let cfg = config::from_file(&dir.join("config.json"))?;
        let weights =
            Weights::open(dir.join("model.safetensors"))?.with_prefixes(cfg.names.prefixes);
        let max_len = Self::max_len(dir, &cfg)?;
        let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"), max_len)?;
        let kern = kernels::try_active()?;
        let (precision, note) = if opts.dtype != Precision::F32 && kern.lowp.is_none() {
            let note = format!(
                "{} requested, but the {} path has no {} kernels (they need AVX512-BF16 and VNNI): running f32",
                opts.dtype, kern.isa, opts.dtype
            );
            (Precision::F32, Some(note))
        } else {
            (opts.dtype, None)
        };
        let model = Encoder::load_with(&cfg, &weights, precision)?;
        let mut folder = Self {
            dir: dir.to_path_buf(),
            cfg,
            model,
            tokenizer,
            max_len,
            requested: opts.dtype,
            quality: None,
            note,
        };
        if precision != Precision::F32 {
            let reference = Encoder::load_with(&folder.cfg, &weights, Precision::F32)?;
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
    fn probe(&self, reference: &Encoder) -> Result<Quality> {
        let enc = self.tokenizer.encode(PROBE_TEXTS, true)?;
        let batch = TokenBatch {
            ids: &enc.ids,
            type_ids: Some(&enc.type_ids),
            offsets: &enc.offsets,
        };
        let h = self.cfg.hidden_size;
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

    /// `sentence_bert_config.json`'s `max_seq_length`, else the tokenizer config's
    /// `model_max_length`, else the positions the model has.
    fn max_len(dir: &Path, cfg: &EncoderConfig) -> Result<usize> {
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

    fn info(&self, dim: usize) -> ModelInfo {
        ModelInfo {
            path: self.dir.clone(),
            model_type: self.cfg.model_type.clone(),
            hidden_size: self.cfg.hidden_size,
            layers: self.cfg.num_hidden_layers,
            dim,
            max_seq_length: self.max_len,
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
        let (mr, nr) = match (self.model.precision(), kern.lowp) {
            (Precision::F32, _) | (_, None) => (kern.mr, kern.nr),
            (_, Some(lp)) => (lp.mr, kernels::LOWP_NR),
        };
        format!("{} {} {mr}x{nr}", kern.isa, self.model.precision())
    }

    /// Hidden states of a validated batch of token ids.
    fn hidden(&self, enc: &Encoded) -> Result<Vec<f32>> {
        self.model.forward(&TokenBatch {
            ids: &enc.ids,
            type_ids: Some(&enc.type_ids),
            offsets: &enc.offsets,
        })
    }
}

/// What a model folder holds, as its family's head tensors tell: `"reranker"` (a
/// sequence-classification head with one output), `"classifier"` (several) or
/// `"embedder"` (none). Reads only `config.json` and the weights' header.
pub fn model_kind(dir: impl AsRef<Path>) -> Result<&'static str> {
    let dir = dir.as_ref();
    let cfg = config::from_file(&dir.join("config.json"))?;
    let weights = Weights::open(dir.join("model.safetensors"))?.with_prefixes(cfg.names.prefixes);
    Ok(
        match weights.info(&format!("{}.weight", cfg.names.head.out)) {
            Some((_, shape)) if shape.len() == 2 && shape[0] == 1 => "reranker",
            Some((_, shape)) if shape.len() == 2 => "classifier",
            _ => "embedder",
        },
    )
}

/// Builds a ragged batch from caller-supplied token ids.
fn encoded_from_ids<S: AsRef<[u32]>>(seqs: &[S], max_len: usize) -> Result<Encoded> {
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

/// A sentence-embedding model (BERT encoder + pooling + optional normalisation).
///
/// The README's example (needs `make model` first, as `make test` does):
/// ```
/// let model = rinfer::Embedder::load("models/all-MiniLM-L6-v2")?;
/// let vectors = model.encode(&["The cat sits on the mat.", "A cat rests on a rug."])?;
/// assert_eq!(vectors.dim(), (2, 384));
/// let cosine = vectors.row(0).dot(&vectors.row(1)); // vectors are L2-normalised
/// println!("cosine similarity: {cosine:.3}");
/// # assert!(cosine > 0.5);
/// # Ok::<(), rinfer::Error>(())
/// ```
pub struct Embedder {
    folder: Folder,
    pooling: Pooling,
    normalize: bool,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("info", &self.info())
            .finish()
    }
}

impl Embedder {
    /// Loads a model folder: `config.json`, `model.safetensors`, `tokenizer.json`,
    /// and when present `sentence_bert_config.json`, `modules.json` with its
    /// pooling config and Normalize module. Without `modules.json`: mean pooling,
    /// no normalisation.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(dir, &LoadOptions::default())
    }

    /// [`Self::load`] with a precision and quality floor.
    pub fn load_with(dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Self> {
        let dir = dir.as_ref();
        let folder = Folder::open(dir, opts)?;
        let (pooling, normalize) = Self::read_modules(dir, folder.cfg.hidden_size)?;
        Ok(Self {
            folder,
            pooling,
            normalize,
        })
    }

    fn read_modules(dir: &Path, hidden: usize) -> Result<(Pooling, bool)> {
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok((Pooling::new(vec![PoolingMode::Mean])?, false));
        }
        let modules: Vec<StModule> = read_json(&modules_path)?;
        let mut pooling = None;
        let mut normalize = false;
        for m in &modules {
            let kind = m.kind.rsplit('.').next().unwrap_or("");
            match kind {
                "Transformer" => {}
                "Pooling" => {
                    pooling = Some(Pooling::from_file(
                        &dir.join(&m.path).join("config.json"),
                        hidden,
                    )?)
                }
                "Normalize" => normalize = true,
                other => {
                    return Err(Error::Config {
                        path: modules_path.clone(),
                        reason: format!("module type `{other}` is not supported"),
                    })
                }
            }
        }
        let pooling = match pooling {
            Some(p) => p,
            None => Pooling::new(vec![PoolingMode::Mean])?,
        };
        Ok((pooling, normalize))
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.pooling.dim(self.folder.cfg.hidden_size)
    }

    /// Longest input in tokens (special tokens included) before truncation.
    pub fn max_seq_length(&self) -> usize {
        self.folder.max_len
    }

    /// Whether vectors are L2-normalised by default.
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// The pooling in use.
    pub fn pooling(&self) -> &Pooling {
        &self.pooling
    }

    /// What this model is.
    pub fn info(&self) -> ModelInfo {
        self.folder.info(self.dim())
    }

    /// The tokenizer (to count or inspect tokens).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.folder.tokenizer
    }

    /// The encoder.
    pub fn model(&self) -> &Encoder {
        &self.folder.model
    }

    /// Embeds texts with default options: one row per text.
    pub fn encode<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Array2<f32>> {
        self.encode_with(texts, &EncodeOptions::default())
    }

    /// Embeds texts.
    pub fn encode_with<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        opts: &EncodeOptions,
    ) -> Result<Array2<f32>> {
        let bs = opts.batch_size.max(1);
        self.run(texts.len(), opts, |start| {
            let chunk = &texts[start..(start + bs).min(texts.len())];
            self.folder
                .tokenizer
                .encode(chunk, opts.truncate)
                .map_err(|e| shift_index(e, start))
        })
    }

    /// Embeds sequences given as token ids (special tokens included, as the
    /// tokenizer would produce them); each at most [`Self::max_seq_length`] long.
    pub fn encode_ids<S: AsRef<[u32]>>(
        &self,
        seqs: &[S],
        opts: &EncodeOptions,
    ) -> Result<Array2<f32>> {
        let bs = opts.batch_size.max(1);
        self.run(seqs.len(), opts, |start| {
            let chunk = &seqs[start..(start + bs).min(seqs.len())];
            encoded_from_ids(chunk, self.folder.max_len).map_err(|e| shift_index(e, start))
        })
    }

    /// Embeds an already-built ragged batch into `[sequences x dim]` values.
    pub fn embed_encoded(&self, enc: &Encoded, normalize: Option<bool>) -> Result<Vec<f32>> {
        let hidden = self.folder.hidden(enc)?;
        let kern = self.folder.model.kernels();
        let dim = self.dim();
        let mut out = vec![0.0f32; enc.len() * dim];
        self.pooling.pool(
            kern,
            &hidden,
            self.folder.cfg.hidden_size,
            &enc.offsets,
            &mut out,
        );
        if normalize.unwrap_or(self.normalize) && dim > 0 {
            out.chunks_exact_mut(dim)
                .for_each(|row| (kern.l2_normalize)(row));
        }
        Ok(out)
    }

    fn run(
        &self,
        n: usize,
        opts: &EncodeOptions,
        batch: impl Fn(usize) -> Result<Encoded>,
    ) -> Result<Array2<f32>> {
        let dim = self.dim();
        let mut out = Vec::with_capacity(n * dim);
        let mut start = 0;
        while start < n {
            let enc = batch(start)?;
            out.extend(self.embed_encoded(&enc, opts.normalize)?);
            start += enc.len();
        }
        Ok(Array2::from_shape_vec((n, dim), out).expect("one row of `dim` values per input"))
    }
}

/// Rebases an input index in an error from a chunk to the whole request.
fn shift_index(e: Error, start: usize) -> Error {
    match e {
        Error::InputTooLong { index, tokens, max } => Error::InputTooLong {
            index: index + start,
            tokens,
            max,
        },
        other => other,
    }
}

/// An encoder with its family's sequence-classification head.
struct Head {
    folder: Folder,
    head: ClassifierHead,
    labels: Vec<String>,
}

impl Head {
    fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        let folder = Folder::open(dir, opts)?;
        let weights =
            Weights::open(dir.join("model.safetensors"))?.with_prefixes(folder.cfg.names.prefixes);
        let head = ClassifierHead::load(&folder.cfg, &weights, folder.model.kernels())?;
        let n = head.labels();
        let labels = folder
            .cfg
            .labels
            .clone()
            .filter(|l| l.len() == n)
            .unwrap_or_else(|| (0..n).map(|i| format!("LABEL_{i}")).collect());
        Ok(Self {
            folder,
            head,
            labels,
        })
    }

    fn logits(&self, enc: &Encoded) -> Result<Vec<f32>> {
        let hidden = self.folder.hidden(enc)?;
        self.head
            .logits(&hidden, self.folder.cfg.hidden_size, &enc.offsets)
    }
}

/// One label with its probability.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Index of the label.
    pub index: usize,
    /// The label (`id2label`, else `LABEL_i`).
    pub label: String,
    /// Softmax probability.
    pub score: f32,
}

/// A text classifier (`BertForSequenceClassification` weights and `id2label`).
pub struct Classifier {
    head: Head,
}

impl Classifier {
    /// Loads a classification model folder.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(dir, &LoadOptions::default())
    }

    /// [`Self::load`] with a precision and quality floor.
    pub fn load_with(dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Self> {
        Ok(Self {
            head: Head::load(dir.as_ref(), opts)?,
        })
    }

    /// Labels in index order.
    pub fn labels(&self) -> &[String] {
        &self.head.labels
    }

    /// What this model is.
    pub fn info(&self) -> ModelInfo {
        self.head.folder.info(self.head.labels.len())
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.head.folder.tokenizer
    }

    /// Raw logits, `[texts x labels]`.
    pub fn logits<S: AsRef<str> + Sync>(&self, texts: &[S], truncate: bool) -> Result<Array2<f32>> {
        let enc = self.head.folder.tokenizer.encode(texts, truncate)?;
        let out = self.head.logits(&enc)?;
        Ok(
            Array2::from_shape_vec((texts.len(), self.head.labels.len()), out)
                .expect("one row of logits per text"),
        )
    }

    /// Every label with its probability, best first, for each text.
    pub fn predict<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<Prediction>>> {
        let logits = self.logits(texts, true)?;
        let kern = self.head.folder.model.kernels();
        Ok(logits
            .rows()
            .into_iter()
            .map(|row| {
                let mut p = row.to_vec();
                (kern.softmax)(&mut p, None);
                let mut preds: Vec<Prediction> = p
                    .into_iter()
                    .enumerate()
                    .map(|(index, score)| Prediction {
                        index,
                        label: self.head.labels[index].clone(),
                        score,
                    })
                    .collect();
                preds.sort_by(|a, b| b.score.total_cmp(&a.score));
                preds
            })
            .collect())
    }
}

/// One scored passage of a rerank.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranked {
    /// Position of the passage in the request.
    pub index: usize,
    /// Relevance: the sigmoid of the model's logit.
    pub score: f32,
    /// The raw logit.
    pub logit: f32,
}

/// A cross-encoder reranker: scores (query, passage) pairs (one-logit head).
pub struct Reranker {
    head: Head,
}

impl Reranker {
    /// Loads a cross-encoder folder (a sequence-classification model with one label).
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(dir, &LoadOptions::default())
    }

    /// [`Self::load`] with a precision and quality floor.
    pub fn load_with(dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Self> {
        let head = Head::load(dir.as_ref(), opts)?;
        if head.labels.len() != 1 {
            return Err(Error::Unsupported(format!(
                "a reranker needs one output logit, this model has {}",
                head.labels.len()
            )));
        }
        Ok(Self { head })
    }

    /// What this model is.
    pub fn info(&self) -> ModelInfo {
        self.head.folder.info(1)
    }

    /// The tokenizer (pairs are built with the family's template).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.head.folder.tokenizer
    }

    /// Raw logits for each (query, passage) pair.
    pub fn logits(&self, query: &str, passages: &[&str], truncate: bool) -> Result<Vec<f32>> {
        let pairs: Vec<(&str, &str)> = passages.iter().map(|p| (query, *p)).collect();
        let enc = self.head.folder.tokenizer.encode_pairs(&pairs, truncate)?;
        self.head.logits(&enc)
    }

    /// Passages by relevance to `query`, best first; `top_k` keeps that many.
    pub fn rerank(
        &self,
        query: &str,
        passages: &[&str],
        top_k: Option<usize>,
    ) -> Result<Vec<Ranked>> {
        let logits = self.logits(query, passages, true)?;
        let mut ranked: Vec<Ranked> = logits
            .into_iter()
            .enumerate()
            .map(|(index, logit)| Ranked {
                index,
                score: 1.0 / (1.0 + (-logit).exp()),
                logit,
            })
            .collect();
        ranked.sort_by(|a, b| b.logit.total_cmp(&a.logit));
        ranked.truncate(top_k.unwrap_or(usize::MAX));
        Ok(ranked)
    }
}
