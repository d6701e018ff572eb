//! The one place engine errors become Python exceptions.

use pyo3::exceptions::{
    PyException, PyFileNotFoundError, PyOSError, PyPermissionError, PyTimeoutError,
};
use pyo3::prelude::*;
use pyo3::{create_exception, PyErr};

use crate::error::Error;

create_exception!(
    _rinfer,
    RinferError,
    PyException,
    "Base class of every rinfer error."
);
create_exception!(
    _rinfer,
    ModelLoadError,
    RinferError,
    "A model folder or weights file cannot be used."
);
create_exception!(
    _rinfer,
    InvalidInputError,
    RinferError,
    "An input is malformed, too long or out of range."
);
create_exception!(
    _rinfer,
    InputTooLongError,
    InvalidInputError,
    "An input has more tokens than the model accepts and truncation is off."
);
create_exception!(
    _rinfer,
    OverloadedError,
    RinferError,
    "The request queue is full: retry later."
);
create_exception!(
    _rinfer,
    UnsupportedError,
    RinferError,
    "The loaded model cannot do what was asked."
);

/// Maps an engine error to the matching Python exception.
pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
            _ => PyOSError::new_err(msg),
        },
        Error::MalformedWeights { .. }
        | Error::MissingTensor { .. }
        | Error::ShapeMismatch { .. }
        | Error::DTypeMismatch { .. }
        | Error::Config { .. }
        | Error::QualityBelowFloor { .. } => ModelLoadError::new_err(msg),
        Error::InputTooLong { .. } => InputTooLongError::new_err(msg),
        Error::InvalidInput(_) | Error::Tokenizer(_) => InvalidInputError::new_err(msg),
        Error::Overloaded { .. } => OverloadedError::new_err(msg),
        Error::Unsupported(_) => UnsupportedError::new_err(msg),
        Error::Expired => PyTimeoutError::new_err(msg),
        Error::IsaUnavailable { .. }
        | Error::ThreadPool(_)
        | Error::ShutDown
        | Error::Internal(_)
        | Error::Cancelled => RinferError::new_err(msg),
    }
}

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RinferError", py.get_type::<RinferError>())?;
    m.add("ModelLoadError", py.get_type::<ModelLoadError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("InputTooLongError", py.get_type::<InputTooLongError>())?;
    m.add("OverloadedError", py.get_type::<OverloadedError>())?;
    m.add("UnsupportedError", py.get_type::<UnsupportedError>())?;
    Ok(())
}
