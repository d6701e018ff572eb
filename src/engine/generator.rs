//! [`Generator`]: text generation from a decoder folder: prompts as text, token
//! ids or chat messages (the folder's chat template), the end-of-sequence tokens
//! of `generation_config.json`, and generation of several prompts in one
//! continuous batch, with KV caches stored as f32 or bf16 ([`KvDtype`]).

use std::path::Path;

use super::chat::{ChatTemplate, Message};
use super::folder::{read_json, Folder, LoadOptions, ModelInfo};
use crate::error::{Error, Result};
use crate::generate::{Batch, Event, FinishReason, SamplingParams};
use crate::models::kv_cache::{KvDtype, KvPool};
use crate::models::{Decoder, Model};
use crate::tokenizer::Tokenizer;

/// What to continue.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// Text, tokenized as the tokenizer does by default (with its special tokens).
    Text(String),
    /// Token ids as they are.
    Ids(Vec<u32>),
    /// Chat messages, laid out by the folder's chat template with the opening of
    /// the assistant's turn.
    Chat(Vec<Message>),
}

/// A finished generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The generated text (stop strings left out).
    pub text: String,
    /// The generated tokens (a final end-of-sequence token included).
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Log-probabilities of each token, when asked for.
    pub logprobs: Vec<(f32, Vec<(u32, f32)>)>,
}

/// A text-generation model.
pub struct Generator {
    folder: Folder,
    template: Option<ChatTemplate>,
    eos: Vec<u32>,
    kv_dtype: KvDtype,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("info", &self.info())
            .finish()
    }
}

/// `eos_token_id` of a config: one id, a list, or absent.
fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    match v.get("eos_token_id") {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|x| x as u32).into_iter().collect(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64().map(|x| x as u32))
            .collect(),
        _ => Vec::new(),
    }
}

impl Generator {
    /// Loads a decoder folder with its language-model head.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(dir, &LoadOptions::default())
    }

    /// [`Self::load`] with a precision.
    pub fn load_with(dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Self> {
        let dir = dir.as_ref();
        let folder = Folder::open(dir, opts)?;
        let Model::Decoder(dec) = &folder.model else {
            return Err(Error::Unsupported(format!(
                "`{}` is an encoder: it does not generate text",
                folder.cfg.model_type()
            )));
        };
        if !dec.has_lm_head() {
            return Err(Error::Unsupported(
                "this checkpoint has no lm_head (an embedding-only file): it does not generate text"
                    .into(),
            ));
        }
        let gen_cfg = dir.join("generation_config.json");
        let mut eos = if gen_cfg.is_file() {
            ids_of(&read_json(&gen_cfg)?)
        } else {
            Vec::new()
        };
        if eos.is_empty() {
            eos = ids_of(&read_json(&dir.join("config.json"))?);
        }
        Ok(Self {
            template: ChatTemplate::from_dir(dir)?,
            folder,
            eos,
            kv_dtype: KvDtype::F32,
        })
    }

    /// The same model storing its KV caches as `dtype` (f32 by default; bf16
    /// halves the cache's memory and the bandwidth decoding reads, within a
    /// tolerance `tests/generation.rs` measures).
    pub fn with_kv_cache_dtype(mut self, dtype: KvDtype) -> Self {
        self.kv_dtype = dtype;
        self
    }

    /// How KV caches are stored.
    pub fn kv_cache_dtype(&self) -> KvDtype {
        self.kv_dtype
    }

    /// A block pool for this model's caches with room for `positions` positions
    /// (a token budget), in its cache dtype, allocated now.
    pub fn kv_pool(&self, positions: usize) -> Result<std::sync::Arc<KvPool>> {
        self.model().kv_pool(positions, self.kv_dtype)
    }

    /// The decoder.
    pub fn model(&self) -> &Decoder {
        match &self.folder.model {
            Model::Decoder(d) => d,
            Model::Encoder(_) => unreachable!("checked at load"),
        }
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.folder.tokenizer
    }

    /// The end-of-sequence tokens.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos
    }

    /// What this model is.
    pub fn info(&self) -> ModelInfo {
        self.folder.info(self.folder.cfg.vocab_size())
    }

    /// The chat template's text for `messages` (with the assistant's opening).
    pub fn render_chat(&self, messages: &[Message]) -> Result<String> {
        match &self.template {
            Some(t) => t.render(messages, true),
            None => Err(Error::Unsupported(
                "the model folder has no chat template (chat_template.jinja or tokenizer_config.json)"
                    .into(),
            )),
        }
    }

    /// The token ids of a prompt.
    pub fn encode_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        let tok = &self.folder.tokenizer;
        match prompt {
            Prompt::Ids(ids) => Ok(ids.clone()),
            Prompt::Text(t) => {
                let enc = tok.encode(&[t.as_str()], false)?;
                Ok(enc.ids)
            }
            // transformers tokenizes a rendered template without adding specials.
            Prompt::Chat(m) => Ok(tok.encode_plain(&[self.render_chat(m)?])?.remove(0)),
        }
    }

    /// A batch for this model's end-of-sequence tokens, on a pool of its own with
    /// no budget: each sequence's cache blocks are allocated when it is added and
    /// freed when it ends (a [`crate::engine::Scheduler`] keeps a budget's blocks
    /// for good instead).
    pub fn batch(&self) -> Batch {
        Batch::new(
            self.eos.clone(),
            KvPool::unbudgeted(self.model().kv_shape(), self.kv_dtype),
        )
    }

    /// A batch whose caches take their blocks from `pool`.
    pub fn batch_in(&self, pool: std::sync::Arc<KvPool>) -> Batch {
        Batch::new(self.eos.clone(), pool)
    }

    /// Generates a completion for each prompt, all in one continuous batch;
    /// `on_event` sees every event as it happens (streaming), with the prompt's
    /// index.
    pub fn generate(
        &self,
        prompts: &[Prompt],
        params: &[SamplingParams],
        mut on_event: impl FnMut(usize, &Event),
    ) -> Result<Vec<Completion>> {
        if params.len() != prompts.len() {
            return Err(Error::InvalidInput(format!(
                "{} sampling settings for {} prompts",
                params.len(),
                prompts.len()
            )));
        }
        let model = self.model();
        let mut batch = self.batch();
        let mut out = Vec::with_capacity(prompts.len());
        let mut ids = Vec::with_capacity(prompts.len());
        for (p, sp) in prompts.iter().zip(params) {
            let tokens = self.encode_prompt(p)?;
            out.push(Completion {
                text: String::new(),
                tokens: Vec::new(),
                finish_reason: FinishReason::Length,
                prompt_tokens: tokens.len(),
                logprobs: Vec::new(),
            });
            ids.push(batch.add(model, tokens, sp.clone())?);
        }
        while !batch.is_empty() {
            for e in batch.step(model, self.tokenizer())? {
                let i = ids
                    .iter()
                    .position(|&x| x == e.seq)
                    .expect("a sequence of this call");
                let c = &mut out[i];
                c.text.push_str(&e.text);
                c.tokens.extend(e.token);
                if let Some(lp) = &e.logprob {
                    c.logprobs.push(lp.clone());
                }
                if let Some(f) = e.finish {
                    c.finish_reason = f;
                }
                on_event(i, &e);
            }
        }
        Ok(out)
    }
}
