//! Helpers of the Python classes: argument extraction, running without the GIL,
//! numpy outputs, model info, loading options.

use std::sync::Arc;
use std::time::Instant;

use ndarray::{Array1, Array2};
use numpy::IntoPyArray;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::errors::{to_py, RinferError};
use crate::engine::{LoadOptions, ModelInfo};
use crate::error::Error;

/// Texts from a `str` (single = true) or a sequence of `str`.
pub(super) fn texts_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<(Vec<String>, bool)> {
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
pub(super) fn detached<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<T, Error> + Send,
) -> PyResult<T> {
    py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)))
        .map_err(|_| {
            RinferError::new_err("internal error: the engine panicked (a bug; please report it)")
        })?
        .map_err(to_py)
}

pub(super) fn rows_to_py(py: Python<'_>, arr: Array2<f32>, single: bool) -> Bound<'_, PyAny> {
    if single {
        let (v, _) = arr.into_raw_vec_and_offset();
        Array1::from_vec(v).into_pyarray(py).into_any()
    } else {
        arr.into_pyarray(py).into_any()
    }
}

pub(super) fn info_dict<'py>(py: Python<'py>, info: &ModelInfo) -> PyResult<Bound<'py, PyDict>> {
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
pub(super) fn load_model<T: Send>(
    py: Python<'_>,
    dtype: Option<&str>,
    threads: Option<usize>,
    quality_floor: Option<f32>,
    load: impl FnOnce(LoadOptions) -> Result<T, Error> + Send,
) -> PyResult<Arc<T>> {
    let (opts, threads) =
        crate::args::load_options(dtype, quality_floor, threads).map_err(to_py)?;
    set_threads(threads)?;
    Ok(Arc::new(detached(py, move || load(opts))?))
}

pub(super) fn set_threads(threads: Option<usize>) -> PyResult<()> {
    if let Some(n) = crate::args::positive_threads(threads).map_err(to_py)? {
        crate::kernels::threads::set_num_threads(n);
    }
    Ok(())
}

/// Deadline `timeout_s` seconds from now.
pub(super) fn deadline(timeout_s: Option<f64>) -> PyResult<Option<Instant>> {
    crate::args::deadline(timeout_s).map_err(to_py)
}

/// Borrowed views of owned text pairs, for the engine's pair calls.
pub(super) fn pair_refs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect()
}
