//! Python bindings (feature `python`), built by maturin as `rinfer._rinfer`.

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
    d.set_item("threads", info.threads)?;
    d.set_item("features", info.features)?;
    Ok(d)
}

#[pymodule]
fn _rinfer(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    Ok(())
}
