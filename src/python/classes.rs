//! `Embedder`, `Classifier` and `Reranker` for Python: arguments are extracted with
//! the GIL held, then the work runs with it released; outputs are numpy arrays that
//! take over the Rust buffers (no copy, no lists).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ndarray::{Array1, Array2};
use numpy::{IntoPyArray, PyReadonlyArray1};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::errors::{to_py, RinferError};
use crate::batcher::{Batcher, BatcherConfig, Rows, Submit};
use crate::engine::{Classifier, Embedder, EncodeOptions, LoadOptions, ModelInfo, Reranker};
use crate::error::Error;
use crate::kernels::Precision;

/// Texts from a `str` (single = true) or a sequence of `str`.
fn texts_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<(Vec<String>, bool)> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok((vec![s.to_str()?.to_owned()], true));
    }
    let err = || PyTypeError::new_err(format!("`{name}` must be a str or a sequence of str"));
    let iter = obj.try_iter().map_err(|_| err())?;
    let mut out = Vec::new();
    for item in iter {
        let item = item?;
        let s = item.cast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!(
                "`{name}` must contain only str, found {}",
                item.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        out.push(s.to_str()?.to_owned());
    }
    Ok((out, false))
}

/// Runs `f` without the GIL; a panic becomes a `RinferError` instead of a crash.
fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, Error> + Send) -> PyResult<T> {
    py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)))
        .map_err(|_| {
            RinferError::new_err("internal error: the engine panicked (a bug; please report it)")
        })?
        .map_err(to_py)
}

fn rows_to_py(py: Python<'_>, arr: Array2<f32>, single: bool) -> Bound<'_, PyAny> {
    if single {
        let (v, _) = arr.into_raw_vec_and_offset();
        Array1::from_vec(v).into_pyarray(py).into_any()
    } else {
        arr.into_pyarray(py).into_any()
    }
}

fn info_dict<'py>(py: Python<'py>, info: &ModelInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("path", info.path.display().to_string())?;
    d.set_item("model_type", &info.model_type)?;
    d.set_item("hidden_size", info.hidden_size)?;
    d.set_item("layers", info.layers)?;
    d.set_item("dim", info.dim)?;
    d.set_item("max_seq_length", info.max_seq_length)?;
    d.set_item("dtype", info.dtype)?;
    d.set_item("requested_dtype", info.requested_dtype)?;
    d.set_item("isa", info.isa)?;
    d.set_item("gemm_kernel", &info.gemm_kernel)?;
    match &info.quality {
        Some(q) => {
            let qd = PyDict::new(py);
            qd.set_item("min_cosine", q.min_cosine)?;
            qd.set_item("mean_cosine", q.mean_cosine)?;
            qd.set_item("probes", q.probes)?;
            d.set_item("quality", qd)?;
        }
        None => d.set_item("quality", py.None())?,
    }
    d.set_item("note", &info.note)?;
    d.set_item("threads", crate::kernels::threads::num_threads())?;
    Ok(d)
}

/// Checks the options, then loads with the GIL released.
fn load_model<T: Send>(
    py: Python<'_>,
    dtype: Option<&str>,
    threads: Option<usize>,
    quality_floor: Option<f32>,
    load: impl FnOnce(LoadOptions) -> Result<T, Error> + Send,
) -> PyResult<Arc<T>> {
    let dtype = match dtype {
        Some(d) => Precision::parse(d).map_err(to_py)?,
        None => Precision::F32,
    };
    if let Some(f) = quality_floor {
        if !(f.is_finite() && (-1.0..=1.0).contains(&f)) {
            return Err(to_py(Error::InvalidInput(format!(
                "quality_floor must be a cosine in [-1, 1], got {f}"
            ))));
        }
    }
    set_threads(threads)?;
    let opts = LoadOptions {
        dtype,
        quality_floor,
        ..Default::default()
    };
    Ok(Arc::new(detached(py, move || load(opts))?))
}

fn set_threads(threads: Option<usize>) -> PyResult<()> {
    match threads {
        Some(0) => Err(to_py(Error::InvalidInput(
            "threads must be positive".into(),
        ))),
        Some(n) => {
            crate::kernels::threads::set_num_threads(n);
            Ok(())
        }
        None => Ok(()),
    }
}

/// Deadline `timeout_s` seconds from now.
fn deadline(timeout_s: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout_s {
        None => Ok(None),
        Some(t) if t.is_finite() && t > 0.0 => {
            Ok(Some(Instant::now() + Duration::from_secs_f64(t)))
        }
        Some(t) => Err(to_py(Error::InvalidInput(format!(
            "timeout_s must be a positive number of seconds, got {t}"
        )))),
    }
}

/// Done-callback of an `aencode` future: a cancelled caller marks its queued
/// request so the batcher drops it unrun.
#[pyclass(module = "rinfer._rinfer", frozen)]
struct CancelOnDone {
    flag: Arc<AtomicBool>,
}

#[pymethods]
impl CancelOnDone {
    fn __call__(&self, fut: &Bound<'_, PyAny>) -> PyResult<()> {
        if fut.call_method0("cancelled")?.extract::<bool>()? {
            self.flag.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A finished `aencode` call waiting for its event loop's thread.
struct Finished {
    fut: Py<PyAny>,
    result: Result<Rows, Error>,
    single: bool,
    with_tokens: bool,
}

impl Finished {
    /// Completes the future (on its loop's thread), unless it was cancelled.
    fn resolve(self, py: Python<'_>) -> PyResult<()> {
        let fut = self.fut.bind(py);
        if fut.call_method0("done")?.extract::<bool>()? {
            return Ok(());
        }
        match self.result {
            Ok(rows) => {
                let v = rows_to_py(py, rows.vectors, self.single);
                if self.with_tokens {
                    fut.call_method1("set_result", ((v, rows.tokens),))?;
                } else {
                    fut.call_method1("set_result", (v,))?;
                }
            }
            Err(e) => {
                fut.call_method1("set_exception", (to_py(e).into_value(py),))?;
            }
        }
        Ok(())
    }
}

/// Finished `aencode` calls of one event loop, handed over without the GIL: the
/// batcher's worker pushes them here and, when the inbox was empty, writes a byte
/// to a socket pair whose other end the loop watches (`add_reader`). The loop's
/// thread then resolves every future at once: one wake-up per batch, and the
/// worker goes on to the next batch without ever waiting for the GIL.
struct Inbox {
    done: Mutex<Vec<Finished>>,
    #[cfg(unix)]
    wake: std::os::unix::net::UnixStream,
    #[cfg(unix)]
    watch: std::os::unix::net::UnixStream,
}

impl Inbox {
    #[cfg(unix)]
    fn new() -> std::io::Result<Self> {
        let (wake, watch) = std::os::unix::net::UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        watch.set_nonblocking(true)?;
        Ok(Self {
            done: Mutex::new(Vec::new()),
            wake,
            watch,
        })
    }

    #[cfg(unix)]
    fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.watch.as_raw_fd()
    }

    #[cfg(unix)]
    fn push(&self, f: Finished) {
        use std::io::Write;
        let first = {
            let mut d = self.done.lock().unwrap_or_else(|e| e.into_inner());
            d.push(f);
            d.len() == 1
        };
        if first {
            // A full socket buffer already holds a wake-up: nothing is lost.
            let _ = (&self.wake).write(&[1]);
        }
    }
}

/// The loop's reader callback: drains the wake-ups, then resolves what finished
/// (wake-ups first, so a push that races with the drain wakes the loop again).
#[pyclass(module = "rinfer._rinfer", frozen)]
struct DrainInbox {
    inbox: Arc<Inbox>,
}

#[pymethods]
impl DrainInbox {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        #[cfg(unix)]
        {
            use std::io::Read;
            let mut buf = [0u8; 64];
            while matches!((&self.inbox.watch).read(&mut buf), Ok(n) if n > 0) {}
        }
        let done = std::mem::take(&mut *self.inbox.done.lock().unwrap_or_else(|e| e.into_inner()));
        let mut first_err = None;
        for f in done {
            if let Err(e) = f.resolve(py) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// How results reach one event loop: its inbox, or (a loop without `add_reader`,
/// such as the Windows proactor) `call_soon_threadsafe` per request.
type LoopEntry = (usize, Py<PyAny>, Option<Arc<Inbox>>);

/// A sentence-embedding model. Thread-safe: share one between threads.
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
        if !(max_wait_ms.is_finite() && max_wait_ms >= 0.0)
            || max_batch_tokens == 0
            || max_queue == 0
        {
            return Err(to_py(Error::InvalidInput(
                "max_batch_tokens and max_queue must be positive, max_wait_ms finite and >= 0"
                    .into(),
            )));
        }
        Ok(Self {
            inner: load_model(py, dtype, threads, quality_floor, move |mut o| {
                o.truncate_dim = truncate_dim;
                Embedder::load_with(&path, &o)
            })?,
            cfg: BatcherConfig {
                max_batch_tokens,
                max_wait: Duration::from_secs_f64(max_wait_ms / 1000.0),
                max_queue,
            },
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
        let inner = self.inner.clone();
        let arr = detached(py, move || inner.encode_with(&texts, &opts))?;
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
        let mut seqs: Vec<Vec<u32>> = Vec::new();
        let bad = |i: usize| {
            to_py(Error::InvalidInput(format!(
                "ids[{i}] holds a token id outside 0..2^32"
            )))
        };
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
                let v = a.as_array();
                v.iter()
                    .map(|&x| u32::try_from(x).map_err(|_| bad(i)))
                    .collect::<PyResult<_>>()?
            } else if let Ok(a) = item.extract::<PyReadonlyArray1<'_, i32>>() {
                let v = a.as_array();
                v.iter()
                    .map(|&x| u32::try_from(x).map_err(|_| bad(i)))
                    .collect::<PyResult<_>>()?
            } else if let Ok(v) = item.extract::<Vec<i64>>() {
                v.into_iter()
                    .map(|x| u32::try_from(x).map_err(|_| bad(i)))
                    .collect::<PyResult<_>>()?
            } else {
                return Err(PyTypeError::new_err(format!(
                    "ids[{i}] must be a 1-D integer numpy array or a list of int"
                )));
            };
            seqs.push(seq);
        }
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

    /// Longest input in tokens before truncation.
    #[getter]
    fn max_seq_length(&self) -> usize {
        self.inner.max_seq_length()
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

/// A text classifier.
#[pyclass(name = "Classifier", module = "rinfer._rinfer", frozen)]
pub struct PyClassifier {
    inner: Arc<Classifier>,
}

#[pymethods]
impl PyClassifier {
    /// Loads a sequence-classification model folder.
    ///
    /// `dtype`: "f32" (default), "bf16" or "int8" for the encoder's matrix products;
    /// for bf16/int8 the quality against f32 on a probe set is measured at load
    /// (`model_info["quality"]`) and loading raises `ModelLoadError` when its minimum
    /// cosine is under `quality_floor` (default 0.999 bf16, 0.99 int8). `threads`
    /// resizes the compute pool.
    #[staticmethod]
    #[pyo3(signature = (path, *, dtype=None, threads=None, quality_floor=None))]
    fn load(
        py: Python<'_>,
        path: std::path::PathBuf,
        dtype: Option<&str>,
        threads: Option<usize>,
        quality_floor: Option<f32>,
    ) -> PyResult<Self> {
        Ok(Self {
            inner: load_model(py, dtype, threads, quality_floor, move |o| {
                Classifier::load_with(&path, &o)
            })?,
        })
    }

    /// For each text, every label with its probability, best first.
    fn predict(
        &self,
        py: Python<'_>,
        texts: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<Vec<(String, f32)>>> {
        let (texts, _) = texts_arg(texts, "texts")?;
        let inner = self.inner.clone();
        let preds = detached(py, move || inner.predict(&texts))?;
        Ok(preds
            .into_iter()
            .map(|p| p.into_iter().map(|x| (x.label, x.score)).collect())
            .collect())
    }

    /// Raw logits, float32 array (n, labels).
    #[pyo3(signature = (texts, *, truncate=true))]
    fn logits<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        truncate: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (texts, _) = texts_arg(texts, "texts")?;
        let inner = self.inner.clone();
        let arr = detached(py, move || inner.logits(&texts, truncate))?;
        Ok(arr.into_pyarray(py).into_any())
    }

    /// Labels in index order.
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.inner.labels().to_vec()
    }

    /// Path, sizes, dtype, ISA and threads.
    #[getter]
    fn model_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        info_dict(py, &self.inner.info())
    }
}

/// A cross-encoder reranker.
#[pyclass(name = "Reranker", module = "rinfer._rinfer", frozen)]
pub struct PyReranker {
    inner: Arc<Reranker>,
}

#[pymethods]
impl PyReranker {
    /// Loads a cross-encoder folder (one-logit sequence classifier).
    ///
    /// `dtype`: "f32" (default), "bf16" or "int8" for the encoder's matrix products;
    /// for bf16/int8 the quality against f32 on a probe set is measured at load
    /// (`model_info["quality"]`) and loading raises `ModelLoadError` when its minimum
    /// cosine is under `quality_floor` (default 0.999 bf16, 0.99 int8). `threads`
    /// resizes the compute pool.
    #[staticmethod]
    #[pyo3(signature = (path, *, dtype=None, threads=None, quality_floor=None))]
    fn load(
        py: Python<'_>,
        path: std::path::PathBuf,
        dtype: Option<&str>,
        threads: Option<usize>,
        quality_floor: Option<f32>,
    ) -> PyResult<Self> {
        Ok(Self {
            inner: load_model(py, dtype, threads, quality_floor, move |o| {
                Reranker::load_with(&path, &o)
            })?,
        })
    }

    /// (index, score) of passages by relevance, best first; score = sigmoid(logit).
    #[pyo3(signature = (query, passages, top_k=None))]
    fn rerank(
        &self,
        py: Python<'_>,
        query: String,
        passages: &Bound<'_, PyAny>,
        top_k: Option<usize>,
    ) -> PyResult<Vec<(usize, f32)>> {
        let (passages, _) = texts_arg(passages, "passages")?;
        let inner = self.inner.clone();
        let ranked = detached(py, move || {
            let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
            inner.rerank(&query, &refs, top_k)
        })?;
        Ok(ranked.into_iter().map(|r| (r.index, r.score)).collect())
    }

    /// Path, sizes, dtype, ISA and threads.
    #[getter]
    fn model_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        info_dict(py, &self.inner.info())
    }
}
