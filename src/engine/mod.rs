//! What users load and call: [`Embedder`] (sentence embeddings), [`Classifier`]
//! (sequence classification) and [`Reranker`] (cross-encoder scoring), each built
//! from a Hugging Face / sentence-transformers model folder of any supported family
//! (`config.json`'s `model_type` decides; see [`crate::models::config`]).

pub mod chat;
mod embedder;
mod folder;
mod generator;
mod heads;
mod modules;
pub mod scheduler;

pub use crate::models::splade::SparseVector;
pub use embedder::{Embedder, EncodeOptions};
pub use folder::{model_kind, LoadOptions, ModelInfo};
pub use generator::{Completion, Generator, Prompt};
pub use heads::{Classifier, Prediction, Ranked, Reranker};
pub use modules::StConfig;
pub use scheduler::{Scheduler, SchedulerLimits, Stream};
