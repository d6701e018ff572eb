//! Choosing the next token from a row of logits: repetition, presence and
//! frequency penalties, logit bias, then greedy or temperature sampling with
//! top-k, top-p and min-p, from a per-sequence seeded generator (the same seed
//! gives the same tokens whatever else runs in the batch).

use std::collections::HashMap;

use crate::error::{Error, Result};

/// How a sequence picks its tokens and when it stops.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Tokens to generate at most.
    pub max_tokens: usize,
    /// 0 picks the most likely token (greedy); otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches
    /// `top_p` (1: all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0: none).
    pub min_p: f32,
    /// transformers' repetition penalty on prompt and generated tokens (1: none).
    pub repetition_penalty: f32,
    /// OpenAI's presence penalty on generated tokens.
    pub presence_penalty: f32,
    /// OpenAI's frequency penalty on generated tokens.
    pub frequency_penalty: f32,
    /// Added to the logit of these tokens.
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed of this sequence's random draws (none: from the system clock).
    pub seed: Option<u64>,
    /// Tokens that end the sequence (besides the model's end-of-sequence ids).
    pub stop_token_ids: Vec<u32>,
    /// Texts that end the sequence; never part of the output.
    pub stop: Vec<String>,
    /// Keep going past the model's end-of-sequence tokens.
    pub ignore_eos: bool,
    /// Report the log-probability of each chosen token and of this many
    /// alternatives (at most 20).
    pub logprobs: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: None,
            stop_token_ids: Vec::new(),
            stop: Vec::new(),
            ignore_eos: false,
            logprobs: None,
        }
    }
}

impl SamplingParams {
    /// Refuses values outside their ranges, naming the field.
    pub fn validate(&self, vocab: usize) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidInput(m));
        if self.max_tokens == 0 {
            return bad("max_tokens must be at least 1".into());
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!("temperature {} must be >= 0", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p {} must be in (0, 1]", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p {} must be in [0, 1]", self.min_p));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(format!(
                "repetition_penalty {} must be > 0",
                self.repetition_penalty
            ));
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(format!("{name} {v} must be in [-2, 2]"));
            }
        }
        if let Some(&(t, b)) = self
            .logit_bias
            .iter()
            .find(|(t, b)| *t as usize >= vocab || !b.is_finite())
        {
            return bad(format!(
                "logit_bias for token {t} ({b}): the token must be below {vocab} and the bias finite"
            ));
        }
        if let Some(&t) = self.stop_token_ids.iter().find(|&&t| t as usize >= vocab) {
            return bad(format!(
                "stop token id {t} is outside the vocabulary ({vocab})"
            ));
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("a stop string must not be empty".into());
        }
        if self.logprobs.is_some_and(|n| n > 20) {
            return bad("logprobs: at most 20 alternatives".into());
        }
        Ok(())
    }
}

/// splitmix64: a small, fast, well-mixed generator; enough for sampling.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The token a sampler chose, with its log-probability and the alternatives'.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// The token.
    pub token: u32,
    /// Its log-probability under the penalised, biased logits (NaN unless the
    /// parameters ask for `logprobs`).
    pub logprob: f32,
    /// The most likely tokens with their log-probabilities, when asked for.
    pub top: Vec<(u32, f32)>,
}

/// One sequence's sampler: its parameters, random state and token counts.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    /// Generated tokens and their counts (presence and frequency penalties).
    counts: HashMap<u32, u32>,
}

impl Sampler {
    /// A sampler for one sequence.
    pub fn new(params: SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        Self {
            params,
            rng: Rng(seed),
            counts: HashMap::new(),
        }
    }

    /// The parameters.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from `logits` (modified in place); `context` holds
    /// the prompt and the tokens generated so far (for the repetition penalty).
    pub fn sample(&mut self, logits: &mut [f32], context: &[u32]) -> Choice {
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            let mut seen = std::collections::HashSet::new();
            for &t in context {
                if seen.insert(t) {
                    if let Some(l) = logits.get_mut(t as usize) {
                        *l = if *l > 0.0 {
                            *l / p.repetition_penalty
                        } else {
                            *l * p.repetition_penalty
                        };
                    }
                }
            }
        }
        if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
            for (&t, &n) in &self.counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= p.presence_penalty + p.frequency_penalty * n as f32;
                }
            }
        }
        for &(t, b) in &p.logit_bias {
            logits[t as usize] += b;
        }
        let (greedy, logprobs) = (p.temperature == 0.0, p.logprobs);
        // The normaliser only when log-probabilities are asked for: a pass of exp
        // over the whole vocabulary, per token, that decoding does not need otherwise.
        let log_z = if logprobs.is_some() {
            log_sum_exp(logits)
        } else {
            f32::NAN
        };
        let token = if greedy {
            argmax(logits)
        } else {
            self.draw(logits)
        };
        let top = match logprobs {
            Some(n) if n > 0 => {
                let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
                let n = n.min(idx.len());
                idx.select_nth_unstable_by(n - 1, |&a, &b| {
                    logits[b as usize].total_cmp(&logits[a as usize])
                });
                idx.truncate(n);
                idx.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
                idx.into_iter()
                    .map(|t| (t, logits[t as usize] - log_z))
                    .collect()
            }
            _ => Vec::new(),
        };
        *self.counts.entry(token).or_insert(0) += 1;
        Choice {
            token,
            logprob: logits[token as usize] - log_z,
            top,
        }
    }

    /// Temperature, top-k, top-p and min-p, then one draw.
    fn draw(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        let t = p.temperature;
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, l / t))
            .collect();
        if cand.is_empty() {
            return argmax(logits);
        }
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 {
            cand.truncate(p.top_k);
        }
        let max = cand[0].1;
        let mut probs: Vec<f64> = cand.iter().map(|c| ((c.1 - max) as f64).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= total);
        let mut keep = probs.len();
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, x) in probs.iter().enumerate() {
                if cum >= p.top_p as f64 {
                    keep = i;
                    break;
                }
                cum += x;
            }
        }
        if p.min_p > 0.0 {
            let floor = p.min_p as f64 * probs[0];
            keep = keep.min(probs.iter().take_while(|&&x| x >= floor).count());
        }
        let keep = keep.max(1);
        let mass: f64 = probs[..keep].iter().sum();
        let mut u = self.rng.uniform() * mass;
        for (c, x) in cand.iter().zip(&probs[..keep]) {
            if u < *x {
                return c.0;
            }
            u -= x;
        }
        cand[keep - 1].0
    }
}

/// The first index of the largest value (as `torch.argmax`).
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best as u32
}

fn log_sum_exp(x: &[f32]) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    let s: f64 = x.iter().map(|&v| ((v - max) as f64).exp()).sum();
    max + s.ln() as f32
}
