//! The sentence-transformers modules of a model folder, in the formats of every
//! release from 2.x to 6.x: `modules.json` (Transformer, Pooling, Dense, Normalize,
//! in that order), `N_Dense/` (config and safetensors weights),
//! `config_sentence_transformers.json` (prompts, default prompt, similarity).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::folder::read_json;
use crate::error::{Error, Result};
use crate::kernels::{self, Activation, Kernels, PackedB};
use crate::models::splade::SpladePooling;
use crate::models::{Pooling, PoolingMode};
use crate::weights::Weights;

#[derive(Deserialize)]
struct StModule {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// A `Dense` module: `act(W · x + b)` on the pooled vector.
pub(crate) struct Dense {
    w: PackedB,
    b: Option<Vec<f32>>,
    act: DenseAct,
    out: usize,
}

/// Activations a `Dense` module may name (`torch.nn.modules...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DenseAct {
    Identity,
    Tanh,
    Relu,
    Gelu,
    Silu,
    Sigmoid,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DenseConfig {
    in_features: usize,
    out_features: usize,
    #[serde(default = "yes")]
    bias: bool,
    #[serde(default)]
    activation_function: Option<String>,
    #[serde(default)]
    module_input_name: Option<String>,
    #[serde(default)]
    module_output_name: Option<String>,
}

fn yes() -> bool {
    true
}

impl Dense {
    /// Loads `dir/config.json` and `dir/model.safetensors` (`linear.weight`,
    /// `linear.bias`); `width` is the vector it receives.
    fn load(dir: &Path, width: usize, kern: &'static Kernels) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let cfg: DenseConfig = read_json(&cfg_path)?;
        let bad = |reason: String| Error::Config {
            path: cfg_path.clone(),
            reason,
        };
        if cfg.in_features != width {
            return Err(bad(format!(
                "in_features {} differs from the {width} values the module before it gives",
                cfg.in_features
            )));
        }
        for name in [&cfg.module_input_name, &cfg.module_output_name]
            .into_iter()
            .flatten()
        {
            if name != "sentence_embedding" {
                return Err(bad(format!(
                    "module_input_name/module_output_name `{name}` is not supported (sentence_embedding)"
                )));
            }
        }
        let act = match cfg.activation_function.as_deref().map(|a| a.rsplit('.').next().unwrap_or(a)) {
            None | Some("Identity") => DenseAct::Identity,
            Some("Tanh") => DenseAct::Tanh,
            Some("ReLU") => DenseAct::Relu,
            Some("GELU") => DenseAct::Gelu,
            Some("SiLU") => DenseAct::Silu,
            Some("Sigmoid") => DenseAct::Sigmoid,
            Some(other) => {
                return Err(bad(format!(
                    "activation_function `{other}` is not supported (Identity, Tanh, ReLU, GELU, SiLU, Sigmoid)"
                )))
            }
        };
        let st = dir.join("model.safetensors");
        if !st.is_file() {
            let found = ["pytorch_model.bin", "model.bin"]
                .iter()
                .find(|f| dir.join(f).is_file());
            return Err(Error::Io {
                path: st,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    match found {
                        Some(f) => format!("the Dense weights are in {f}; rinfer reads safetensors only (re-save the model with safe_serialization)"),
                        None => "Dense module weights not found".to_string(),
                    },
                ),
            });
        }
        let weights = Weights::open(&st)?;
        let (n, k) = (cfg.out_features, cfg.in_features);
        let w = weights.get_f32("linear.weight", &[n, k])?;
        let b = if cfg.bias {
            Some(weights.get_f32("linear.bias", &[n])?.into_data())
        } else {
            None
        };
        Ok(Self {
            w: PackedB::from_nk(w.data(), n, k, kern)?,
            b,
            act,
            out: n,
        })
    }

    /// `rows` vectors of the input width to `rows` of [`Self::out`].
    fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let mut out = vec![0.0f32; rows * self.out];
        let fused = match self.act {
            DenseAct::Relu => Activation::Relu,
            DenseAct::Gelu => Activation::GeluErf,
            DenseAct::Silu => Activation::Silu,
            _ => Activation::None,
        };
        kernels::gemm(x, rows, &self.w, self.b.as_deref(), fused, &mut out)?;
        match self.act {
            DenseAct::Tanh => out.iter_mut().for_each(|v| *v = v.tanh()),
            DenseAct::Sigmoid => out.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            _ => {}
        }
        Ok(out)
    }
}

/// What comes after the encoder: pooling, Dense layers, normalisation; or, for a
/// sparse model, SPLADE pooling over the MLM head (pooling, log1p twice).
pub(crate) struct Modules {
    pub pooling: Pooling,
    pub dense: Vec<Dense>,
    pub normalize: bool,
    pub splade: Option<(SpladePooling, bool)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpladeConfig {
    #[serde(default = "max")]
    pooling_strategy: String,
    #[serde(default = "relu")]
    activation_function: String,
    #[serde(default, alias = "word_embedding_dimension")]
    embedding_dimension: Option<usize>,
    #[serde(default)]
    chunk_size: Option<usize>,
}

fn max() -> String {
    "max".into()
}
fn relu() -> String {
    "relu".into()
}

/// Reads a `SpladePooling` module's config.
fn splade_config(path: &Path) -> Result<(SpladePooling, bool)> {
    let cfg: SpladeConfig = read_json(path)?;
    let _ = (cfg.embedding_dimension, cfg.chunk_size);
    let bad = |reason: String| Error::Config {
        path: path.to_path_buf(),
        reason,
    };
    let pooling = match cfg.pooling_strategy.as_str() {
        "max" => SpladePooling::Max,
        "sum" => SpladePooling::Sum,
        other => {
            return Err(bad(format!(
                "pooling_strategy `{other}` is not one of max, sum"
            )))
        }
    };
    let twice = match cfg.activation_function.as_str() {
        "relu" => false,
        "log1p_relu" => true,
        other => {
            return Err(bad(format!(
                "activation_function `{other}` is not one of relu, log1p_relu"
            )))
        }
    };
    Ok((pooling, twice))
}

/// The folder of a module, `path` relative to the model folder `dir`. A path that is
/// absolute, climbs out with `..`, or (through a link) resolves outside `dir` is
/// refused: a model folder's files name nothing outside it.
fn module_dir(dir: &Path, path: &str) -> std::result::Result<PathBuf, String> {
    use std::path::Component;
    let rel = Path::new(path);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "path `{path}` must name a folder inside the model folder (no absolute path, no `..`)"
        ));
    }
    let sub = dir.join(rel);
    if let (Ok(root), Ok(real)) = (dir.canonicalize(), sub.canonicalize()) {
        if !real.starts_with(&root) {
            return Err(format!(
                "path `{path}` resolves to {}, outside the model folder",
                real.display()
            ));
        }
    }
    Ok(sub)
}

impl Modules {
    /// Reads `modules.json` (absent: mean pooling, nothing else). Modules must come
    /// in sentence-transformers' order; one that rinfer does not run is refused.
    pub fn read(dir: &Path, hidden: usize, kern: &'static Kernels) -> Result<Self> {
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok(Self {
                pooling: Pooling::new(vec![PoolingMode::Mean])?,
                dense: Vec::new(),
                normalize: false,
                splade: None,
            });
        }
        let modules: Vec<StModule> = read_json(&modules_path)?;
        let bad = |reason: String| Error::Config {
            path: modules_path.clone(),
            reason,
        };
        let mut pooling = None;
        let mut dense = Vec::new();
        let mut normalize = false;
        let mut splade = None;
        let mut width = hidden;
        for (i, m) in modules.iter().enumerate() {
            let kind = m.kind.rsplit('.').next().unwrap_or("");
            let sub =
                module_dir(dir, &m.path).map_err(|reason| bad(format!("module {i}: {reason}")))?;
            match kind {
                "Transformer" | "MLMTransformer" if i == 0 => {}
                "SpladePooling" if i == 1 && modules.len() == 2 => {
                    splade = Some(splade_config(&sub.join("config.json"))?);
                }
                "Pooling" if pooling.is_none() && dense.is_empty() && !normalize => {
                    let p = Pooling::from_file(&sub.join("config.json"), hidden)?;
                    width = p.dim(hidden);
                    pooling = Some(p);
                }
                "Dense" if !normalize => {
                    let d = Dense::load(&sub, width, kern)?;
                    width = d.out;
                    dense.push(d);
                }
                "Normalize" if !normalize => normalize = true,
                "Transformer" | "Pooling" | "Dense" | "Normalize" => {
                    return Err(bad(format!(
                        "module {i} (`{kind}`) is out of the order Transformer, Pooling, Dense..., Normalize"
                    )))
                }
                other => {
                    return Err(bad(format!(
                        "module type `{other}` is not supported (Transformer, Pooling, Dense, Normalize; MLMTransformer, SpladePooling)"
                    )))
                }
            }
        }
        let pooling = match pooling {
            Some(p) => p,
            None => Pooling::new(vec![PoolingMode::Mean])?,
        };
        Ok(Self {
            pooling,
            dense,
            normalize,
            splade,
        })
    }

    /// Width of the vectors after pooling and the Dense layers, for hidden size `h`.
    pub fn dim(&self, h: usize) -> usize {
        self.dense.last().map_or(self.pooling.dim(h), |d| d.out)
    }

    /// The Dense layers over `rows` pooled vectors.
    pub fn dense(&self, mut x: Vec<f32>, rows: usize) -> Result<Vec<f32>> {
        for d in &self.dense {
            x = d.forward(&x, rows)?;
        }
        Ok(x)
    }
}

/// `config_sentence_transformers.json`: named prompts, the default one, and the
/// similarity function.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StConfig {
    /// Prompts by name (`{"query": "query: ", ...}`).
    #[serde(default)]
    pub prompts: BTreeMap<String, String>,
    /// The prompt used when a call names none.
    #[serde(default)]
    pub default_prompt_name: Option<String>,
    /// `cosine`, `dot`, `euclidean` or `manhattan`.
    #[serde(default)]
    pub similarity_fn_name: Option<String>,
}

impl StConfig {
    /// Reads the file when present; checks the default prompt exists.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("config_sentence_transformers.json");
        if !path.is_file() {
            return Ok(Self::default());
        }
        let cfg: StConfig = read_json(&path)?;
        if let Some(name) = &cfg.default_prompt_name {
            if !cfg.prompts.contains_key(name) {
                return Err(Error::Config {
                    path,
                    reason: format!("default_prompt_name `{name}` is not one of the prompts"),
                });
            }
        }
        Ok(cfg)
    }
}
