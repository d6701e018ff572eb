//! Text generation on the decoder: per-sequence KV caches
//! ([`crate::models::kv_cache`]), sampling ([`sampler`]), incremental
//! detokenisation ([`detok`]) and continuous batching ([`batch`]).

pub mod batch;
pub mod detok;
pub mod sampler;

pub use batch::{Batch, Event, FinishReason};
pub use detok::Detokenizer;
pub use sampler::{Choice, Sampler, SamplingParams};
