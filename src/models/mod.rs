//! Model families, one file each: configuration, weights loading and forward pass.

pub mod bert;
pub mod config;
pub mod pooling;

pub use bert::{BertModel, TokenBatch};
pub use config::BertConfig;
pub use pooling::{Pooling, PoolingMode};
