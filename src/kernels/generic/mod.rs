//! Reference kernels: portable, scalar, obviously correct (f64 accumulation,
//! `libm` transcendentals). Every ISA path is tested against these.

pub(crate) mod lowp;

pub use lowp::LOWP;

use super::{Isa, Kernels};

/// Microkernel tile of the generic path.
pub const MR: usize = 4;
/// Packed panel width of the generic path.
pub const NR: usize = 8;

/// The generic kernel table.
pub static KERNELS: Kernels = Kernels {
    isa: Isa::Generic,
    mr: MR,
    nr: NR,
    microkernel,
    microkernel_direct: None,
    add_bias,
    gelu_erf,
    gelu_tanh,
    relu,
    silu,
    rms_norm,
    layer_norm,
    softmax,
    exp_shifted,
    l2_normalize,
    dot,
    axpy,
    dot_bf16,
    axpy_bf16,
    mean_rows,
    f16_to_f32,
    bf16_to_f32,
    lowp: Some(&LOWP),
};

/// Scalar microkernel; see [`super::MicroKernel`] for the contract.
#[allow(clippy::too_many_arguments)]
pub fn microkernel(
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    mr: usize,
    nr: usize,
    acc: bool,
) {
    assert!(mr <= MR && nr <= NR && a.len() >= kc * MR && b.len() >= kc * NR);
    assert!(mr == 0 || c.len() >= (mr - 1) * ldc + nr);
    let mut t = [[0.0f32; NR]; MR];
    for p in 0..kc {
        let ap = &a[p * MR..p * MR + MR];
        let bp = &b[p * NR..p * NR + NR];
        for i in 0..MR {
            for j in 0..NR {
                t[i][j] += ap[i] * bp[j];
            }
        }
    }
    for i in 0..mr {
        let row = &mut c[i * ldc..i * ldc + nr];
        for j in 0..nr {
            row[j] = if acc { row[j] + t[i][j] } else { t[i][j] };
        }
    }
}

/// `x[i] += bias[i]`.
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    for (v, b) in x.iter_mut().zip(bias) {
        *v += *b;
    }
}

/// Exact GELU: `x/2 * (1 + erf(x/√2))`.
pub fn gelu_erf(x: &mut [f32]) {
    for v in x.iter_mut() {
        let a = *v as f64;
        *v = (0.5 * a * (1.0 + libm::erf(a / std::f64::consts::SQRT_2))) as f32;
    }
}

/// GELU, tanh form: `x/2 * (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
pub fn gelu_tanh(x: &mut [f32]) {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    for v in x.iter_mut() {
        let a = *v as f64;
        *v = (0.5 * a * (1.0 + libm::tanh(c * (a + 0.044715 * a * a * a)))) as f32;
    }
}

/// SiLU (swish): `x * sigmoid(x)`.
pub fn silu(x: &mut [f32]) {
    for v in x.iter_mut() {
        let a = *v as f64;
        *v = (a / (1.0 + (-a).exp())) as f32;
    }
}

/// RMSNorm: `gamma * (x / sqrt(mean(x²) + eps))`, as PyTorch's Llama-family norms.
pub fn rms_norm(x: &mut [f32], gamma: &[f32], eps: f32) {
    if x.is_empty() {
        return;
    }
    let ms = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (ms + eps as f64).sqrt();
    for (v, g) in x.iter_mut().zip(gamma) {
        *v = (*g as f64 * (*v as f64 * inv)) as f32;
    }
}

/// `max(x, 0)`.
pub fn relu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = v.max(0.0);
    }
}

/// `LayerNorm(x + residual) * gamma + beta`, biased variance, as PyTorch.
pub fn layer_norm(x: &mut [f32], residual: Option<&[f32]>, gamma: &[f32], beta: &[f32], eps: f32) {
    if let Some(r) = residual {
        add_bias(x, r);
    }
    if x.is_empty() {
        return;
    }
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var + eps as f64).sqrt();
    for ((v, g), b) in x.iter_mut().zip(gamma).zip(beta) {
        *v = ((*v as f64 - mean) * inv * *g as f64 + *b as f64) as f32;
    }
}

/// `x = exp(x - max(x))`, returning the sum (0 for an empty or all -inf row).
pub fn exp_shifted(x: &mut [f32]) -> f32 {
    let mx = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if mx == f32::NEG_INFINITY {
        x.fill(0.0);
        return 0.0;
    }
    let mut total = 0.0f64;
    for v in x.iter_mut() {
        let e = libm::exp((*v - mx) as f64) as f32;
        total += e as f64;
        *v = e;
    }
    total as f32
}

/// Softmax after adding `mask`; a row masked out entirely becomes zeros.
pub fn softmax(x: &mut [f32], mask: Option<&[f32]>) {
    if let Some(m) = mask {
        add_bias(x, m);
    }
    let mx = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if mx == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let mut total = 0.0f64;
    for v in x.iter_mut() {
        let e = libm::exp((*v - mx) as f64);
        total += e;
        *v = e as f32;
    }
    for v in x.iter_mut() {
        *v = (*v as f64 / total) as f32;
    }
}

/// `x / max(||x||₂, 1e-12)`, as `torch.nn.functional.normalize`.
pub fn l2_normalize(x: &mut [f32]) {
    let norm = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let inv = 1.0 / norm.max(1e-12);
    for v in x.iter_mut() {
        *v = (*v as f64 * inv) as f32;
    }
}

/// `sum a[i] * b[i]` in f64 over the shorter length.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| x as f64 * y as f64)
        .sum::<f64>() as f32
}

/// `y[i] += a * x[i]` over the shorter length.
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (v, u) in y.iter_mut().zip(x) {
        *v += a * *u;
    }
}

/// [`dot`] with `b` in bf16 bits.
pub fn dot_bf16(a: &[f32], b: &[u16]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| x as f64 * half::bf16::from_bits(y).to_f64())
        .sum::<f64>() as f32
}

/// [`axpy`] with `x` in bf16 bits.
pub fn axpy_bf16(y: &mut [f32], a: f32, x: &[u16]) {
    for (v, u) in y.iter_mut().zip(x) {
        *v += a * half::bf16::from_bits(*u).to_f32();
    }
}

/// Column means of the rows of `x` (row width `out.len()`); no rows gives zeros.
pub fn mean_rows(x: &[f32], out: &mut [f32]) {
    let cols = out.len();
    if cols == 0 {
        return;
    }
    let rows = x.len() / cols;
    for (j, o) in out.iter_mut().enumerate() {
        let s: f64 = (0..rows).map(|i| x[i * cols + j] as f64).sum();
        *o = if rows == 0 {
            0.0
        } else {
            (s / rows as f64) as f32
        };
    }
}

/// IEEE half (little-endian bytes) to f32.
pub fn f16_to_f32(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = half::f16::from_le_bytes([s[0], s[1]]).to_f32();
    }
}

/// bfloat16 (little-endian bytes) to f32.
pub fn bf16_to_f32(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = half::bf16::from_le_bytes([s[0], s[1]]).to_f32();
    }
}
