//! Model families: one encoder implementation ([`encoder`]) driven by a small
//! description, one file per family mapping its `config.json` and tensor names onto
//! it, sentence pooling, and the config reader that picks the family.

pub mod bert;
pub mod config;
pub mod decoder;
pub mod distilbert;
pub mod encoder;
pub mod gemma3;
pub mod gte;
pub mod head;
mod hf_decoder;
pub mod jina;
pub mod kv_cache;
mod layers;
pub mod llama;
pub mod modernbert;
pub mod mpnet;
pub mod nomic;
pub mod pooling;
pub mod qwen;
pub mod roberta;
pub mod rotary;
pub mod splade;

pub use config::ModelConfig;
pub use decoder::{Decoder, DecoderConfig};
pub use encoder::{Encoder, EncoderConfig, TokenBatch};
pub use head::ClassifierHead;
pub use pooling::{Pooling, PoolingMode};

/// A loaded model: an encoder or a decoder, run the same way on a ragged batch.
#[derive(Debug)]
pub enum Model {
    /// A BERT-like encoder.
    Encoder(Encoder),
    /// A Llama-like decoder.
    Decoder(Decoder),
}

impl Model {
    /// Loads the model `cfg` describes from `weights`, its projections in `precision`.
    pub fn load_with(
        cfg: &ModelConfig,
        weights: &crate::weights::Weights,
        precision: crate::kernels::Precision,
    ) -> crate::error::Result<Self> {
        Ok(match cfg {
            ModelConfig::Encoder(c) => Self::Encoder(Encoder::load_with(c, weights, precision)?),
            ModelConfig::Decoder(c) => Self::Decoder(Decoder::load_with(c, weights, precision)?),
        })
    }

    /// Last hidden states, `[tokens x hidden]`.
    pub fn forward(&self, batch: &TokenBatch) -> crate::error::Result<Vec<f32>> {
        match self {
            Self::Encoder(m) => m.forward(batch),
            Self::Decoder(m) => m.forward(batch),
        }
    }

    /// The kernel table the weights were packed for.
    pub fn kernels(&self) -> &'static crate::kernels::Kernels {
        match self {
            Self::Encoder(m) => m.kernels(),
            Self::Decoder(m) => m.kernels(),
        }
    }

    /// The precision of the layers' matrix products.
    pub fn precision(&self) -> crate::kernels::Precision {
        match self {
            Self::Encoder(m) => m.precision(),
            Self::Decoder(m) => m.precision(),
        }
    }
}
