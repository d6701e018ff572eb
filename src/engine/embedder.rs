//! [`Embedder`]: sentence embeddings from an encoder and the sentence-transformers
//! modules of the folder (pooling, Dense, Normalize), with its prompts and
//! Matryoshka truncation.

use std::path::Path;

use ndarray::Array2;

use super::folder::{encoded_from_ids, Folder, LoadOptions, ModelInfo};
use super::modules::{Modules, StConfig};
use crate::error::{Error, Result};
use crate::models::splade::{SparseHead, SparseVector};
use crate::models::{Model, Pooling};
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
    /// A prompt of the model's `config_sentence_transformers.json`, by name,
    /// prepended to every text; `None` uses the model's default prompt, if any.
    pub prompt_name: Option<String>,
    /// A literal prompt prepended to every text (instead of a named one).
    pub prompt: Option<String>,
    /// Keep only the first this-many dimensions (Matryoshka), after the model's
    /// normalisation as sentence-transformers does; `None`: the load-time setting.
    pub truncate_dim: Option<usize>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            normalize: None,
            truncate: true,
            batch_size: 128,
            prompt_name: None,
            prompt: None,
            truncate_dim: None,
        }
    }
}

/// A sentence-embedding model: an encoder of any supported family, then the
/// folder's sentence-transformers modules (pooling, Dense, Normalize) or SPLADE.
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
    modules: Modules,
    st: StConfig,
    truncate_dim: Option<usize>,
    sparse: Option<SparseHead>,
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
    /// Pooling, Dense and Normalize modules, and `config_sentence_transformers.json`
    /// (prompts). Without `modules.json`: mean pooling, no normalisation.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(dir, &LoadOptions::default())
    }

    /// [`Self::load`] with a precision, quality floor and Matryoshka truncation.
    pub fn load_with(dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Self> {
        let dir = dir.as_ref();
        let folder = Folder::open(dir, opts)?;
        let modules = Modules::read(dir, folder.cfg.hidden_size(), folder.model.kernels())?;
        let full = modules.dim(folder.cfg.hidden_size());
        check_truncate_dim(opts.truncate_dim, full)?;
        let sparse = match modules.splade {
            Some((pooling, twice)) => {
                let enc = folder.cfg.encoder("SPLADE pooling")?;
                let weights = Weights::open_dir(dir)?.with_prefixes(enc.names.prefixes);
                let kern = folder.model.kernels();
                Some(SparseHead::load(enc, &weights, kern, pooling, twice)?)
            }
            None => None,
        };
        Ok(Self {
            folder,
            modules,
            st: StConfig::read(dir)?,
            truncate_dim: opts.truncate_dim,
            sparse,
        })
    }

    /// Whether this is a sparse (SPLADE) model: [`Self::encode_sparse`] then, not
    /// the dense calls.
    pub fn is_sparse(&self) -> bool {
        self.sparse.is_some()
    }

    /// Sparse (SPLADE) vectors of `texts` (prompts as in [`Self::encode_with`]),
    /// keeping each vector's `top_k` largest weights when given.
    pub fn encode_sparse<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        opts: &EncodeOptions,
        top_k: Option<usize>,
    ) -> Result<Vec<SparseVector>> {
        let head = self.sparse.as_ref().ok_or_else(|| {
            Error::Unsupported(
                "not a sparse model: its modules.json has no SpladePooling (use encode)".into(),
            )
        })?;
        let prompt = self.prompt_of(opts)?;
        let bs = opts.batch_size.max(1);
        let mut out = Vec::with_capacity(texts.len());
        for start in (0..texts.len()).step_by(bs) {
            let chunk = &texts[start..(start + bs).min(texts.len())];
            let enc = self.tokenize(chunk, prompt, opts.truncate, start)?;
            let hidden = self.folder.hidden(&enc)?;
            out.extend(head.pool(&hidden, self.folder.cfg.hidden_size(), &enc.offsets, top_k)?);
        }
        Ok(out)
    }

    /// Embedding width (after any load-time truncation).
    pub fn dim(&self) -> usize {
        let full = self.full_dim();
        self.truncate_dim.map_or(full, |d| d.min(full))
    }

    /// Width before Matryoshka truncation.
    fn full_dim(&self) -> usize {
        self.modules.dim(self.folder.cfg.hidden_size())
    }

    /// The prompts of `config_sentence_transformers.json`, by name.
    pub fn prompts(&self) -> &std::collections::BTreeMap<String, String> {
        &self.st.prompts
    }

    /// The prompt used when a call names none.
    pub fn default_prompt_name(&self) -> Option<&str> {
        self.st.default_prompt_name.as_deref()
    }

    /// The model's similarity function (`cosine` unless its config says otherwise).
    pub fn similarity_fn_name(&self) -> &str {
        self.st.similarity_fn_name.as_deref().unwrap_or("cosine")
    }

    /// Longest input in tokens (special tokens included) before truncation.
    pub fn max_seq_length(&self) -> usize {
        self.folder.max_len()
    }

    /// Changes the input limit (1 up to the positions the model has) for the calls
    /// that start after this one: longer inputs are cut to it, or refused when a
    /// call does not truncate. sentence-transformers' settable `max_seq_length`.
    pub fn set_max_seq_length(&self, n: usize) -> Result<()> {
        self.folder.set_max_len(n)
    }

    /// Whether vectors are L2-normalised by default.
    pub fn normalizes(&self) -> bool {
        self.modules.normalize
    }

    /// The pooling in use.
    pub fn pooling(&self) -> &Pooling {
        &self.modules.pooling
    }

    /// What this model is.
    pub fn info(&self) -> ModelInfo {
        self.folder.info(self.dim())
    }

    /// The tokenizer (to count or inspect tokens).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.folder.tokenizer
    }

    /// The model (an encoder or a decoder).
    pub fn model(&self) -> &Model {
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
        let prompt = self.prompt_of(opts)?;
        let skip = match prompt {
            Some(p) if !self.modules.pooling.include_prompt() => self.prompt_tokens(p)?,
            _ => 0,
        };
        let dim = self.out_dim(opts)?;
        self.run(texts.len(), dim, |start| {
            let chunk = &texts[start..(start + bs).min(texts.len())];
            let enc = self.tokenize(chunk, prompt, opts.truncate, start)?;
            let rows = self.embed(&enc, opts.normalize, skip, dim)?;
            Ok((enc.len(), rows))
        })
    }

    /// The encoder's last hidden state of every token of each text (special and
    /// prompt tokens included): sentence-transformers' `token_embeddings`, before
    /// pooling, Dense and Normalize; one `[tokens x hidden]` matrix per text.
    pub fn encode_tokens<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        opts: &EncodeOptions,
    ) -> Result<Vec<Array2<f32>>> {
        let bs = opts.batch_size.max(1);
        let prompt = self.prompt_of(opts)?;
        let mut out = Vec::with_capacity(texts.len());
        for start in (0..texts.len()).step_by(bs) {
            let chunk = &texts[start..(start + bs).min(texts.len())];
            let enc = self.tokenize(chunk, prompt, opts.truncate, start)?;
            out.extend(self.token_rows(&enc)?);
        }
        Ok(out)
    }

    /// [`Self::encode_tokens`] of sequences given as token ids (as [`Self::encode_ids`]).
    pub fn encode_ids_tokens<S: AsRef<[u32]>>(
        &self,
        seqs: &[S],
        opts: &EncodeOptions,
    ) -> Result<Vec<Array2<f32>>> {
        let bs = opts.batch_size.max(1);
        let mut out = Vec::with_capacity(seqs.len());
        for start in (0..seqs.len()).step_by(bs) {
            let chunk = &seqs[start..(start + bs).min(seqs.len())];
            let enc = encoded_from_ids(chunk, self.folder.max_len())
                .map_err(|e| shift_index(e, start))?;
            out.extend(self.token_rows(&enc)?);
        }
        Ok(out)
    }

    /// The hidden state of a ragged batch, one matrix per sequence.
    fn token_rows(&self, enc: &Encoded) -> Result<Vec<Array2<f32>>> {
        self.dense_only()?;
        let hidden = self.folder.hidden(enc)?;
        let h = self.folder.cfg.hidden_size();
        Ok(enc
            .offsets
            .windows(2)
            .map(|w| {
                let rows = hidden[w[0] * h..w[1] * h].to_vec();
                Array2::from_shape_vec((w[1] - w[0], h), rows).expect("rows of `hidden` values")
            })
            .collect())
    }

    /// Tokenizes texts `start..` of a call with the prompt prepended (input
    /// indices in errors count from the call's first text).
    fn tokenize<S: AsRef<str>>(
        &self,
        chunk: &[S],
        prompt: Option<&str>,
        truncate: bool,
        start: usize,
    ) -> Result<Encoded> {
        match prompt {
            Some(p) => {
                let with: Vec<String> =
                    chunk.iter().map(|t| format!("{p}{}", t.as_ref())).collect();
                self.folder.tokenizer.encode(&with, truncate)
            }
            None => self.folder.tokenizer.encode(chunk, truncate),
        }
        .map_err(|e| shift_index(e, start))
    }

    /// The prompt text a call asks for: a literal, a name, or the model's default.
    fn prompt_of<'a>(&'a self, opts: &'a EncodeOptions) -> Result<Option<&'a str>> {
        if opts.prompt.is_some() && opts.prompt_name.is_some() {
            return Err(Error::InvalidInput(
                "give a prompt or a prompt_name, not both".into(),
            ));
        }
        if let Some(p) = &opts.prompt {
            return Ok(Some(p.as_str()).filter(|p| !p.is_empty()));
        }
        match opts.prompt_name.as_deref().or(self.default_prompt_name()) {
            None => Ok(None),
            Some(name) => match self.st.prompts.get(name) {
                Some(p) => Ok(Some(p.as_str()).filter(|p| !p.is_empty())),
                None => Err(Error::InvalidInput(format!(
                    "prompt_name `{name}` is not one of the model's prompts ({})",
                    if self.st.prompts.is_empty() {
                        "it has none".to_string()
                    } else {
                        self.st
                            .prompts
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ))),
            },
        }
    }

    /// Tokens of a prompt as sentence-transformers counts them for `include_prompt`:
    /// the prompt tokenized alone, less a trailing special token.
    fn prompt_tokens(&self, prompt: &str) -> Result<usize> {
        let toks = self.folder.tokenizer.tokens(&[prompt], false)?;
        let t = &toks[0];
        Ok(t.len() - usize::from(t.last().is_some_and(|x| x.special)))
    }

    /// The width a call returns, checking its `truncate_dim`.
    fn out_dim(&self, opts: &EncodeOptions) -> Result<usize> {
        let full = self.full_dim();
        check_truncate_dim(opts.truncate_dim, full)?;
        Ok(opts
            .truncate_dim
            .or(self.truncate_dim)
            .map_or(full, |d| d.min(full)))
    }

    /// Embeds sequences given as token ids (special tokens included, as the
    /// tokenizer would produce them); each at most [`Self::max_seq_length`] long.
    /// Prompts do not apply (the ids are the whole input).
    pub fn encode_ids<S: AsRef<[u32]>>(
        &self,
        seqs: &[S],
        opts: &EncodeOptions,
    ) -> Result<Array2<f32>> {
        let bs = opts.batch_size.max(1);
        let dim = self.out_dim(opts)?;
        self.run(seqs.len(), dim, |start| {
            let chunk = &seqs[start..(start + bs).min(seqs.len())];
            let enc = encoded_from_ids(chunk, self.folder.max_len())
                .map_err(|e| shift_index(e, start))?;
            let rows = self.embed(&enc, opts.normalize, 0, dim)?;
            Ok((enc.len(), rows))
        })
    }

    /// Embeds an already-built ragged batch into `[sequences x dim]` values
    /// ([`Self::dim`]: load-time truncation, no prompt).
    pub fn embed_encoded(&self, enc: &Encoded, normalize: Option<bool>) -> Result<Vec<f32>> {
        self.embed(enc, normalize, 0, self.dim())
    }

    /// Refuses dense embedding of a sparse model.
    fn dense_only(&self) -> Result<()> {
        if self.sparse.is_some() {
            return Err(Error::Unsupported(
                "a sparse (SPLADE) model: use encode_sparse".into(),
            ));
        }
        Ok(())
    }

    /// Pooling (leaving out `skip` prompt tokens), Dense layers, the model's
    /// normalisation unless `normalize` is `Some(false)`, truncation to `dim`, and
    /// normalisation of the truncated vector with `Some(true)` (sentence-transformers'
    /// `normalize_embeddings`).
    fn embed(
        &self,
        enc: &Encoded,
        normalize: Option<bool>,
        skip: usize,
        dim: usize,
    ) -> Result<Vec<f32>> {
        self.dense_only()?;
        let hidden = self.folder.hidden(enc)?;
        let kern = self.folder.model.kernels();
        let h = self.folder.cfg.hidden_size();
        let n = enc.len();
        let mut pooled = vec![0.0f32; n * self.modules.pooling.dim(h)];
        self.modules
            .pooling
            .pool(kern, &hidden, h, &enc.offsets, skip, &mut pooled);
        let mut out = self.modules.dense(pooled, n)?;
        let full = self.full_dim();
        if self.modules.normalize && normalize != Some(false) && full > 0 {
            out.chunks_exact_mut(full)
                .for_each(|row| (kern.l2_normalize)(row));
        }
        if dim < full {
            out = out
                .chunks_exact(full)
                .flat_map(|row| row[..dim].iter().copied())
                .collect();
        }
        if normalize == Some(true) && dim > 0 && (dim < full || !self.modules.normalize) {
            out.chunks_exact_mut(dim)
                .for_each(|row| (kern.l2_normalize)(row));
        }
        Ok(out)
    }

    /// Runs `batch(start)` (rows of inputs `start..`, and how many) until `n`
    /// inputs are embedded, into an `n x dim` matrix.
    fn run(
        &self,
        n: usize,
        dim: usize,
        batch: impl Fn(usize) -> Result<(usize, Vec<f32>)>,
    ) -> Result<Array2<f32>> {
        let mut out = Vec::with_capacity(n * dim);
        let mut start = 0;
        while start < n {
            let (done, rows) = batch(start)?;
            out.extend(rows);
            start += done;
        }
        Ok(Array2::from_shape_vec((n, dim), out).expect("one row of `dim` values per input"))
    }
}

/// A Matryoshka truncation must keep at least one dimension.
fn check_truncate_dim(d: Option<usize>, full: usize) -> Result<()> {
    match d {
        Some(0) => Err(Error::InvalidInput(format!(
            "truncate_dim must be in 1..={full}"
        ))),
        _ => Ok(()),
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
