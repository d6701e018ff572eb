//! Element-wise and row kernels written so that LLVM vectorises them: branch-free
//! bodies, lane-wise accumulators, polynomial `exp`/`erf`. The same source is
//! compiled once per instruction set inside `#[target_feature]` wrappers (see
//! `x86_64/`), so each ISA gets its own machine code from one obviously-shared text.

/// Lanes of the partial-sum accumulators: one AVX-512 register, two AVX2 ones.
const LANES: usize = 16;

#[inline(always)]
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    for (v, b) in x.iter_mut().zip(bias) {
        *v += *b;
    }
}

/// `e^x` to about 2 ulp over the f32 range (Cephes' polynomial, Cody-Waite reduction).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.0);
    let fx = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - fx * 0.693_359_4 - fx * -2.121_944_4e-4;
    let z = r * r;
    let mut y = 1.987_569_1e-4_f32;
    y = y * r + 1.398_199_9e-3;
    y = y * r + 8.333_452e-3;
    y = y * r + 4.166_579_6e-2;
    y = y * r + 1.666_666_5e-1;
    y = y * r + 0.5;
    y = y * z + r + 1.0;
    // 2^fx through the exponent bits; fx is a whole number in [-126, 127]. Adding
    // 1.5 * 2^23 puts it in the low mantissa bits (no float-to-int cast, which would
    // not vectorise because of its saturation rules).
    let n = (fx + 12_582_912.0).to_bits().wrapping_sub(0x4B40_0000);
    let pow2 = f32::from_bits(n.wrapping_add(127) << 23);
    y * pow2
}

/// `erf(x)` to a few ulp: a rational approximation, exactly ±1 from |x| = 3.92 on
/// (where f32's `erf` rounds to ±1), so `1 + erf(x)` is exactly 0 far to the left.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let saturated = 1.0f32.copysign(x);
    let big = x.abs() >= 3.92;
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    p *= x;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    if big {
        saturated
    } else {
        p / q
    }
}

/// `tanh(x)` from [`exp`]: `1 - 2 / (1 + e^{2x})`.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (1.0 + exp(2.0 * x))
}

#[inline(always)]
pub fn gelu_erf(x: &mut [f32]) {
    for v in x.iter_mut() {
        let a = *v;
        *v = 0.5 * a * (1.0 + erf(a * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[inline(always)]
pub fn gelu_tanh(x: &mut [f32]) {
    const C: f32 = 0.797_884_6; // sqrt(2/pi)
    for v in x.iter_mut() {
        let a = *v;
        *v = 0.5 * a * (1.0 + tanh(C * (a + 0.044_715 * a * a * a)));
    }
}

#[inline(always)]
pub fn silu(x: &mut [f32]) {
    for v in x.iter_mut() {
        let a = *v;
        *v = a / (1.0 + exp(-a));
    }
}

#[inline(always)]
pub fn rms_norm(x: &mut [f32], gamma: &[f32], eps: f32) {
    if x.is_empty() {
        return;
    }
    let inv = 1.0 / (sum_sq_dev(x, 0.0) / x.len() as f32 + eps).sqrt();
    for (v, g) in x.iter_mut().zip(gamma) {
        *v = *g * (*v * inv);
    }
}

#[inline(always)]
pub fn relu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = v.max(0.0);
    }
}

/// Sum with `LANES` independent partial sums (vectorisable, deterministic).
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    for (i, v) in tail.iter().enumerate() {
        acc[i] += *v;
    }
    acc.iter().sum()
}

/// Sum of `(x - m)^2`, lane-wise like [`sum`].
#[inline(always)]
fn sum_sq_dev(x: &[f32], m: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            let d = c[i] - m;
            acc[i] += d * d;
        }
    }
    for (i, v) in tail.iter().enumerate() {
        let d = *v - m;
        acc[i] += d * d;
    }
    acc.iter().sum()
}

/// Sum of the lanes of one accumulator, pairwise (a few shuffles, not a chain).
#[inline(always)]
fn hsum(mut acc: [f32; LANES]) -> f32 {
    let mut half = LANES / 2;
    while half > 0 {
        for i in 0..half {
            acc[i] += acc[i + half];
        }
        half /= 2;
    }
    acc[0]
}

/// `sum a[i] * f(b[i])` over the shorter length, lane-wise like [`sum`].
#[inline(always)]
fn dot_by<T: Copy>(a: &[f32], b: &[T], f: impl Fn(T) -> f32) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * f(y[i]);
        }
    }
    for (i, (x, y)) in ta.iter().zip(tb).enumerate() {
        acc[i] += *x * f(*y);
    }
    hsum(acc)
}

/// `sum a[i] * b[i]` over the shorter length.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_by(a, b, |x| x)
}

/// `y[i] += a * x[i]` over the shorter length.
#[inline(always)]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (v, u) in y.iter_mut().zip(x) {
        *v += a * *u;
    }
}

/// bf16 bits widened to f32 (exact).
#[inline(always)]
fn widen(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// [`dot`] with `b` in bf16 bits, widened on the fly.
#[inline(always)]
pub fn dot_bf16(a: &[f32], b: &[u16]) -> f32 {
    dot_by(a, b, widen)
}

/// [`axpy`] with `x` in bf16 bits, widened on the fly.
#[inline(always)]
pub fn axpy_bf16(y: &mut [f32], a: f32, x: &[u16]) {
    for (v, u) in y.iter_mut().zip(x) {
        *v += a * widen(*u);
    }
}

#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    for (i, v) in tail.iter().enumerate() {
        acc[i] = if *v > acc[i] { *v } else { acc[i] };
    }
    acc.iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

#[inline(always)]
pub fn layer_norm(x: &mut [f32], residual: Option<&[f32]>, gamma: &[f32], beta: &[f32], eps: f32) {
    if let Some(r) = residual {
        add_bias(x, r);
    }
    if x.is_empty() {
        return;
    }
    let n = x.len() as f32;
    let mean = sum(x) / n;
    let var = sum_sq_dev(x, mean) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in x.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * *g + *b;
    }
}

#[inline(always)]
pub fn softmax(x: &mut [f32], mask: Option<&[f32]>) {
    if let Some(m) = mask {
        add_bias(x, m);
    }
    let mx = max(x);
    if mx == f32::NEG_INFINITY {
        // Every position is masked out: no distribution exists; give zeros.
        x.fill(0.0);
        return;
    }
    for v in x.iter_mut() {
        *v = exp(*v - mx);
    }
    let inv = 1.0 / sum(x);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[inline(always)]
pub fn exp_shifted(x: &mut [f32]) -> f32 {
    let mx = max(x);
    if mx == f32::NEG_INFINITY {
        x.fill(0.0);
        return 0.0;
    }
    for v in x.iter_mut() {
        *v = exp(*v - mx);
    }
    sum(x)
}

#[inline(always)]
pub fn l2_normalize(x: &mut [f32]) {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i] * c[i];
        }
    }
    for (i, v) in tail.iter().enumerate() {
        acc[i] += *v * *v;
    }
    let norm = acc.iter().sum::<f32>().sqrt();
    let inv = 1.0 / norm.max(1e-12);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[inline(always)]
pub fn mean_rows(x: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    let cols = out.len();
    if cols == 0 {
        return;
    }
    let rows = x.len() / cols;
    for row in x.chunks_exact(cols) {
        add_bias(out, row);
    }
    if rows > 0 {
        let inv = 1.0 / rows as f32;
        for v in out.iter_mut() {
            *v *= inv;
        }
    }
}

#[inline(always)]
pub fn bf16_to_f32(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = f32::from_bits((u16::from_le_bytes([s[0], s[1]]) as u32) << 16);
    }
}

/// f32 to bf16 bits, rounding to nearest even; NaN stays a (quiet) NaN.
#[inline(always)]
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    let nan = ((b >> 16) | 0x40) as u16;
    if x.is_nan() {
        nan
    } else {
        rounded
    }
}

#[inline(always)]
pub fn to_bf16(src: &[f32], dst: &mut [u16]) {
    let n = src.len().min(dst.len());
    for (d, s) in dst[..n].iter_mut().zip(&src[..n]) {
        *d = bf16_bits(*s);
    }
    dst[n..].fill(0);
}

/// Smallest and largest value, both widened to include 0 (so 0 is exact).
#[inline(always)]
fn range_with_zero(x: &[f32]) -> (f32, f32) {
    let mut lo = [0.0f32; LANES];
    let mut hi = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
            hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
        }
    }
    for (i, v) in tail.iter().enumerate() {
        lo[i] = if *v < lo[i] { *v } else { lo[i] };
        hi[i] = if *v > hi[i] { *v } else { hi[i] };
    }
    let lo = lo.iter().fold(0.0f32, |a, &b| if b < a { b } else { a });
    let hi = hi.iter().fold(0.0f32, |a, &b| if b > a { b } else { a });
    (lo, hi)
}

#[inline(always)]
pub fn quantize_u8(src: &[f32], dst: &mut [u8]) -> (f32, i32) {
    let n = src.len().min(dst.len());
    let (lo, hi) = range_with_zero(&src[..n]);
    let span = hi - lo;
    // A constant-zero (or non-finite) row: any scale represents it; 1 keeps it exact.
    let scale = if span > 0.0 && span.is_finite() {
        span / 255.0
    } else {
        1.0
    };
    let zero = (-lo / scale).round_ties_even().clamp(0.0, 255.0);
    let inv = 1.0 / scale;
    for (d, s) in dst[..n].iter_mut().zip(&src[..n]) {
        // Round to nearest even without a float-to-int cast (which does not
        // vectorise): adding 1.5 * 2^23 leaves round(y) in the low mantissa bits.
        let y = (*s * inv + zero).clamp(0.0, 255.0);
        *d = (y + 12_582_912.0).to_bits() as u8;
    }
    dst[n..].fill(0);
    (scale, zero as i32)
}
