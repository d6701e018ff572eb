//! A thin front over the `tokenizers` crate: loads `tokenizer.json`, truncates to the
//! model's limit (or refuses long inputs), never pads, and returns ragged batches.

use std::path::Path;
use std::sync::{Arc, RwLock};

use tokenizers::{EncodeInput, PostProcessor, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};

/// Token ids of several inputs, concatenated without padding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids of every input, one after the other (special tokens included).
    pub ids: Vec<u32>,
    /// Token type ids, aligned with `ids`.
    pub type_ids: Vec<u32>,
    /// Input `i` is `ids[offsets[i]..offsets[i + 1]]`.
    pub offsets: Vec<usize>,
}

impl Encoded {
    /// Number of inputs.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether there is no input.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token count of input `i`.
    pub fn tokens(&self, i: usize) -> usize {
        self.offsets[i + 1] - self.offsets[i]
    }

    /// Token ids of input `i`.
    pub fn ids_of(&self, i: usize) -> &[u32] {
        &self.ids[self.offsets[i]..self.offsets[i + 1]]
    }
}

/// One token of [`Tokenizer::tokens`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// Vocabulary id.
    pub id: u32,
    /// The token as the vocabulary spells it (`##ing` for a continuation).
    pub text: String,
    /// Added by the tokenizer (`[CLS]`, `[SEP]`), not part of the input.
    pub special: bool,
    /// Character span `start..stop` of the input it covers (none for special tokens).
    pub span: Option<(usize, usize)>,
}

/// `tokenizer.json` with rinfer's policy: truncation to `max_len`, no padding.
pub struct Tokenizer {
    /// The truncating tokenizer with its limit, swapped whole by
    /// [`Self::set_max_len`] (a call reads one consistent pair).
    limited: RwLock<Arc<Limited>>,
    whole: tokenizers::Tokenizer,
}

/// A tokenizer that cuts inputs to `max_len` tokens.
struct Limited {
    tk: tokenizers::Tokenizer,
    max_len: usize,
}

impl Clone for Tokenizer {
    fn clone(&self) -> Self {
        Self {
            limited: RwLock::new(self.limited()),
            whole: self.whole.clone(),
        }
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("max_len", &self.max_len())
            .finish()
    }
}

/// `whole` with truncation to `max_len` tokens (special tokens included).
fn limited(whole: &tokenizers::Tokenizer, max_len: usize) -> Result<Limited> {
    // tokenizers subtracts these from the limit without checking (an overflow).
    let specials = whole
        .get_post_processor()
        .map_or(0, |p| p.added_tokens(false));
    if max_len < specials {
        return Err(Error::InvalidInput(format!(
            "a limit of {max_len} tokens is below the {specials} special tokens every input gets"
        )));
    }
    let mut tk = whole.clone();
    tk.with_truncation(Some(TruncationParams {
        max_length: max_len,
        strategy: TruncationStrategy::LongestFirst,
        ..Default::default()
    }))
    .map_err(tok_err)?;
    Ok(Limited { tk, max_len })
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Loads `tokenizer.json`; inputs are cut to `max_len` tokens (specials included).
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "tokenizer file not found",
                ),
            });
        }
        let mut whole = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: format!("cannot load tokenizer: {e}"),
        })?;
        whole.with_padding(None);
        whole.with_truncation(None).map_err(tok_err)?;
        Ok(Self {
            limited: RwLock::new(Arc::new(limited(&whole, max_len).map_err(|e| match e {
                Error::InvalidInput(reason) => Error::Config {
                    path: path.to_path_buf(),
                    reason,
                },
                other => other,
            })?)),
            whole,
        })
    }

    /// The token limit.
    pub fn max_len(&self) -> usize {
        self.limited().max_len
    }

    /// Changes the token limit for the calls that start after this one.
    pub fn set_max_len(&self, max_len: usize) -> Result<()> {
        let new = Arc::new(limited(&self.whole, max_len)?);
        *self.limited.write().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }

    fn limited(&self) -> Arc<Limited> {
        self.limited
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Tokens the tokenizer can produce (its vocabulary and added tokens).
    pub fn vocab_size(&self) -> usize {
        self.whole.get_vocab_size(true)
    }

    /// The model vocabulary's size, without added tokens.
    pub fn base_vocab_size(&self) -> usize {
        self.whole.get_vocab_size(false)
    }

    /// Tokenizes texts. With `truncate` false, an input over the limit is an
    /// [`Error::InputTooLong`] naming it.
    pub fn encode<S: AsRef<str>>(&self, texts: &[S], truncate: bool) -> Result<Encoded> {
        let inputs: Vec<EncodeInput> = texts.iter().map(|t| t.as_ref().into()).collect();
        self.run(inputs, truncate)
    }

    /// Each text's tokens with their text, whether they are special (`[CLS]`,
    /// `[SEP]`) and their character span in the input (`None` for special tokens).
    pub fn tokens<S: AsRef<str>>(&self, texts: &[S], truncate: bool) -> Result<Vec<Vec<Token>>> {
        let lim = self.limited();
        let max_len = lim.max_len;
        let tk = if truncate { &lim.tk } else { &self.whole };
        let inputs: Vec<EncodeInput> = texts.iter().map(|t| t.as_ref().into()).collect();
        let encodings =
            crate::kernels::threads::install(|| tk.encode_batch_char_offsets(inputs, true))
                .map_err(tok_err)?;
        encodings
            .iter()
            .enumerate()
            .map(|(index, e)| {
                if e.len() > max_len {
                    return Err(Error::InputTooLong {
                        index,
                        tokens: e.len(),
                        max: max_len,
                    });
                }
                Ok((0..e.len())
                    .map(|i| {
                        let special = e.get_special_tokens_mask()[i] == 1;
                        let (start, stop) = e.get_offsets()[i];
                        Token {
                            id: e.get_ids()[i],
                            text: e.get_tokens()[i].clone(),
                            special,
                            span: (!special).then_some((start, stop)),
                        }
                    })
                    .collect())
            })
            .collect()
    }

    /// Token ids of texts as they are: no special tokens added, no length limit
    /// (for text a chat template already laid out).
    pub fn encode_plain<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<EncodeInput> = texts.iter().map(|t| t.as_ref().into()).collect();
        let encodings =
            crate::kernels::threads::install(|| self.whole.encode_batch_fast(inputs, false))
                .map_err(tok_err)?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// The text of token ids (special tokens left out with `skip_special`).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.whole.decode(ids, skip_special).map_err(tok_err)
    }

    /// The text of a token id in the vocabulary (`<0xE3>` for a byte-fallback
    /// piece, `Ġthe` for byte-level BPE), if the tokenizer has it.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.whole.id_to_token(id)
    }

    /// The id of a token given by its text, if the tokenizer has it.
    pub fn token_of(&self, text: &str) -> Option<u32> {
        self.whole.token_to_id(text)
    }

    /// Tokenizes (first, second) pairs, as cross-encoders read them. Truncation
    /// is tokenizers' `LongestFirst`, applied here to the pair's tokens: tokenizers
    /// itself builds every combination of the two texts' overflowing windows,
    /// quadratic in their lengths (seconds and gigabytes for long texts).
    pub fn encode_pairs(&self, pairs: &[(&str, &str)], truncate: bool) -> Result<Encoded> {
        let inputs: Vec<EncodeInput> = pairs.iter().map(|&(a, b)| (a, b).into()).collect();
        if !truncate {
            return self.run(inputs, false);
        }
        let max_len = self.max_len();
        let encodings =
            crate::kernels::threads::install(|| self.whole.encode_batch_fast(inputs, true))
                .map_err(tok_err)?;
        let mut out = Encoded {
            offsets: vec![0],
            ..Default::default()
        };
        for e in &encodings {
            let seq = e.get_sequence_ids();
            let count = |s: usize| seq.iter().filter(|&&x| x == Some(s)).count();
            let (n1, n2) = (count(0), count(1));
            let specials = e.len() - n1 - n2;
            let budget = max_len.checked_sub(specials).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "a limit of {max_len} tokens leaves no room for a pair's {specials} special tokens"
                ))
            })?;
            let (k1, k2) = longest_first(n1, n2, budget);
            let (mut kept1, mut kept2) = (0, 0);
            for ((&id, &type_id), s) in e.get_ids().iter().zip(e.get_type_ids()).zip(seq) {
                let keep = match s {
                    Some(0) => {
                        kept1 += 1;
                        kept1 <= k1
                    }
                    Some(_) => {
                        kept2 += 1;
                        kept2 <= k2
                    }
                    None => true,
                };
                if keep {
                    out.ids.push(id);
                    out.type_ids.push(type_id);
                }
            }
            out.offsets.push(out.ids.len());
        }
        Ok(out)
    }

    fn run(&self, inputs: Vec<EncodeInput>, truncate: bool) -> Result<Encoded> {
        let lim = self.limited();
        let max_len = lim.max_len;
        let tk = if truncate { &lim.tk } else { &self.whole };
        // On rinfer's pool, so `RINFER_NUM_THREADS` bounds tokenization too.
        let encodings = crate::kernels::threads::install(|| tk.encode_batch_fast(inputs, true))
            .map_err(tok_err)?;
        let total: usize = encodings.iter().map(|e| e.len()).sum();
        let mut out = Encoded {
            ids: Vec::with_capacity(total),
            type_ids: Vec::with_capacity(total),
            offsets: Vec::with_capacity(encodings.len() + 1),
        };
        out.offsets.push(0);
        for (index, e) in encodings.iter().enumerate() {
            if e.len() > max_len {
                return Err(Error::InputTooLong {
                    index,
                    tokens: e.len(),
                    max: max_len,
                });
            }
            out.ids.extend_from_slice(e.get_ids());
            out.type_ids.extend_from_slice(e.get_type_ids());
            out.offsets.push(out.ids.len());
        }
        Ok(out)
    }
}

/// Tokens kept of each text of a pair of `n1` and `n2` tokens under a budget of
/// `max`: tokenizers' `LongestFirst` (`utils::truncation::truncate_encodings`).
fn longest_first(n1: usize, n2: usize, max: usize) -> (usize, usize) {
    if n1 + n2 <= max {
        return (n1, n2);
    }
    let short = n1.min(n2);
    let mut keep = if short > max {
        (short, short)
    } else {
        (short, short.max(max - short))
    };
    if keep.0 + keep.1 > max {
        keep = (max / 2, max / 2 + max % 2);
    }
    if n1 > n2 {
        (keep.1, keep.0)
    } else {
        keep
    }
}
