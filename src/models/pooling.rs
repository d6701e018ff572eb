//! Sentence pooling over ragged hidden states (sentence-transformers' `Pooling`
//! module): CLS, mean, max, mean/sqrt(len), weighted mean, last token; several modes
//! concatenate.

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
    /// Mean weighted by position (1 for the first token, 2 for the second, ...).
    WeightedMean,
}

/// Pooling modes in sentence-transformers' concatenation order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pooling {
    modes: Vec<PoolingMode>,
    include_prompt: bool,
}

/// `1_Pooling/config.json` as every sentence-transformers release writes it: the
/// 2.x-5.x boolean flags (`pooling_mode_*_tokens`), or 6.x's `pooling_mode` (one
/// name or a list) with `embedding_dimension` and `include_prompt`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StPoolingConfig {
    #[serde(default, alias = "word_embedding_dimension")]
    embedding_dimension: Option<usize>,
    #[serde(default)]
    pooling_mode: Option<ModeNames>,
    #[serde(default)]
    include_prompt: Option<bool>,
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

#[derive(Deserialize)]
#[serde(untagged)]
enum ModeNames {
    One(String),
    Many(Vec<String>),
}

impl PoolingMode {
    /// sentence-transformers' names, in its concatenation order of the legacy flags.
    pub const NAMES: [(&'static str, PoolingMode); 6] = [
        ("cls", PoolingMode::Cls),
        ("max", PoolingMode::Max),
        ("mean", PoolingMode::Mean),
        ("mean_sqrt_len_tokens", PoolingMode::MeanSqrtLen),
        ("weightedmean", PoolingMode::WeightedMean),
        ("lasttoken", PoolingMode::LastToken),
    ];

    /// Parses a sentence-transformers pooling mode name.
    pub fn parse(name: &str) -> std::result::Result<Self, String> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, m)| m)
            .ok_or_else(|| {
                format!(
                    "pooling mode `{name}` is not one of {}",
                    Self::NAMES.map(|(n, _)| n).join(", ")
                )
            })
    }
}

impl Pooling {
    /// Pooling with the given modes (at least one).
    pub fn new(modes: Vec<PoolingMode>) -> Result<Self> {
        if modes.is_empty() {
            return Err(Error::InvalidInput(
                "pooling needs at least one mode".into(),
            ));
        }
        Ok(Self {
            modes,
            include_prompt: true,
        })
    }

    /// Reads a sentence-transformers `1_Pooling/config.json` (any release's format);
    /// `hidden` is the encoder's width, which `embedding_dimension` must equal.
    pub fn from_file(path: &Path, hidden: usize) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |reason: String| Error::Config {
            path: path.to_path_buf(),
            reason,
        };
        let cfg: StPoolingConfig =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a pooling config: {e}")))?;
        if let Some(d) = cfg.embedding_dimension {
            if d != hidden {
                return Err(bad(format!(
                    "embedding_dimension {d} differs from the model's hidden_size {hidden}"
                )));
            }
        }
        let modes: Vec<PoolingMode> = match cfg.pooling_mode {
            Some(ModeNames::One(name)) => vec![PoolingMode::parse(&name).map_err(bad)?],
            Some(ModeNames::Many(names)) => names
                .iter()
                .map(|n| PoolingMode::parse(n))
                .collect::<std::result::Result<_, _>>()
                .map_err(bad)?,
            None => {
                let flags = [
                    cfg.pooling_mode_cls_token,
                    cfg.pooling_mode_max_tokens,
                    cfg.pooling_mode_mean_tokens,
                    cfg.pooling_mode_mean_sqrt_len_tokens,
                    cfg.pooling_mode_weightedmean_tokens,
                    cfg.pooling_mode_lasttoken,
                ];
                let on: Vec<PoolingMode> = flags
                    .iter()
                    .zip(PoolingMode::NAMES)
                    .filter_map(|(&on, (_, m))| on.then_some(m))
                    .collect();
                // sentence-transformers pools by mean when no flag is on.
                if on.is_empty() {
                    vec![PoolingMode::Mean]
                } else {
                    on
                }
            }
        };
        let mut pooling = Self::new(modes).map_err(|e| bad(e.to_string()))?;
        pooling.include_prompt = cfg.include_prompt.unwrap_or(true);
        Ok(pooling)
    }

    /// Whether prompt tokens take part in pooling (`include_prompt`, default true).
    pub fn include_prompt(&self) -> bool {
        self.include_prompt
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
    /// `out` (`[sequences x dim]`), leaving out the first `skip` tokens of each
    /// sequence (a prompt, when `include_prompt` is false: sentence-transformers
    /// masks them, so CLS reads the first token after them and weighted mean keeps
    /// the others' positions). A sequence with nothing left pools to zeros.
    pub fn pool(
        &self,
        kern: &Kernels,
        hidden: &[f32],
        h: usize,
        offsets: &[usize],
        skip: usize,
        out: &mut [f32],
    ) {
        let dim = self.dim(h);
        for (s, w) in offsets.windows(2).enumerate() {
            let start = skip.min(w[1] - w[0]);
            let rows = &hidden[(w[0] + start) * h..w[1] * h];
            let len = w[1] - w[0] - start;
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
                    PoolingMode::WeightedMean => {
                        o.fill(0.0);
                        let mut total = 0.0f32;
                        for (i, r) in rows.chunks_exact(h).enumerate() {
                            let w = (start + i + 1) as f32;
                            total += w;
                            o.iter_mut().zip(r).for_each(|(a, b)| *a += w * b);
                        }
                        o.iter_mut().for_each(|v| *v /= total);
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
