//! [`Embedder`]: sentence embeddings from an encoder, pooling and the
//! sentence-transformers modules of the folder.

use std::path::Path;

use ndarray::Array2;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::models::{Encoder, Pooling, PoolingMode};
use crate::tokenizer::{Encoded, Tokenizer};

use super::folder::{encoded_from_ids, read_json, Folder, LoadOptions, ModelInfo};

#[derive(Deserialize)]
struct StModule {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

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
