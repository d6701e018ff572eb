//! Sequence-classification heads as each family's `*ForSequenceClassification`
//! computes them: pool the hidden states (first token, or mean), then
//! `out(norm(act(dense(pooled))))`, each part where the family has it.

use super::encoder::EncoderConfig;
use super::layers::{Linear, Norm, Packing};
use crate::error::{Error, Result};
use crate::kernels::{Activation, Kernels, Precision};
use crate::weights::Weights;

/// Where a family keeps its classification head.
#[derive(Debug)]
pub struct HeadNames {
    /// The dense layer on the pooled hidden state (none: straight to `out`).
    pub dense: Option<&'static str>,
    /// Its activation.
    pub dense_act: HeadAct,
    /// A LayerNorm after the activation (ModernBERT).
    pub norm: Option<&'static str>,
    /// The output projection to the logits.
    pub out: &'static str,
}

/// Activation of a classification head's dense layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadAct {
    /// `tanh` (BERT's pooler, RoBERTa's head).
    Tanh,
    /// ReLU (DistilBERT's `pre_classifier`).
    Relu,
    /// Exact GELU (ModernBERT's head).
    Gelu,
}

/// Which hidden states a head reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeadPooling {
    /// The first token (`[CLS]` / `<s>`).
    #[default]
    First,
    /// The mean over the sequence's tokens.
    Mean,
    /// The last token (decoders' `*ForSequenceClassification`).
    Last,
}

/// A loaded classification head.
pub struct ClassifierHead {
    dense: Option<Linear>,
    act: HeadAct,
    norm: Option<Norm>,
    out: Linear,
    pooling: HeadPooling,
    eps: f32,
    labels: usize,
    kernels: &'static Kernels,
}

impl std::fmt::Debug for ClassifierHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifierHead")
            .field("labels", &self.labels)
            .field("act", &self.act)
            .field("pooling", &self.pooling)
            .finish()
    }
}

impl ClassifierHead {
    /// Loads the head the family names; its width is read from the output weight.
    pub fn load(cfg: &EncoderConfig, weights: &Weights, kern: &'static Kernels) -> Result<Self> {
        let names = &cfg.names.head;
        let h = cfg.hidden_size;
        let out_name = format!("{}.weight", names.out);
        let labels = match weights.info(&out_name) {
            Some((_, shape)) if shape.len() == 2 && shape[0] > 0 => shape[0],
            _ => {
                return Err(Error::MissingTensor {
                    path: weights.path().to_path_buf(),
                    name: out_name.clone(),
                    tried: format!(
                        "`{out_name}`: not a sequence-classification model of family `{}`",
                        cfg.model_type
                    ),
                })
            }
        };
        let p = Packing {
            kernels: kern,
            precision: Precision::F32,
        };
        let dense = match names.dense {
            Some(name) => Some(Linear::load(weights, name, h, h, cfg.head_bias, p)?),
            None => None,
        };
        let norm = match names.norm {
            Some(name) => Some(Norm::load(weights, name, h, cfg.norm_bias)?),
            None => None,
        };
        Ok(Self {
            dense,
            act: names.dense_act,
            norm,
            out: Linear::load(weights, names.out, labels, h, true, p)?,
            pooling: cfg.head_pooling,
            eps: cfg.layer_norm_eps,
            labels,
            kernels: kern,
        })
    }

    /// A decoder's head: `name.weight` (`[labels x hidden]`, no bias) on each
    /// sequence's last token.
    pub fn last_token(
        weights: &Weights,
        name: &str,
        h: usize,
        kern: &'static Kernels,
    ) -> Result<Self> {
        let out_name = format!("{name}.weight");
        let labels = match weights.info(&out_name) {
            Some((_, shape)) if shape.len() == 2 && shape[0] > 0 => shape[0],
            _ => {
                return Err(Error::MissingTensor {
                    path: weights.path().to_path_buf(),
                    name: out_name.clone(),
                    tried: format!(
                        "`{out_name}`: not a sequence-classification checkpoint, and no LogitScore module in modules.json"
                    ),
                })
            }
        };
        let p = Packing {
            kernels: kern,
            precision: Precision::F32,
        };
        Ok(Self {
            dense: None,
            act: HeadAct::Tanh,
            norm: None,
            out: Linear::load(weights, name, labels, h, false, p)?,
            pooling: HeadPooling::Last,
            eps: 0.0,
            labels,
            kernels: kern,
        })
    }

    /// Number of logits.
    pub fn labels(&self) -> usize {
        self.labels
    }

    /// Logits `[sequences x labels]` from the encoder's hidden states.
    pub fn logits(&self, hidden: &[f32], h: usize, offsets: &[usize]) -> Result<Vec<f32>> {
        let n = offsets.len().saturating_sub(1);
        let mut pooled = vec![0.0f32; n * h];
        for (w, row) in offsets.windows(2).zip(pooled.chunks_exact_mut(h)) {
            match self.pooling {
                HeadPooling::First if w[1] > w[0] => {
                    row.copy_from_slice(&hidden[w[0] * h..(w[0] + 1) * h])
                }
                HeadPooling::Mean if w[1] > w[0] => {
                    (self.kernels.mean_rows)(&hidden[w[0] * h..w[1] * h], row)
                }
                HeadPooling::Last if w[1] > w[0] => {
                    row.copy_from_slice(&hidden[(w[1] - 1) * h..w[1] * h])
                }
                _ => {}
            }
        }
        let mid = match &self.dense {
            Some(dense) => {
                let mut mid = vec![0.0f32; n * h];
                let act = match self.act {
                    HeadAct::Relu => Activation::Relu,
                    HeadAct::Gelu => Activation::GeluErf,
                    HeadAct::Tanh => Activation::None,
                };
                dense.forward(&pooled, n, act, &mut mid)?;
                if self.act == HeadAct::Tanh {
                    mid.iter_mut().for_each(|v| *v = v.tanh());
                }
                mid
            }
            None => pooled,
        };
        let mut mid = mid;
        if let Some(norm) = &self.norm {
            for row in mid.chunks_exact_mut(h) {
                (self.kernels.layer_norm)(row, None, &norm.gamma, &norm.beta, self.eps);
            }
        }
        let mut out = vec![0.0f32; n * self.labels];
        self.out.forward(&mid, n, Activation::None, &mut out)?;
        Ok(out)
    }
}
