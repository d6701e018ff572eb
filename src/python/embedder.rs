//! `Embedder` for Python: arguments are extracted with the GIL held, then the work
//! runs with it released; outputs are numpy arrays that take over the Rust buffers
//! (no copy, no lists).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use numpy::{IntoPyArray, PyReadonlyArray1};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::to_py;
use crate::batcher::{Batcher, BatcherConfig, Submit};
use crate::engine::{Embedder, EncodeOptions};
use crate::error::Error;

use super::aio::*;
use super::common::*;

/// A sentence-embedding model. Thread-safe: share one between threads.
/// Texts per engine call of `encode` between checks for Python signals (Ctrl-C).
const INTERRUPT_CHUNK: usize = 128;

#[pyclass(name = "Embedder", module = "rinfer._rinfer", frozen)]
pub struct PyEmbedder {
    inner: Arc<Embedder>,
    cfg: BatcherConfig,
    /// The batcher and the process that started its thread (rebuilt after fork).
    batcher: Mutex<Option<(u32, Arc<Batcher>)>>,
    /// Where `aencode` results go, per event loop (by identity; closed loops pruned).
    loops: Mutex<Vec<LoopEntry>>,
}

impl PyEmbedder {
    fn batcher(&self) -> PyResult<Arc<Batcher>> {
        let mut b = self.batcher.lock().unwrap_or_else(|e| e.into_inner());
        let pid = std::process::id();
        if let Some((p, bat)) = b.as_ref() {
            if *p == pid {
                return Ok(bat.clone());
            }
        }
        if let Some(old) = b.take() {
            // Forked child: the parent's worker thread is not here; never join it.
            std::mem::forget(old);
        }
        let bat = Arc::new(Batcher::new(self.inner.clone(), self.cfg.clone()).map_err(to_py)?);
        *b = Some((pid, bat.clone()));
        Ok(bat)
    }

    /// The inbox of `event_loop`, registered with it on first use; `None` when the
    /// loop cannot watch a socket. Python is only called with `loops` unlocked.
    fn inbox_of(&self, event_loop: &Bound<'_, PyAny>) -> PyResult<Option<Arc<Inbox>>> {
        let key = event_loop.as_ptr() as usize;
        let lock = || self.loops.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, inbox)) = lock().iter().find(|(k, _, _)| *k == key) {
            return Ok(inbox.clone());
        }
        let inbox = Self::register(event_loop)?;
        let mut live: Vec<LoopEntry> = std::mem::take(&mut *lock());
        live.retain(|(_, lp, _)| {
            !lp.bind(event_loop.py())
                .call_method0("is_closed")
                .and_then(|c| c.extract::<bool>())
                .unwrap_or(true)
        });
        live.push((key, event_loop.clone().unbind(), inbox.clone()));
        lock().extend(live);
        Ok(inbox)
    }

    #[cfg(unix)]
    fn register(event_loop: &Bound<'_, PyAny>) -> PyResult<Option<Arc<Inbox>>> {
        let inbox = Arc::new(Inbox::new().map_err(|e| to_py(Error::ThreadPool(e.to_string())))?);
        let drain = DrainInbox {
            inbox: inbox.clone(),
        };
        match event_loop.call_method1("add_reader", (inbox.fd(), drain)) {
            Ok(_) => Ok(Some(inbox)),
            Err(e)
                if e.is_instance_of::<pyo3::exceptions::PyNotImplementedError>(event_loop.py()) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    #[cfg(not(unix))]
    fn register(_event_loop: &Bound<'_, PyAny>) -> PyResult<Option<Arc<Inbox>>> {
        Ok(None)
    }
}

impl Drop for PyEmbedder {
    fn drop(&mut self) {
        let b = self
            .batcher
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((pid, bat)) = b {
            if pid != std::process::id() {
                std::mem::forget(bat);
                return;
            }
            // The worker may be waiting for the GIL to hand back a result: release it
            // while joining.
            Python::attach(|py| py.detach(move || drop(bat)));
        }
    }
}

#[pymethods]
impl PyEmbedder {
    /// Loads a model folder.
    ///
    /// `dtype`: "f32" (default), "bf16" or "int8" for the encoder's matrix products;
    /// for bf16/int8 the quality against f32 on a probe set is measured at load
    /// (`model_info["quality"]`) and loading raises `ModelLoadError` when its minimum
    /// cosine is under `quality_floor` (default 0.999 bf16, 0.99 int8). `threads`
    /// resizes the compute pool. `truncate_dim` keeps the first dimensions of every
    /// vector (Matryoshka).
    #[staticmethod]
    #[pyo3(signature = (path, *, dtype=None, threads=None, quality_floor=None, max_batch_tokens=16384, max_wait_ms=0.0, max_queue=4096, truncate_dim=None))]
    #[allow(clippy::too_many_arguments)]
    fn load(
        py: Python<'_>,
        path: std::path::PathBuf,
        dtype: Option<&str>,
        threads: Option<usize>,
        quality_floor: Option<f32>,
        max_batch_tokens: usize,
        max_wait_ms: f64,
        max_queue: usize,
        truncate_dim: Option<usize>,
    ) -> PyResult<Self> {
        let cfg =
            crate::args::batcher_config(max_batch_tokens, max_wait_ms, max_queue).map_err(to_py)?;
        Ok(Self {
            inner: load_model(py, dtype, threads, quality_floor, move |mut o| {
                o.truncate_dim = truncate_dim;
                Embedder::load_with(&path, &o)
            })?,
            cfg,
            batcher: Mutex::new(None),
            loops: Mutex::new(Vec::new()),
        })
    }

    /// Embeds texts: float32 array of shape (n, dim), or (dim,) for one str.
    /// `prompt_name` picks a prompt of the model's config (the default prompt is
    /// used when neither it nor a literal `prompt` is given); `truncate_dim` keeps
    /// the first dimensions (Matryoshka).
    #[pyo3(signature = (texts, *, batch_size=128, normalize=None, truncate=true, prompt_name=None, prompt=None, truncate_dim=None))]
    #[allow(clippy::too_many_arguments)]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        batch_size: usize,
        normalize: Option<bool>,
        truncate: bool,
        prompt_name: Option<String>,
        prompt: Option<String>,
        truncate_dim: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (texts, single) = texts_arg(texts, "texts")?;
        let opts = EncodeOptions {
            normalize,
            truncate,
            batch_size,
            prompt_name,
            prompt,
            truncate_dim,
        };
        // In chunks, with the GIL taken back between them to run Python's signal
        // handlers: Ctrl-C interrupts a long call as KeyboardInterrupt.
        let chunk = batch_size.clamp(1, INTERRUPT_CHUNK);
        if texts.len() <= chunk {
            let inner = self.inner.clone();
            let arr = detached(py, move || inner.encode_with(&texts, &opts))?;
            return Ok(rows_to_py(py, arr, single));
        }
        let mut parts = Vec::with_capacity(texts.len().div_ceil(chunk));
        for start in (0..texts.len()).step_by(chunk) {
            let piece = texts[start..(start + chunk).min(texts.len())].to_vec();
            let (inner, opts) = (self.inner.clone(), opts.clone());
            let arr = detached(py, move || {
                inner.encode_with(&piece, &opts).map_err(|e| match e {
                    crate::Error::InputTooLong { index, tokens, max } => {
                        crate::Error::InputTooLong {
                            index: index + start,
                            tokens,
                            max,
                        }
                    }
                    other => other,
                })
            })?;
            parts.push(arr);
            py.check_signals()?;
        }
        let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
        let arr = ndarray::concatenate(ndarray::Axis(0), &views).expect("chunks of the same width");
        Ok(rows_to_py(py, arr, single))
    }

    /// Sparse (SPLADE) vectors of a sparse model: for each text a tuple
    /// `(indices, values)` (uint32 and float32 arrays, indices ascending); one tuple
    /// for one str. `top_k` keeps each vector's largest weights.
    #[pyo3(signature = (texts, *, batch_size=128, truncate=true, prompt_name=None, prompt=None, top_k=None))]
    #[allow(clippy::too_many_arguments)]
    fn encode_sparse<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        batch_size: usize,
        truncate: bool,
        prompt_name: Option<String>,
        prompt: Option<String>,
        top_k: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (texts, single) = texts_arg(texts, "texts")?;
        let opts = EncodeOptions {
            truncate,
            batch_size,
            prompt_name,
            prompt,
            ..Default::default()
        };
        let inner = self.inner.clone();
        let vecs = detached(py, move || inner.encode_sparse(&texts, &opts, top_k))?;
        let tuples: Vec<Bound<'py, PyAny>> = vecs
            .into_iter()
            .map(|v| {
                let pair = (v.indices.into_pyarray(py), v.values.into_pyarray(py));
                pair.into_pyobject(py).map(|t| t.into_any())
            })
            .collect::<PyResult<_>>()?;
        if single {
            Ok(tuples.into_iter().next().expect("one text, one vector"))
        } else {
            Ok(pyo3::types::PyList::new(py, tuples)?.into_any())
        }
    }

    /// Whether this is a sparse (SPLADE) model (`encode_sparse`, not `encode`).
    #[getter]
    fn is_sparse(&self) -> bool {
        self.inner.is_sparse()
    }

    /// The prompts of `config_sentence_transformers.json`, by name.
    #[getter]
    fn prompts(&self) -> std::collections::BTreeMap<String, String> {
        self.inner.prompts().clone()
    }

    /// The prompt used when a call names none.
    #[getter]
    fn default_prompt_name(&self) -> Option<String> {
        self.inner.default_prompt_name().map(str::to_string)
    }

    /// The model's similarity function (`cosine`, `dot`, ...).
    #[getter]
    fn similarity_fn_name(&self) -> String {
        self.inner.similarity_fn_name().to_string()
    }

    /// Embeds token-id sequences (each a 1-D integer numpy array or a list of int).
    #[pyo3(signature = (ids, *, batch_size=128, normalize=None))]
    fn encode_ids<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
        batch_size: usize,
        normalize: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let seqs = ids_arg(ids)?;
        let opts = EncodeOptions {
            normalize,
            truncate: false,
            batch_size,
            ..Default::default()
        };
        let inner = self.inner.clone();
        let arr = detached(py, move || inner.encode_ids(&seqs, &opts))?;
        Ok(arr.into_pyarray(py).into_any())
    }

    /// Token embeddings (sentence-transformers' `output_value="token_embeddings"`):
    /// the encoder's last hidden state of every token of each text, prompt and
    /// special tokens included, before pooling, Dense and Normalize. A list of
    /// float32 arrays of shape (tokens, hidden); one array for one str.
    #[pyo3(signature = (texts, *, batch_size=128, truncate=true, prompt_name=None, prompt=None))]
    fn encode_tokens<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        batch_size: usize,
        truncate: bool,
        prompt_name: Option<String>,
        prompt: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (texts, single) = texts_arg(texts, "texts")?;
        let opts = EncodeOptions {
            truncate,
            batch_size,
            prompt_name,
            prompt,
            ..Default::default()
        };
        let inner = self.inner.clone();
        let mats = detached(py, move || inner.encode_tokens(&texts, &opts))?;
        matrices_to_py(py, mats, single)
    }

    /// `encode_tokens` of token-id sequences (special tokens included; no prompt):
    /// a list of float32 arrays of shape (tokens, hidden).
    #[pyo3(signature = (ids, *, batch_size=128))]
    fn encode_ids_tokens<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let seqs = ids_arg(ids)?;
        let opts = EncodeOptions {
            truncate: false,
            batch_size,
            ..Default::default()
        };
        let inner = self.inner.clone();
        let mats = detached(py, move || inner.encode_ids_tokens(&seqs, &opts))?;
        matrices_to_py(py, mats, false)
    }

    /// Token ids of each text (special tokens included), as uint32 arrays.
    #[pyo3(signature = (texts, *, truncate=true))]
    fn tokenize<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        truncate: bool,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let (texts, _) = texts_arg(texts, "texts")?;
        let inner = self.inner.clone();
        let enc = detached(py, move || inner.tokenizer().encode(&texts, truncate))?;
        Ok((0..enc.len())
            .map(|i| enc.ids_of(i).to_vec().into_pyarray(py).into_any())
            .collect())
    }

    /// Each text's tokens as `(id, text, special, start, stop)` tuples; `start` and
    /// `stop` are character offsets in the text (`None` for special tokens).
    #[pyo3(signature = (texts, *, truncate=true))]
    #[allow(clippy::type_complexity)]
    fn tokens(
        &self,
        py: Python<'_>,
        texts: &Bound<'_, PyAny>,
        truncate: bool,
    ) -> PyResult<Vec<Vec<(u32, String, bool, Option<usize>, Option<usize>)>>> {
        let (texts, _) = texts_arg(texts, "texts")?;
        let inner = self.inner.clone();
        let toks = detached(py, move || inner.tokenizer().tokens(&texts, truncate))?;
        Ok(toks
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|t| {
                        (
                            t.id,
                            t.text,
                            t.special,
                            t.span.map(|s| s.0),
                            t.span.map(|s| s.1),
                        )
                    })
                    .collect()
            })
            .collect())
    }

    /// Awaitable embedding through the in-process batcher: concurrent calls are
    /// coalesced into one engine batch. Raises `OverloadedError` at once when the
    /// queue is full.
    /// With `timeout_s`, a request not started in time is dropped unrun
    /// (`TimeoutError`); cancelling the awaiting task drops it too. With
    /// `return_tokens`, the result is `(vectors, tokens)`: the tokens the texts took
    /// after truncation, special tokens included (no second tokenisation needed).
    #[pyo3(signature = (texts, *, normalize=None, truncate=true, timeout_s=None, return_tokens=false))]
    fn aencode<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        normalize: Option<bool>,
        truncate: bool,
        timeout_s: Option<f64>,
        return_tokens: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (texts, single) = texts_arg(texts, "texts")?;
        let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
        let fut = event_loop.call_method0("create_future")?;
        let cancel = Arc::new(AtomicBool::new(false));
        fut.call_method1(
            "add_done_callback",
            (CancelOnDone {
                flag: cancel.clone(),
            },),
        )?;
        let opts = Submit {
            normalize,
            truncate,
            deadline: deadline(timeout_s)?,
            cancel: Some(cancel),
        };
        let f = fut.clone().unbind();
        let done: crate::batcher::Completion = match self.inbox_of(&event_loop)? {
            #[cfg(unix)]
            Some(inbox) => Box::new(move |result| {
                inbox.push(Finished {
                    fut: f,
                    result,
                    single,
                    with_tokens: return_tokens,
                })
            }),
            #[cfg(not(unix))]
            Some(_) => unreachable!("inboxes exist on unix only"),
            None => {
                let resolve = py.import("rinfer._rinfer")?.getattr("_resolve")?.unbind();
                let lp = event_loop.unbind();
                Box::new(move |res| {
                    Python::attach(|py| {
                        let (value, failed) = match res {
                            Ok(rows) => {
                                let v = rows_to_py(py, rows.vectors, single).unbind();
                                if return_tokens {
                                    match (v, rows.tokens).into_pyobject(py) {
                                        Ok(t) => (t.into_any().unbind(), false),
                                        Err(e) => (e.into_value(py).into_any(), true),
                                    }
                                } else {
                                    (v, false)
                                }
                            }
                            Err(e) => (to_py(e).into_value(py).into_any(), true),
                        };
                        // A closed loop refuses the call: nobody awaits any more.
                        let _ = lp.call_method1(
                            py,
                            "call_soon_threadsafe",
                            (resolve, f, value, failed),
                        );
                    })
                })
            }
        };
        self.batcher()?.submit(texts, opts, done).map_err(to_py)?;
        Ok(fut)
    }

    /// Blocking embedding through the batcher (for threads of a sync server).
    #[pyo3(signature = (texts, *, normalize=None, truncate=true, timeout_s=None))]
    fn encode_batched<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        normalize: Option<bool>,
        truncate: bool,
        timeout_s: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (texts, single) = texts_arg(texts, "texts")?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let opts = Submit {
            normalize,
            truncate,
            deadline: deadline(timeout_s)?,
            cancel: None,
        };
        self.batcher()?
            .submit(texts, opts, Box::new(move |r| drop(tx.send(r))))
            .map_err(to_py)?;
        let rows = detached(py, move || rx.recv().map_err(|_| Error::ShutDown)?)?;
        Ok(rows_to_py(py, rows.vectors, single))
    }

    /// Batcher counters: batches, requests, texts, tokens, rejected, queued.
    fn batcher_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.batcher()?.stats();
        let d = PyDict::new(py);
        for (k, v) in [
            ("batches", s.batches),
            ("requests", s.requests),
            ("texts", s.texts),
            ("tokens", s.tokens),
            ("rejected", s.rejected),
            ("dropped", s.dropped),
            ("queued", s.queued),
        ] {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// Embedding width.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// Longest input in tokens before truncation. Settable (1 up to the model's
    /// positions): calls that start afterwards cut inputs to the new limit.
    #[getter]
    fn max_seq_length(&self) -> usize {
        self.inner.max_seq_length()
    }

    #[setter]
    fn set_max_seq_length(&self, n: usize) -> PyResult<()> {
        self.inner.set_max_seq_length(n).map_err(to_py)
    }

    /// Whether vectors are L2-normalised by default.
    #[getter]
    fn normalizes(&self) -> bool {
        self.inner.normalizes()
    }

    /// Path, sizes, dtype, ISA and threads.
    #[getter]
    fn model_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        info_dict(py, &self.inner.info())
    }

    fn __repr__(&self) -> String {
        let i = self.inner.info();
        format!(
            "Embedder(path={:?}, dim={}, isa={})",
            i.path.display().to_string(),
            i.dim,
            i.isa
        )
    }
}

/// Token-id sequences from Python: each a 1-D integer numpy array or a list of int.
fn ids_arg(ids: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u32>>> {
    let mut seqs: Vec<Vec<u32>> = Vec::new();
    for (i, item) in ids
        .try_iter()
        .map_err(|_| PyTypeError::new_err("`ids` must be a sequence of sequences of int"))?
        .enumerate()
    {
        let item = item?;
        let seq: Vec<u32> = if let Ok(a) = item.extract::<PyReadonlyArray1<'_, u32>>() {
            a.as_slice()
                .map(<[u32]>::to_vec)
                .unwrap_or_else(|_| a.as_array().to_vec())
        } else if let Ok(a) = item.extract::<PyReadonlyArray1<'_, i64>>() {
            crate::args::token_ids(a.as_array().iter().copied(), i).map_err(to_py)?
        } else if let Ok(a) = item.extract::<PyReadonlyArray1<'_, i32>>() {
            crate::args::token_ids(a.as_array().iter().copied(), i).map_err(to_py)?
        } else if let Ok(v) = item.extract::<Vec<i64>>() {
            crate::args::token_ids(v, i).map_err(to_py)?
        } else {
            return Err(PyTypeError::new_err(format!(
                "ids[{i}] must be a 1-D integer numpy array or a list of int"
            )));
        };
        seqs.push(seq);
    }
    Ok(seqs)
}

/// One float32 array per matrix: a list, or the array itself for one str.
fn matrices_to_py(
    py: Python<'_>,
    mats: Vec<ndarray::Array2<f32>>,
    single: bool,
) -> PyResult<Bound<'_, PyAny>> {
    let arrays: Vec<Bound<'_, PyAny>> = mats
        .into_iter()
        .map(|m| m.into_pyarray(py).into_any())
        .collect();
    if single {
        Ok(arrays.into_iter().next().expect("one text, one matrix"))
    } else {
        Ok(pyo3::types::PyList::new(py, arrays)?.into_any())
    }
}
