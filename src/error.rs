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

    /// A model configuration file is missing, unreadable or inconsistent.
    #[error("{path}: {reason}")]
    Config {
        /// The configuration file (or model folder) involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The tokenizer could not be loaded or failed on an input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// An input has more tokens than the model accepts and truncation was refused.
    #[error("input {index} has {tokens} tokens, more than the model's limit of {max} (truncation is off)")]
    InputTooLong {
        /// Position of the input in the request.
        index: usize,
        /// Its token count (special tokens included).
        tokens: usize,
        /// The model's limit.
        max: usize,
    },

    /// The loaded model cannot do what was asked (for instance rerank with an embedder).
    #[error("unsupported: {0}")]
    Unsupported(String),

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

    /// The request queue is full: retry later.
    #[error("overloaded: {queued} requests queued (capacity {capacity}); retry later")]
    Overloaded {
        /// Requests waiting.
        queued: usize,
        /// The queue's capacity.
        capacity: usize,
    },

    /// A queued request's deadline passed before it ran; it was dropped unrun.
    #[error("the request's deadline passed while it was queued; it was not run")]
    Expired,

    /// The caller gave up on a queued request; it was dropped unrun.
    #[error("the request was cancelled before it ran")]
    Cancelled,

    /// The batcher was shut down before the request ran.
    #[error("the batcher is shut down")]
    ShutDown,

    /// A reduced-precision model departs from its f32 self more than allowed: the
    /// lowest cosine on the probe set is under the floor.
    #[error("{dtype} quality below the floor: minimum cosine to f32 on the probe set is {min_cosine:.6}, floor {floor}")]
    QualityBelowFloor {
        /// The precision asked for.
        dtype: String,
        /// The lowest cosine measured.
        min_cosine: f32,
        /// The floor it had to reach.
        floor: f32,
    },

    /// The engine panicked while computing (a bug): the requests of that batch fail
    /// with this, and the service goes on.
    #[error("internal error: the engine panicked ({0}); the request was not completed")]
    Internal(String),

    /// The thread pool could not be built.
    #[error("thread pool: {0}")]
    ThreadPool(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
