//! Model families: one encoder implementation ([`encoder`]) driven by a small
//! description, one file per family mapping its `config.json` and tensor names onto
//! it, sentence pooling, and the config reader that picks the family.

pub mod bert;
pub mod config;
pub mod distilbert;
pub mod encoder;
pub mod gte;
pub mod head;
pub mod jina;
mod layers;
pub mod modernbert;
pub mod mpnet;
pub mod nomic;
pub mod pooling;
pub mod roberta;
pub mod rotary;
pub mod splade;

pub use encoder::{Encoder, EncoderConfig, TokenBatch};
pub use head::ClassifierHead;
pub use pooling::{Pooling, PoolingMode};
