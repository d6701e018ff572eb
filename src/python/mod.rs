//! Python bindings (feature `python`), built by maturin as `rinfer._rinfer`.

mod aio;
mod common;
mod embedder;
mod errors;
mod generator;
mod heads;

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// `rinfer.build_info()`: version, ISA in use, supported ISAs, threads, features.
#[pyfunction]
fn build_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let info = crate::build_info();
    let d = PyDict::new(py);
    d.set_item("version", info.version)?;
    d.set_item("isa", info.isa.name())?;
    d.set_item(
        "supported_isas",
        info.supported_isas
            .iter()
            .map(|i| i.name())
            .collect::<Vec<_>>(),
    )?;
    d.set_item("dtypes", info.dtypes)?;
    d.set_item("threads", info.threads)?;
    d.set_item("features", info.features)?;
    Ok(d)
}

/// `rinfer.set_num_threads(n)`: resize the compute pool.
#[pyfunction]
fn set_num_threads(n: usize) -> PyResult<()> {
    if n == 0 {
        return Err(errors::to_py(crate::Error::InvalidInput(
            "n must be positive".into(),
        )));
    }
    crate::kernels::threads::set_num_threads(n);
    Ok(())
}

/// `rinfer.model_kind(path)`: `"embedder"`, `"classifier"`, `"reranker"` or
/// `"sparse"`, from the folder's configs and its weights' header.
#[pyfunction]
fn model_kind(path: std::path::PathBuf) -> PyResult<&'static str> {
    crate::engine::model_kind(&path).map_err(errors::to_py)
}

/// Completes an asyncio future on its loop's thread, unless it was cancelled.
#[pyfunction]
fn _resolve(fut: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>, failed: bool) -> PyResult<()> {
    if fut.call_method0("done")?.extract::<bool>()? {
        return Ok(());
    }
    if failed {
        fut.call_method1("set_exception", (value,))?;
    } else {
        fut.call_method1("set_result", (value,))?;
    }
    Ok(())
}

// `gil_used = true`: PyO3 before 0.28 declared every module as needing the GIL
// (a free-threaded interpreter turns it back on at import); 0.28 changed the
// default. Kept as it was: declaring free-threading support is a change of its
// own, to be made with tests on a free-threaded build. (abi3 builds have no such
// slot; it applies to version-specific free-threaded builds only.)
#[pymodule(gil_used = true)]
fn _rinfer(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // numpy's C API is loaded now, not lazily on the first returned array: a
    // pending KeyboardInterrupt must not make that import fail inside a binding.
    let _ = numpy::PyArray1::<f32>::zeros(m.py(), 0, false);
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(model_kind, m)?)?;
    m.add_function(wrap_pyfunction!(_resolve, m)?)?;
    m.add_class::<embedder::PyEmbedder>()?;
    m.add_class::<heads::PyClassifier>()?;
    m.add_class::<heads::PyReranker>()?;
    m.add_class::<generator::PyGenerator>()?;
    m.add_class::<generator::PyCompletion>()?;
    m.add_class::<generator::PyGenerationStream>()?;
    errors::register(m)?;
    Ok(())
}
