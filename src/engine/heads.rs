//! [`Classifier`] and [`Reranker`]: an encoder with its family's
//! sequence-classification head.

use std::path::Path;

use ndarray::Array2;

use crate::error::{Error, Result};
use crate::models::decoder::{yes_no_reranker, LogitScore, SCORE};
use crate::models::{ClassifierHead, Model, ModelConfig};
use crate::tokenizer::{Encoded, Tokenizer};
use crate::weights::Weights;

use super::chat::{ChatTemplate, Message};
use super::folder::{Folder, LoadOptions, ModelInfo};

/// How logits come out of the hidden states.
enum Scorer {
    /// A sequence-classification head (encoders; `score` of decoders).
    Head(Box<ClassifierHead>),
    /// A causal LM's token logits at the last position (`LogitScore`).
    Tokens(LogitScore),
}

/// A model with its sequence-classification head (or a causal LM scored by
/// token logits).
struct Head {
    folder: Folder,
    scorer: Scorer,
    labels: Vec<String>,
    /// Pairs laid out by the folder's chat template (causal-LM rerankers with
    /// one), with the template's closing tokens kept through truncation.
    chat: Option<PairChat>,
}

/// A chat template that lays out (query, document) pairs as sentence-transformers
/// does for a causal-LM CrossEncoder: messages with roles `query` and `document`.
struct PairChat {
    template: ChatTemplate,
    /// Tokens every rendering ends with (after the document), restored after
    /// truncation as sentence-transformers' `restore_suffix` does.
    suffix: Vec<u32>,
}

impl PairChat {
    /// Reads the template's closing tokens as sentence-transformers does: render
    /// with two different fillers in every message, keep their common token tail.
    /// A template that ignores the query or the document is refused.
    fn new(template: ChatTemplate, tok: &Tokenizer) -> Result<Self> {
        let render = |q: &str, d: &str| -> Result<Vec<u32>> {
            let text = template.render(
                &[Message::new("query", q), Message::new("document", d)],
                false,
            )?;
            Ok(tok.encode_plain(&[text])?.remove(0))
        };
        let (a, b) = (render("0", "0")?, render("1 2 3 4", "1 2 3 4")?);
        if render("0", "1 2 3 4")? == a || render("1 2 3 4", "0")? == a {
            return Err(Error::Unsupported(
                "the chat template drops the query or the document message; it cannot lay out \
                 (query, document) pairs"
                    .into(),
            ));
        }
        let common = a
            .iter()
            .rev()
            .zip(b.iter().rev())
            .take_while(|(x, y)| x == y)
            .count();
        let suffix = if common < a.len().min(b.len()) {
            a[a.len() - common..].to_vec()
        } else {
            Vec::new()
        };
        Ok(Self { template, suffix })
    }

    /// Token ids of the pairs, each cut to `max_len` (keeping the suffix) with
    /// `truncate`, else refused past it.
    fn encode(&self, tok: &Tokenizer, pairs: &[(&str, &str)], truncate: bool) -> Result<Encoded> {
        let texts = pairs
            .iter()
            .map(|&(q, d)| {
                self.template.render(
                    &[Message::new("query", q), Message::new("document", d)],
                    false,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let max = tok.max_len();
        let mut enc = Encoded {
            offsets: vec![0],
            ..Default::default()
        };
        for (index, mut ids) in tok.encode_plain(&texts)?.into_iter().enumerate() {
            if ids.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "pair {index}: the chat template rendered no token"
                )));
            }
            if ids.len() > max {
                if !truncate || self.suffix.len() >= max {
                    return Err(Error::InputTooLong {
                        index,
                        tokens: ids.len(),
                        max,
                    });
                }
                ids.truncate(max - self.suffix.len());
                ids.extend_from_slice(&self.suffix);
            }
            enc.ids.extend_from_slice(&ids);
            enc.offsets.push(enc.ids.len());
        }
        enc.type_ids = vec![0; enc.ids.len()];
        Ok(enc)
    }
}

impl Head {
    fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        let folder = Folder::open(dir, opts)?;
        let kern = folder.model.kernels();
        let weights = Weights::open_dir(dir)?.with_prefixes(folder.cfg.prefixes());
        let scorer = match (&folder.cfg, yes_no_reranker(dir)?) {
            (ModelConfig::Encoder(cfg), _) => {
                Scorer::Head(Box::new(ClassifierHead::load(cfg, &weights, kern)?))
            }
            (ModelConfig::Decoder(_), Some(ls)) => Scorer::Tokens(ls),
            (ModelConfig::Decoder(cfg), None) => Scorer::Head(Box::new(
                ClassifierHead::last_token(&weights, SCORE, cfg.hidden_size, kern)?,
            )),
        };
        let n = match &scorer {
            Scorer::Head(h) => h.labels(),
            Scorer::Tokens(_) => 1,
        };
        let labels = folder
            .cfg
            .labels()
            .map(|l| l.to_vec())
            .filter(|l| l.len() == n)
            .unwrap_or_else(|| (0..n).map(|i| format!("LABEL_{i}")).collect());
        let chat = match (&scorer, ChatTemplate::from_dir(dir)?) {
            (Scorer::Tokens(_), Some(t)) => Some(PairChat::new(t, &folder.tokenizer)?),
            _ => None,
        };
        Ok(Self {
            folder,
            scorer,
            labels,
            chat,
        })
    }

    /// Token ids of pairs: through the chat template where the model reads its
    /// pairs that way, else the tokenizer's pair encoding.
    fn encode_pairs(&self, pairs: &[(&str, &str)], truncate: bool) -> Result<Encoded> {
        match &self.chat {
            Some(chat) => chat.encode(&self.folder.tokenizer, pairs, truncate),
            None => self.folder.tokenizer.encode_pairs(pairs, truncate),
        }
    }

    fn logits(&self, enc: &Encoded) -> Result<Vec<f32>> {
        let hidden = self.folder.hidden(enc)?;
        let h = self.folder.cfg.hidden_size();
        match &self.scorer {
            Scorer::Head(head) => head.logits(&hidden, h, &enc.offsets),
            Scorer::Tokens(ls) => {
                let Model::Decoder(dec) = &self.folder.model else {
                    unreachable!("token scoring is built for decoders only")
                };
                let ids: Vec<u32> = std::iter::once(ls.true_token_id)
                    .chain(ls.false_token_id)
                    .collect();
                enc.offsets
                    .windows(2)
                    .enumerate()
                    .map(|(i, w)| {
                        if w[1] == w[0] {
                            return Err(Error::InvalidInput(format!("input {i} has no token")));
                        }
                        let last = &hidden[(w[1] - 1) * h..w[1] * h];
                        let l = dec.logits(last, Some(&ids))?;
                        Ok(l[0] - l.get(1).copied().unwrap_or(0.0))
                    })
                    .collect()
            }
        }
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

/// A text classifier (a family's `*ForSequenceClassification` weights and `id2label`).
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

    /// Raw logits of (first, second) text pairs (NLI-style cross-encoders),
    /// `[pairs x labels]`, with the family's pair template.
    pub fn pair_logits(&self, pairs: &[(&str, &str)], truncate: bool) -> Result<Array2<f32>> {
        let enc = self.head.encode_pairs(pairs, truncate)?;
        let out = self.head.logits(&enc)?;
        Ok(
            Array2::from_shape_vec((pairs.len(), self.head.labels.len()), out)
                .expect("one row of logits per pair"),
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

    /// The model under the head.
    pub fn model(&self) -> &Model {
        &self.head.folder.model
    }

    /// The tokenizer (pairs are built with the family's template).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.head.folder.tokenizer
    }

    /// Raw logits for each (query, passage) pair.
    pub fn logits(&self, query: &str, passages: &[&str], truncate: bool) -> Result<Vec<f32>> {
        let pairs: Vec<(&str, &str)> = passages.iter().map(|p| (query, *p)).collect();
        self.pair_logits(&pairs, truncate)
    }

    /// Raw logits of arbitrary (query, passage) pairs.
    pub fn pair_logits(&self, pairs: &[(&str, &str)], truncate: bool) -> Result<Vec<f32>> {
        let enc = self.head.encode_pairs(pairs, truncate)?;
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
