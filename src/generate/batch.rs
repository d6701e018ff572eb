//! Continuous batching: sequences join and leave between steps; each step runs
//! every active sequence through the decoder together (one matrix product per
//! weight), prompts in chunks of at most `prefill_chunk` tokens so a long prompt
//! never stalls the others' decoding for more than a chunk, and decoding
//! sequences one token each. Each sequence's KV cache reserves its blocks in the
//! batch's [`KvPool`] when it joins; a finished or cancelled sequence gives them
//! back at once.

use std::sync::Arc;

use super::detok::Detokenizer;
use super::sampler::{Sampler, SamplingParams};
use crate::error::{Error, Result};
use crate::models::kv_cache::{KvCache, KvPool};
use crate::models::Decoder;
use crate::tokenizer::Tokenizer;

/// Why a sequence ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_tokens` reached (or the model's length).
    Length,
    /// An end-of-sequence token, a stop token or a stop string.
    Stop,
    /// Cancelled by its caller.
    Cancelled,
}

impl FinishReason {
    /// OpenAI's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Length => "length",
            Self::Stop => "stop",
            Self::Cancelled => "cancelled",
        }
    }
}

/// What one step produced for one sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The sequence.
    pub seq: u64,
    /// The token generated (none for a step that ended a sequence without one).
    pub token: Option<u32>,
    /// Text the token completed (stop strings and what follows them left out).
    pub text: String,
    /// Log-probability of the token, with alternatives when asked for.
    pub logprob: Option<(f32, Vec<(u32, f32)>)>,
    /// Set on the sequence's last event.
    pub finish: Option<FinishReason>,
}

struct Sequence {
    id: u64,
    /// Prompt and generated tokens.
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Tokens of the prompt already in the cache.
    fed: usize,
    cache: KvCache,
    sampler: Sampler,
    detok: Detokenizer,
    /// Emitted text held back because it may begin a stop string.
    held: String,
    stops: Vec<u32>,
}

/// Sequences decoding together.
pub struct Batch {
    seqs: Vec<Sequence>,
    next_id: u64,
    /// Prompt tokens one sequence feeds per step at most.
    pub prefill_chunk: usize,
    /// The model's end-of-sequence tokens.
    eos: Vec<u32>,
    /// Where the sequences' caches take their blocks.
    pool: Arc<KvPool>,
}

impl Batch {
    /// An empty batch for a model whose end-of-sequence tokens are `eos`, its
    /// caches in `pool` (made for the same model).
    pub fn new(eos: Vec<u32>, pool: Arc<KvPool>) -> Self {
        Self {
            seqs: Vec::new(),
            next_id: 0,
            prefill_chunk: 512,
            eos,
            pool,
        }
    }

    /// The pool the caches take their blocks from.
    pub fn pool(&self) -> &Arc<KvPool> {
        &self.pool
    }

    /// Active sequences.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// Whether no sequence is active.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Positions the active sequences' caches reserve.
    pub fn reserved_positions(&self) -> usize {
        self.seqs.iter().map(|s| s.cache.capacity()).sum()
    }

    /// Adds a sequence; returns its id. Its cache reserves the blocks of the prompt
    /// plus `max_tokens` positions (fewer when the model's length ends it first),
    /// the pool growing when it has too few (see [`KvPool::cache`]).
    pub fn add(
        &mut self,
        model: &Decoder,
        prompt: Vec<u32>,
        params: SamplingParams,
    ) -> Result<u64> {
        let cfg = model.config();
        params.validate(cfg.vocab_size)?;
        if prompt.is_empty() {
            return Err(Error::InvalidInput("the prompt has no token".into()));
        }
        if let Some(&t) = prompt.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(Error::InvalidInput(format!(
                "prompt token {t} is outside the vocabulary ({})",
                cfg.vocab_size
            )));
        }
        let limit = cfg.max_tokens();
        if prompt.len() >= limit {
            return Err(Error::InputTooLong {
                index: 0,
                tokens: prompt.len(),
                max: limit - 1,
            });
        }
        if self.pool.shape() != model.kv_shape() {
            return Err(Error::InvalidInput(format!(
                "the batch's KV pool holds {:?} per position, the model {:?}",
                self.pool.shape(),
                model.kv_shape()
            )));
        }
        let capacity = prompt.len().saturating_add(params.max_tokens).min(limit);
        let cache = self.pool.cache(capacity)?;
        let mut stops = params.stop_token_ids.clone();
        if !params.ignore_eos {
            stops.extend(&self.eos);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.seqs.push(Sequence {
            id,
            detok: Detokenizer::new(),
            prompt_len: prompt.len(),
            tokens: prompt,
            fed: 0,
            cache,
            sampler: Sampler::new(params),
            held: String::new(),
            stops,
        });
        Ok(id)
    }

    /// Ends a sequence now, freeing its cache; `false` if it is not active.
    pub fn cancel(&mut self, id: u64) -> bool {
        let before = self.seqs.len();
        self.seqs.retain(|s| s.id != id);
        self.seqs.len() != before
    }

    /// One step for every active sequence; returns their events (finished
    /// sequences leave the batch).
    pub fn step(&mut self, model: &Decoder, tok: &Tokenizer) -> Result<Vec<Event>> {
        if self.seqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::new();
        let mut offsets = vec![0];
        for s in &self.seqs {
            let end = if s.fed < s.prompt_len {
                (s.fed + self.prefill_chunk.max(1)).min(s.prompt_len)
            } else {
                s.tokens.len()
            };
            let start = if s.fed < s.prompt_len {
                s.fed
            } else {
                s.tokens.len() - 1
            };
            ids.extend_from_slice(&s.tokens[start..end]);
            offsets.push(ids.len());
        }
        let mut caches: Vec<&mut KvCache> = self.seqs.iter_mut().map(|s| &mut s.cache).collect();
        let hidden = model.forward_cached(&ids, &offsets, &mut caches)?;
        let h = model.config().hidden_size;
        // Sequences whose prompt is now all in the cache sample a token.
        let mut rows = Vec::new();
        let mut who = Vec::new();
        for (i, s) in self.seqs.iter_mut().enumerate() {
            let n = offsets[i + 1] - offsets[i];
            if s.fed < s.prompt_len {
                s.fed += n;
                if s.fed < s.prompt_len {
                    continue;
                }
            }
            rows.extend_from_slice(&hidden[(offsets[i + 1] - 1) * h..offsets[i + 1] * h]);
            who.push(i);
        }
        let vocab = model.config().vocab_size;
        let logits = if who.is_empty() {
            Vec::new()
        } else {
            model.lm_logits(&rows, who.len())?
        };
        let mut events = Vec::with_capacity(who.len());
        for (k, &i) in who.iter().enumerate() {
            let s = &mut self.seqs[i];
            let mut row = logits[k * vocab..(k + 1) * vocab].to_vec();
            let choice = s.sampler.sample(&mut row, &s.tokens);
            s.tokens.push(choice.token);
            let generated = s.tokens.len() - s.prompt_len;
            let params = s.sampler.params();
            let want_logprobs = params.logprobs.is_some();
            let mut finish = None;
            let mut text = String::new();
            if s.stops.contains(&choice.token) {
                finish = Some(FinishReason::Stop);
            } else {
                text = s.detok.push(tok, choice.token)?;
            }
            if finish.is_none()
                && (generated >= params.max_tokens || s.tokens.len() >= s.cache.capacity())
            {
                finish = Some(FinishReason::Length);
                text.push_str(&s.detok.finish(tok)?);
            }
            // Stop strings: cut at the first one; hold back a tail that may start one.
            let stop = &params.stop;
            let mut out = std::mem::take(&mut s.held) + &text;
            if !stop.is_empty() {
                if let Some(at) = stop.iter().filter_map(|x| out.find(x.as_str())).min() {
                    out.truncate(at);
                    finish = Some(FinishReason::Stop);
                } else if finish.is_none() {
                    let keep = held_tail(&out, stop);
                    s.held = out.split_off(out.len() - keep);
                }
            }
            events.push(Event {
                seq: s.id,
                token: Some(choice.token),
                text: out,
                logprob: want_logprobs.then(|| (choice.logprob, choice.top.clone())),
                finish,
            });
        }
        let done: Vec<u64> = events
            .iter()
            .filter(|e| e.finish.is_some())
            .map(|e| e.seq)
            .collect();
        self.seqs.retain(|s| !done.contains(&s.id));
        Ok(events)
    }
}

/// Bytes at the end of `text` that are a proper prefix of some stop string (kept
/// back until the next tokens say whether the stop string follows).
fn held_tail(text: &str, stops: &[String]) -> usize {
    let mut best = 0;
    for s in stops {
        for (i, _) in s.char_indices().skip(1) {
            if i > best && text.ends_with(&s[..i]) {
                best = i;
            }
        }
    }
    best
}
