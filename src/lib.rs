//! rinfer: an embedded transformer inference engine.
//!
//! Layers, lowest first: [`kernels`] (SIMD, chosen at run time) ← [`tensor`] ←
//! [`weights`] (safetensors via mmap) and [`models`] ← [`engine`] (what users call).
//! Nothing lower imports anything higher.
//!
//! ```
//! use rinfer::kernels::{self, Activation, PackedB};
//! // C = A·Wᵀ + bias, W in PyTorch `Linear` layout (out x in).
//! let (m, k, n) = (2, 3, 2);
//! let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
//! let w = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
//! let packed = PackedB::from_nk(&w, n, k, kernels::active()).unwrap();
//! let mut c = vec![0.0; m * n];
//! kernels::gemm(&a, m, &packed, Some(&[0.5, 0.5]), Activation::None, &mut c).unwrap();
//! assert_eq!(c, [1.5, 2.5, 4.5, 5.5]);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

mod args;
pub mod batcher;
pub mod engine;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod generate;
pub mod kernels;
pub mod models;
pub mod quality;
pub mod tensor;
pub mod tokenizer;
pub mod weights;

#[cfg(feature = "python")]
mod python;

pub use engine::chat::Message;
pub use engine::{
    model_kind, Classifier, Completion, Embedder, EncodeOptions, Generator, LoadOptions, ModelInfo,
    Prediction, Prompt, Ranked, Reranker, SparseVector,
};
pub use error::{Error, Result};
pub use generate::{FinishReason, SamplingParams};
pub use kernels::{Isa, Precision};
pub use quality::Quality;
pub use tensor::{DType, Tensor, TensorView};
pub use weights::Weights;

/// What this build runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    /// Crate version.
    pub version: &'static str,
    /// The ISA path in use (after `RINFER_ISA`).
    pub isa: Isa,
    /// Every ISA path this CPU supports.
    pub supported_isas: Vec<Isa>,
    /// Precisions the ISA path in use runs natively (`f32`, and `bf16`, `int8`
    /// where it has those kernels).
    pub dtypes: Vec<&'static str>,
    /// Threads of the compute pool.
    pub threads: usize,
    /// Cargo features compiled in.
    pub features: Vec<&'static str>,
}

/// Version, chosen ISA, threads and features of this process.
pub fn build_info() -> BuildInfo {
    let features = if cfg!(feature = "python") {
        vec!["python"]
    } else {
        vec![]
    };
    let active = kernels::active();
    let dtypes = if active.lowp.is_some() {
        Precision::ALL.iter().map(|p| p.name()).collect()
    } else {
        vec![Precision::F32.name()]
    };
    BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        isa: active.isa,
        dtypes,
        supported_isas: Isa::supported(),
        threads: kernels::threads::num_threads(),
        features,
    }
}
