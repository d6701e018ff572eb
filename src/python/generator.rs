//! `Generator`, `Completion` and `GenerationStream` for Python: text generation
//! with the GIL released while the model computes; a stream is an iterator of
//! text deltas whose sequence ends (and frees its cache) when it is exhausted,
//! closed or dropped.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyStopIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use super::common::*;
use super::errors::to_py;
use crate::engine::chat::Message;
use crate::engine::{Generator, Prompt, Scheduler, SchedulerLimits, Stream};
use crate::error::Error;
use crate::generate::{Event, SamplingParams};
use crate::models::kv_cache::KvDtype;

/// A prompt: a `str`, a list of token ids, or chat messages (dicts with `role`
/// and `content`).
fn prompt_arg(obj: &Bound<'_, PyAny>) -> PyResult<Prompt> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Prompt::Text(s.to_str()?.to_owned()));
    }
    if let Ok(ids) = obj.extract::<Vec<u32>>() {
        return Ok(Prompt::Ids(ids));
    }
    let list = obj.cast::<PyList>().map_err(|_| {
        PyTypeError::new_err("prompt must be a str, a list of token ids, or a list of messages")
    })?;
    let mut messages = Vec::with_capacity(list.len());
    for item in list.iter() {
        let d = item.cast::<PyDict>().map_err(|_| {
            PyTypeError::new_err("each message must be a dict with `role` and `content`")
        })?;
        let get = |k: &str| -> PyResult<String> {
            d.get_item(k)?
                .ok_or_else(|| PyTypeError::new_err(format!("a message has no `{k}`")))?
                .extract()
        };
        messages.push(Message::new(&get("role")?, &get("content")?));
    }
    Ok(Prompt::Chat(messages))
}

/// The sampling keywords shared by `generate` and `stream`.
#[allow(clippy::too_many_arguments)]
fn params(
    max_tokens: usize,
    temperature: f32,
    top_k: usize,
    top_p: f32,
    min_p: f32,
    repetition_penalty: f32,
    presence_penalty: f32,
    frequency_penalty: f32,
    seed: Option<u64>,
    stop: Option<Vec<String>>,
    stop_token_ids: Option<Vec<u32>>,
    ignore_eos: bool,
    logprobs: Option<usize>,
    logit_bias: Option<std::collections::HashMap<u32, f32>>,
) -> SamplingParams {
    SamplingParams {
        max_tokens,
        temperature,
        top_k,
        top_p,
        min_p,
        repetition_penalty,
        presence_penalty,
        frequency_penalty,
        logit_bias: logit_bias.unwrap_or_default().into_iter().collect(),
        seed,
        stop_token_ids: stop_token_ids.unwrap_or_default(),
        stop: stop.unwrap_or_default(),
        ignore_eos,
        logprobs,
    }
}

/// A finished generation.
#[pyclass(name = "Completion", module = "rinfer._rinfer", frozen, get_all)]
pub struct PyCompletion {
    /// The generated text.
    text: String,
    /// The generated token ids.
    tokens: Vec<u32>,
    /// `"stop"`, `"length"` or `"cancelled"`.
    finish_reason: &'static str,
    /// `{"prompt_tokens", "completion_tokens", "total_tokens"}`.
    usage: Py<PyDict>,
    /// Per token: (log-probability, [(token, log-probability) of alternatives]),
    /// when asked for.
    logprobs: Vec<(f32, Vec<(u32, f32)>)>,
}

#[pymethods]
impl PyCompletion {
    fn __repr__(&self) -> String {
        format!(
            "Completion(text={:?}, finish_reason={:?}, tokens={})",
            self.text,
            self.finish_reason,
            self.tokens.len()
        )
    }
}

fn usage(py: Python<'_>, prompt: usize, completion: usize) -> PyResult<Py<PyDict>> {
    let d = PyDict::new(py);
    d.set_item("prompt_tokens", prompt)?;
    d.set_item("completion_tokens", completion)?;
    d.set_item("total_tokens", prompt + completion)?;
    Ok(d.unbind())
}

/// A text-generation model (Qwen, Llama, Mistral, Gemma 3 decoders). Every
/// caller's sequences run in one shared continuous batch.
#[pyclass(name = "Generator", module = "rinfer._rinfer", frozen)]
pub struct PyGenerator {
    inner: Arc<Generator>,
    sched: Arc<Scheduler>,
}

/// Every event of a stream, to the last.
fn drain(mut stream: Stream) -> Result<Vec<Event>, Error> {
    let mut out = Vec::new();
    while let Some(e) = stream.next_event() {
        out.push(e?);
    }
    Ok(out)
}

#[pymethods]
impl PyGenerator {
    /// Loads a decoder folder with its language-model head; `dtype` "f32"
    /// (default), "bf16" or "int8"; `threads` resizes the compute pool;
    /// `max_batch_tokens` bounds the cache positions (prompt + `max_tokens`) of the
    /// sequences running together (the KV block pool's size, allocated at load),
    /// `max_waiting` the sequences waiting for room (past it, `OverloadedError`);
    /// `kv_cache_dtype` "f32" (default) or "bf16" stores the KV cache.
    #[staticmethod]
    #[pyo3(signature = (path, *, dtype=None, threads=None, max_batch_tokens=None, max_waiting=None,
        kv_cache_dtype=None))]
    fn load(
        py: Python<'_>,
        path: std::path::PathBuf,
        dtype: Option<&str>,
        threads: Option<usize>,
        max_batch_tokens: Option<usize>,
        max_waiting: Option<usize>,
        kv_cache_dtype: Option<&str>,
    ) -> PyResult<Self> {
        let kv = match kv_cache_dtype {
            Some(name) => KvDtype::parse(name).map_err(to_py)?,
            None => KvDtype::F32,
        };
        let d = SchedulerLimits::default();
        let limits = SchedulerLimits {
            max_batch_tokens: max_batch_tokens.unwrap_or(d.max_batch_tokens).max(1),
            max_waiting: max_waiting.unwrap_or(d.max_waiting),
            prefill_chunk: d.prefill_chunk,
        };
        let inner = load_model(py, dtype, threads, Some(-1.0), move |o| {
            Ok(Generator::load_with(&path, &o)?.with_kv_cache_dtype(kv))
        })?;
        let model = inner.clone();
        let sched = detached(py, move || Scheduler::try_start(model, limits))?;
        Ok(Self {
            sched: Arc::new(sched),
            inner,
        })
    }

    /// The shared batch's counters: `active` and `waiting` sequences, `reserved`
    /// cache positions, `generated` tokens, `steps`, `refused` submissions; the KV
    /// cache's `cache_dtype`, `cache_block_size` (positions per block),
    /// `cache_blocks_total`, `cache_blocks_in_use`, `cache_blocks_reserved` and
    /// `cache_block_bytes` (one block's memory).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        use std::sync::atomic::Ordering::Relaxed;
        let st = self.sched.stats();
        let pool = self.sched.kv_pool().stats();
        let d = PyDict::new(py);
        d.set_item("active", st.active.load(Relaxed))?;
        d.set_item("waiting", st.waiting.load(Relaxed))?;
        d.set_item("reserved", st.reserved.load(Relaxed))?;
        d.set_item("generated", st.generated.load(Relaxed))?;
        d.set_item("steps", st.steps.load(Relaxed))?;
        d.set_item("refused", st.refused.load(Relaxed))?;
        d.set_item("cache_dtype", pool.dtype.name())?;
        d.set_item("cache_block_size", pool.block_len)?;
        d.set_item("cache_blocks_total", pool.blocks_total)?;
        d.set_item("cache_blocks_in_use", pool.blocks_in_use)?;
        d.set_item("cache_blocks_reserved", pool.blocks_reserved)?;
        d.set_item("cache_block_bytes", pool.block_bytes)?;
        Ok(d)
    }

    /// What the model is (path, model type, dtype, ISA, ...).
    #[getter]
    fn model_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        info_dict(py, &self.inner.info())
    }

    /// The end-of-sequence token ids.
    #[getter]
    fn eos_token_ids(&self) -> Vec<u32> {
        self.inner.eos_token_ids().to_vec()
    }

    /// The token ids `generate` would start from for `prompt`.
    fn encode_prompt(&self, py: Python<'_>, prompt: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
        let prompt = prompt_arg(prompt)?;
        let inner = self.inner.clone();
        detached(py, move || inner.encode_prompt(&prompt))
    }

    /// The longest sequence (prompt and generated tokens) the model takes.
    #[getter]
    fn max_context(&self) -> usize {
        self.inner.model().config().max_tokens()
    }

    /// The chat template's text for `messages`, with the assistant's opening.
    fn apply_chat_template(&self, messages: &Bound<'_, PyAny>) -> PyResult<String> {
        match prompt_arg(messages)? {
            Prompt::Chat(m) => self.inner.render_chat(&m).map_err(to_py),
            _ => Err(PyTypeError::new_err("messages must be a list of dicts")),
        }
    }

    /// Generates a completion of `prompt` (a str, token ids, or chat messages).
    #[pyo3(signature = (prompt, *, max_tokens=256, temperature=0.0, top_k=0, top_p=1.0,
        min_p=0.0, repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0,
        seed=None, stop=None, stop_token_ids=None, ignore_eos=false, logprobs=None,
        logit_bias=None))]
    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        py: Python<'_>,
        prompt: &Bound<'_, PyAny>,
        max_tokens: usize,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        min_p: f32,
        repetition_penalty: f32,
        presence_penalty: f32,
        frequency_penalty: f32,
        seed: Option<u64>,
        stop: Option<Vec<String>>,
        stop_token_ids: Option<Vec<u32>>,
        ignore_eos: bool,
        logprobs: Option<usize>,
        logit_bias: Option<std::collections::HashMap<u32, f32>>,
    ) -> PyResult<PyCompletion> {
        let prompt = prompt_arg(prompt)?;
        let sp = params(
            max_tokens,
            temperature,
            top_k,
            top_p,
            min_p,
            repetition_penalty,
            presence_penalty,
            frequency_penalty,
            seed,
            stop,
            stop_token_ids,
            ignore_eos,
            logprobs,
            logit_bias,
        );
        let (inner, sched) = (self.inner.clone(), self.sched.clone());
        let (events, prompt_tokens) = detached(py, move || {
            let ids = inner.encode_prompt(&prompt)?;
            let n = ids.len();
            Ok::<_, Error>((drain(sched.submit(ids, sp)?)?, n))
        })?;
        let mut text = String::new();
        let mut tokens = Vec::new();
        let mut logprobs = Vec::new();
        let mut finish = "length";
        for e in events {
            text.push_str(&e.text);
            tokens.extend(e.token);
            logprobs.extend(e.logprob);
            if let Some(f) = e.finish {
                finish = f.name();
            }
        }
        Ok(PyCompletion {
            usage: usage(py, prompt_tokens, tokens.len())?,
            text,
            finish_reason: finish,
            tokens,
            logprobs,
        })
    }

    /// An iterator of text deltas (dicts `text`, `token`, `finish_reason`,
    /// `logprob`) for `prompt`; the same keywords as `generate`.
    #[pyo3(signature = (prompt, *, max_tokens=256, temperature=0.0, top_k=0, top_p=1.0,
        min_p=0.0, repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0,
        seed=None, stop=None, stop_token_ids=None, ignore_eos=false, logprobs=None,
        logit_bias=None))]
    #[allow(clippy::too_many_arguments)]
    fn stream(
        &self,
        py: Python<'_>,
        prompt: &Bound<'_, PyAny>,
        max_tokens: usize,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        min_p: f32,
        repetition_penalty: f32,
        presence_penalty: f32,
        frequency_penalty: f32,
        seed: Option<u64>,
        stop: Option<Vec<String>>,
        stop_token_ids: Option<Vec<u32>>,
        ignore_eos: bool,
        logprobs: Option<usize>,
        logit_bias: Option<std::collections::HashMap<u32, f32>>,
    ) -> PyResult<PyGenerationStream> {
        let prompt = prompt_arg(prompt)?;
        let sp = params(
            max_tokens,
            temperature,
            top_k,
            top_p,
            min_p,
            repetition_penalty,
            presence_penalty,
            frequency_penalty,
            seed,
            stop,
            stop_token_ids,
            ignore_eos,
            logprobs,
            logit_bias,
        );
        let (inner, sched) = (self.inner.clone(), self.sched.clone());
        let (stream, prompt_tokens) = detached(py, move || {
            let ids = inner.encode_prompt(&prompt)?;
            let n = ids.len();
            Ok::<_, Error>((sched.submit(ids, sp)?, n))
        })?;
        Ok(PyGenerationStream {
            state: Arc::new(Mutex::new(Some(stream))),
            prompt_tokens,
        })
    }
}

/// Text deltas of one generation, as they are produced.
#[pyclass(name = "GenerationStream", module = "rinfer._rinfer", frozen)]
pub struct PyGenerationStream {
    /// The sequence's events; `None` once finished or closed (which ends the
    /// sequence and frees its cache).
    state: Arc<Mutex<Option<Stream>>>,
    /// Tokens of the prompt.
    #[pyo3(get)]
    prompt_tokens: usize,
}

#[pymethods]
impl PyGenerationStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let state = self.state.clone();
        let event: Option<Event> = detached(py, move || {
            let mut guard = state
                .lock()
                .map_err(|_| Error::InvalidInput("the stream failed earlier (poisoned)".into()))?;
            let Some(stream) = guard.as_mut() else {
                return Ok(None);
            };
            match stream.next_event() {
                None => {
                    *guard = None;
                    Ok(None)
                }
                Some(Err(e)) => {
                    *guard = None;
                    Err(e)
                }
                Some(Ok(e)) => {
                    if e.finish.is_some() {
                        *guard = None;
                    }
                    Ok(Some(e))
                }
            }
        })?;
        let e = event.ok_or_else(|| PyStopIteration::new_err(()))?;
        let d = PyDict::new(py);
        d.set_item("text", e.text)?;
        d.set_item("token", e.token)?;
        d.set_item("finish_reason", e.finish.map(|f| f.name()))?;
        d.set_item("logprob", e.logprob)?;
        Ok(d)
    }

    /// Ends the generation now and frees its cache.
    fn close(&self) {
        if let Ok(mut g) = self.state.lock() {
            *g = None;
        }
    }
}
