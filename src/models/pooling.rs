//! Sentence pooling over ragged hidden states (sentence-transformers' `Pooling`
//! module): CLS, mean, max, mean/sqrt(len), last token; several modes concatenate.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::kernels::Kernels;

/// One way to turn a sequence's token vectors into one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolingMode {
    /// The first token's vector.
    Cls,
    /// Element-wise maximum over tokens.
    Max,
    /// Mean over tokens.
    Mean,
    /// Sum over tokens divided by sqrt(token count).
    MeanSqrtLen,
    /// The last token's vector.
    LastToken,
}

/// Pooling modes in sentence-transformers' concatenation order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pooling {
    modes: Vec<PoolingMode>,
}

#[derive(Deserialize)]
struct StPoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

impl Pooling {
    /// Pooling with the given modes (at least one).
    pub fn new(modes: Vec<PoolingMode>) -> Result<Self> {
        if modes.is_empty() {
            return Err(Error::InvalidInput(
                "pooling needs at least one mode".into(),
            ));
        }
        Ok(Self { modes })
    }

    /// Reads a sentence-transformers `1_Pooling/config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: StPoolingConfig = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: format!("not a pooling config: {e}"),
        })?;
        if cfg.pooling_mode_weightedmean_tokens {
            return Err(Error::Config {
                path: path.to_path_buf(),
                reason: "weighted-mean pooling is not supported".into(),
            });
        }
        let modes: Vec<PoolingMode> = [
            (cfg.pooling_mode_cls_token, PoolingMode::Cls),
            (cfg.pooling_mode_max_tokens, PoolingMode::Max),
            (cfg.pooling_mode_mean_tokens, PoolingMode::Mean),
            (
                cfg.pooling_mode_mean_sqrt_len_tokens,
                PoolingMode::MeanSqrtLen,
            ),
            (cfg.pooling_mode_lasttoken, PoolingMode::LastToken),
        ]
        .into_iter()
        .filter_map(|(on, m)| on.then_some(m))
        .collect();
        Self::new(modes).map_err(|_| Error::Config {
            path: path.to_path_buf(),
            reason: "no pooling mode is switched on".into(),
        })
    }

    /// The modes, in output order.
    pub fn modes(&self) -> &[PoolingMode] {
        &self.modes
    }

    /// Output width for hidden size `h`.
    pub fn dim(&self, h: usize) -> usize {
        h * self.modes.len()
    }

    /// Pools `hidden` (`[tokens x h]`, sequences delimited by `offsets`) into
    /// `out` (`[sequences x dim]`). An empty sequence pools to zeros.
    pub fn pool(
        &self,
        kern: &Kernels,
        hidden: &[f32],
        h: usize,
        offsets: &[usize],
        out: &mut [f32],
    ) {
        let dim = self.dim(h);
        for (s, w) in offsets.windows(2).enumerate() {
            let rows = &hidden[w[0] * h..w[1] * h];
            let len = w[1] - w[0];
            for (j, mode) in self.modes.iter().enumerate() {
                let o = &mut out[s * dim + j * h..s * dim + (j + 1) * h];
                if len == 0 {
                    o.fill(0.0);
                    continue;
                }
                match mode {
                    PoolingMode::Cls => o.copy_from_slice(&rows[..h]),
                    PoolingMode::LastToken => o.copy_from_slice(&rows[(len - 1) * h..]),
                    PoolingMode::Mean => (kern.mean_rows)(rows, o),
                    PoolingMode::MeanSqrtLen => {
                        (kern.mean_rows)(rows, o);
                        let f = (len as f32).sqrt();
                        o.iter_mut().for_each(|v| *v *= f);
                    }
                    PoolingMode::Max => {
                        o.copy_from_slice(&rows[..h]);
                        for r in rows.chunks_exact(h).skip(1) {
                            for (a, b) in o.iter_mut().zip(r) {
                                *a = a.max(*b);
                            }
                        }
                    }
                }
            }
        }
    }
}
