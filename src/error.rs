//! The crate's one error type: every fallible public function returns [`Result`].

use std::path::PathBuf;

/// Everything that can go wrong in rinfer, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, mapped or read.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A safetensors file is malformed: bad header, offsets outside the data,
    /// overlapping tensors, unknown dtype, or a shape that does not match its bytes.
    #[error("{path}: malformed safetensors file: {reason}")]
    MalformedWeights {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A tensor a model needs is not in the weights (none of the names tried exist).
    #[error("{path}: tensor `{name}` not found (tried: {tried})")]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The name the model asked for.
        name: String,
        /// Every full name that was tried, prefixes included.
        tried: String,
    },

    /// A tensor exists but has another shape than the model expects.
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The weights file (or a description of where the tensor came from).
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The shape the file holds.
        found: Vec<usize>,
    },

    /// A tensor's dtype is one rinfer cannot use for it.
    #[error("{path}: tensor `{name}` has dtype {found}, expected one of {expected}")]
    DTypeMismatch {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The dtypes that would be accepted.
        expected: String,
        /// The dtype the file holds.
        found: String,
    },

    /// Arguments to an operation disagree with each other (wrong lengths, shapes).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// `RINFER_ISA` (or an explicit request) names an instruction set that is unknown
    /// or that this CPU does not have.
    #[error("instruction set `{requested}` is not available: {reason}")]
    IsaUnavailable {
        /// What was asked for.
        requested: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// The thread pool could not be built.
    #[error("thread pool: {0}")]
    ThreadPool(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
