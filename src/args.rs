//! The checks and conversions the Python bindings apply to their arguments, in
//! plain Rust (no pyo3) so that they are tested and fuzzed without Python
//! (`crate::fuzzing::python_args`). Each refuses a bad value with
//! [`Error::InvalidInput`]; none panics, whatever the value.

use std::time::{Duration, Instant};

use crate::batcher::BatcherConfig;
use crate::engine::LoadOptions;
use crate::error::{Error, Result};
use crate::kernels::Precision;

/// `dtype`, `quality_floor` and `threads` of every `load`: the load options and
/// the thread count to set, if any.
pub(crate) fn load_options(
    dtype: Option<&str>,
    quality_floor: Option<f32>,
    threads: Option<usize>,
) -> Result<(LoadOptions, Option<usize>)> {
    let dtype = match dtype {
        Some(d) => Precision::parse(d)?,
        None => Precision::F32,
    };
    if let Some(f) = quality_floor {
        if !(f.is_finite() && (-1.0..=1.0).contains(&f)) {
            return Err(Error::InvalidInput(format!(
                "quality_floor must be a cosine in [-1, 1], got {f}"
            )));
        }
    }
    let threads = positive_threads(threads)?;
    let opts = LoadOptions {
        dtype,
        quality_floor,
        ..Default::default()
    };
    Ok((opts, threads))
}

/// `threads`: positive when given.
pub(crate) fn positive_threads(threads: Option<usize>) -> Result<Option<usize>> {
    match threads {
        Some(0) => Err(Error::InvalidInput("threads must be positive".into())),
        other => Ok(other),
    }
}

/// `Embedder.load`'s batcher keywords.
pub(crate) fn batcher_config(
    max_batch_tokens: usize,
    max_wait_ms: f64,
    max_queue: usize,
) -> Result<BatcherConfig> {
    let max_wait = (max_wait_ms.is_finite() && max_wait_ms >= 0.0)
        .then(|| Duration::try_from_secs_f64(max_wait_ms / 1000.0).ok())
        .flatten();
    match max_wait {
        Some(max_wait) if max_batch_tokens > 0 && max_queue > 0 => Ok(BatcherConfig {
            max_batch_tokens,
            max_wait,
            max_queue,
        }),
        _ => Err(Error::InvalidInput(format!(
            "max_batch_tokens ({max_batch_tokens}) and max_queue ({max_queue}) must be positive, \
             max_wait_ms ({max_wait_ms}) finite, >= 0 and below 1.8e22"
        ))),
    }
}

/// `timeout_s`: a deadline that many seconds from now. A timeout too long for a
/// `Duration` or the clock (1e300) never expires: no deadline, not an overflow.
pub(crate) fn deadline(timeout_s: Option<f64>) -> Result<Option<Instant>> {
    match timeout_s {
        None => Ok(None),
        Some(t) if t.is_finite() && t > 0.0 => Ok(Duration::try_from_secs_f64(t)
            .ok()
            .and_then(|d| Instant::now().checked_add(d))),
        Some(t) => Err(Error::InvalidInput(format!(
            "timeout_s must be a positive number of seconds, got {t}"
        ))),
    }
}

/// Token ids given as signed integers (a numpy int64/int32 array, a list of int),
/// for input `index`: each must fit in `u32`.
pub(crate) fn token_ids<T: TryInto<u32>>(
    values: impl IntoIterator<Item = T>,
    index: usize,
) -> Result<Vec<u32>> {
    values
        .into_iter()
        .map(|x| x.try_into().ok())
        .collect::<Option<Vec<u32>>>()
        .ok_or_else(|| {
            Error::InvalidInput(format!("ids[{index}] holds a token id outside 0..2^32"))
        })
}
