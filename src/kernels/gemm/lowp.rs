//! bf16 and int8 GEMM `C = act(A·B + bias)`, f32 in and out.
//!
//! Weights are converted once: to bf16 (round to nearest even), or to int8 with one
//! symmetric scale per output column. Activations are converted per call: to bf16,
//! or to u8 with one scale and zero point per row (dynamic, asymmetric). Products
//! accumulate in f32 (bf16) or i32 (int8, rescaled to f32 in the microkernel's
//! store); bias and activation run in f32 after. K is not split: a tile's whole
//! dot product happens in registers, and the weight panels are grouped to stay in L2.

use rayon::prelude::*;

use super::driver::{self, Step};
use super::{bias_act, check_dims, check_len, partition, Activation, PackedB};
use crate::error::{Error, Result};
use crate::kernels::threads::install;
use crate::kernels::{
    vector, Bf16Layout, Int8Layout, Int8Scales, Isa, Kernels, LowpKernels, LOWP_NR,
};

type Scratch<T> = std::thread::LocalKey<std::cell::Cell<Vec<T>>>;

thread_local! {
    /// Converted activations of the last call on this thread, reused by the next
    /// (taken while in use, so a nested call simply allocates its own).
    static BF16_SCRATCH: std::cell::Cell<Vec<u16>> = const { std::cell::Cell::new(Vec::new()) };
    static INT8_SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` with `len` values of this thread's scratch (contents unspecified), then
/// keeps the buffer for the next call.
fn with_scratch<T: Copy + Default, R>(
    key: &'static Scratch<T>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    let mut buf = key.with(|s| s.take());
    if buf.len() < len {
        buf.resize(len, T::default());
    }
    let out = f(&mut buf[..len]);
    key.with(|s| s.set(buf));
    out
}

/// The number format of a model's matrix products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 everywhere: the reference.
    #[default]
    F32,
    /// bf16 weights and activations, f32 accumulation.
    Bf16,
    /// int8 weights (per output channel), u8 activations (per token), i32 accumulation.
    Int8,
}

impl Precision {
    /// Every precision, reference first.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::Int8];

    /// The name users pass (`"f32"`, `"bf16"`, `"int8"`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }

    /// Parses a name (case-insensitive; `float32`, `bfloat16` and `i8` also accepted).
    pub fn parse(name: &str) -> Result<Precision> {
        match name.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "int8" | "i8" => Ok(Precision::Int8),
            other => Err(Error::InvalidInput(format!(
                "unknown dtype `{other}`; expected one of f32, bf16, int8"
            ))),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn lowp_of(kernels: &'static Kernels) -> Result<&'static LowpKernels> {
    kernels.lowp.ok_or_else(|| {
        Error::Unsupported(format!("the {} path has no bf16/int8 kernels", kernels.isa))
    })
}

/// Panels of `LOWP_NR` columns, each `groups * per_group` values: value `(g, j, t)`
/// (group, column, slot) at `(panel * groups + g) * LOWP_NR * per_group + j * per_group + t`,
/// filled from `at(kk, nn)` with `kk = g * per_group + t` (zero past K or N).
fn pack_panels<T: Copy + Default>(
    k: usize,
    n: usize,
    per_group: usize,
    at: impl Fn(usize, usize) -> T,
) -> Vec<T> {
    let groups = k.div_ceil(per_group);
    let panels = n.div_ceil(LOWP_NR);
    let mut data = vec![T::default(); panels * groups * LOWP_NR * per_group];
    super::super::mmap::advise_huge_pages(&data);
    for p in 0..panels {
        let cols = LOWP_NR.min(n - p * LOWP_NR);
        for g in 0..groups {
            let base = (p * groups + g) * LOWP_NR * per_group;
            for j in 0..cols {
                for t in 0..per_group {
                    let kk = g * per_group + t;
                    if kk < k {
                        data[base + j * per_group + t] = at(kk, p * LOWP_NR + j);
                    }
                }
            }
        }
    }
    data
}

/// What [`PackedBf16`] and [`PackedInt8`] share: constructors from either weight
/// layout (each type converts in its own `pack`), sizes, ISA and `Debug`.
macro_rules! packed_common {
    ($ty:ident) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("isa", &self.kernels.isa)
                    .field("k", &self.k)
                    .field("n", &self.n)
                    .finish()
            }
        }

        impl $ty {
            /// Converts and packs a row-major `K x N` matrix.
            pub fn from_kn(
                b: &[f32],
                k: usize,
                n: usize,
                kernels: &'static Kernels,
            ) -> Result<Self> {
                check_len("B", b.len(), k, n)?;
                Self::pack(k, n, kernels, |kk, nn| b[kk * n + nn])
            }

            /// Converts and packs the transpose of a row-major `N x K` matrix (the
            /// PyTorch `Linear` layout).
            pub fn from_nk(
                w: &[f32],
                n: usize,
                k: usize,
                kernels: &'static Kernels,
            ) -> Result<Self> {
                check_len("W", w.len(), n, k)?;
                Self::pack(k, n, kernels, |kk, nn| w[nn * k + kk])
            }

            /// Rows of B (the shared dimension).
            pub fn k(&self) -> usize {
                self.k
            }

            /// Columns of B (outputs).
            pub fn n(&self) -> usize {
                self.n
            }

            /// The ISA whose microkernel this packing serves.
            pub fn isa(&self) -> Isa {
                self.kernels.isa
            }
        }
    };
}

packed_common!(PackedBf16);
packed_common!(PackedInt8);

/// A constant `K x N` matrix in bf16, packed for the bf16 microkernels.
pub struct PackedBf16 {
    kernels: &'static Kernels,
    k: usize,
    n: usize,
    data: Vec<u16>,
}

impl PackedBf16 {
    fn pack(
        k: usize,
        n: usize,
        kernels: &'static Kernels,
        at: impl Fn(usize, usize) -> f32,
    ) -> Result<Self> {
        let per = lowp_of(kernels)?.bf16_layout.per_column();
        let data = pack_panels(k, n, per, |kk, nn| vector::bf16_bits(at(kk, nn)));
        Ok(Self {
            kernels,
            k,
            n,
            data,
        })
    }

    fn panel(&self, p: usize) -> &[u16] {
        let per = self
            .kernels
            .lowp
            .map_or(Bf16Layout::Pairs, |lp| lp.bf16_layout)
            .per_column();
        let len = self.k.div_ceil(per) * per * LOWP_NR;
        &self.data[p * len..(p + 1) * len]
    }
}

/// A constant `K x N` matrix quantised to int8 (one symmetric scale per column),
/// packed for the path's int8 microkernel ([`LowpKernels::int8_layout`]).
pub struct PackedInt8 {
    kernels: &'static Kernels,
    k: usize,
    n: usize,
    data: Vec<i8>,
    /// Per column, padded to whole panels: `w ≈ scale * q`.
    scale: Vec<f32>,
    /// Per column, padded to whole panels: `sum_k q`.
    colsum: Vec<i32>,
}

impl PackedInt8 {
    fn pack(
        k: usize,
        n: usize,
        kernels: &'static Kernels,
        at: impl Fn(usize, usize) -> f32,
    ) -> Result<Self> {
        let layout = lowp_of(kernels)?.int8_layout;
        let padded = n.div_ceil(LOWP_NR) * LOWP_NR;
        let mut scale = vec![1.0f32; padded];
        for (j, s) in scale.iter_mut().enumerate().take(n) {
            let amax = (0..k).map(|kk| at(kk, j).abs()).fold(0.0f32, f32::max);
            if amax > 0.0 && amax.is_finite() {
                *s = amax / 127.0;
            }
        }
        let q = |kk: usize, nn: usize| -> i8 {
            (at(kk, nn) / scale[nn])
                .round_ties_even()
                .clamp(-127.0, 127.0) as i8
        };
        let mut colsum = vec![0i32; padded];
        for (j, s) in colsum.iter_mut().enumerate().take(n) {
            *s = (0..k).map(|kk| q(kk, j) as i32).sum();
        }
        let data = match layout {
            Int8Layout::Quads | Int8Layout::Octets => pack_panels(k, n, layout.per_column(), q),
            Int8Layout::Pairs16 => {
                // K padded to whole quads (the activation rows are), as i16 pairs
                // stored little-endian in the byte vector.
                let kpad = k.div_ceil(4) * 4;
                let pairs = pack_panels(
                    kpad,
                    n,
                    2,
                    |kk, nn| if kk < k { q(kk, nn) as i16 } else { 0 },
                );
                pairs
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .map(|b| b as i8)
                    .collect()
            }
        };
        Ok(Self {
            kernels,
            k,
            n,
            data,
            scale,
            colsum,
        })
    }

    /// The weights as the kernels see them: `scale[j] * q[k][j]`, row-major `K x N`.
    pub fn dequantized(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.k * self.n];
        let layout = self.layout();
        let pairs = layout == Int8Layout::Pairs16;
        let per = layout.per_column();
        let groups = layout.padded_k(self.k) / per;
        for kk in 0..self.k {
            for j in 0..self.n {
                let (p, jj) = (j / LOWP_NR, j % LOWP_NR);
                let at = ((p * groups + kk / per) * LOWP_NR + jj) * per + kk % per;
                let q = if pairs {
                    i16::from_le_bytes([self.data[2 * at] as u8, self.data[2 * at + 1] as u8])
                } else {
                    self.data[at] as i16
                };
                out[kk * self.n + j] = q as f32 * self.scale[j];
            }
        }
        out
    }

    fn layout(&self) -> Int8Layout {
        self.kernels
            .lowp
            .map_or(Int8Layout::Quads, |lp| lp.int8_layout)
    }

    fn panel(&self, p: usize) -> &[i8] {
        let layout = self.layout();
        let bytes = if layout == Int8Layout::Pairs16 { 2 } else { 1 };
        let len = layout.padded_k(self.k) * LOWP_NR * bytes;
        &self.data[p * len..(p + 1) * len]
    }
}

/// Computes one tile: `(first row, rows, panel, C at the tile's top-left)`.
type Tile<'a> = dyn Fn(usize, usize, usize, &mut [f32]) + Sync + 'a;

/// Runs the tiles of one part through the one GEMM driver: all of K per tile, panel
/// groups sized for L2, then tiles of `mr` rows.
#[allow(clippy::too_many_arguments)]
fn sweep(
    kern: &Kernels,
    panel_bytes: usize,
    mr: usize,
    n: usize,
    (r0, r1, p0, p1): (usize, usize, usize, usize),
    c: &mut [f32],
    ldc: usize,
    bias: Option<&[f32]>,
    act: Activation,
    tile: &Tile,
) {
    let base = p0 * LOWP_NR;
    let plan = driver::Plan::whole_k(r1 - r0, mr, panel_bytes);
    driver::drive(&plan, 0, r1 - r0, p0, p1, |s| match s {
        Step::Band { .. } => {}
        Step::Tile { r, rows, p, .. } => {
            tile(r0 + r, rows, p, &mut c[r * ldc + p * LOWP_NR - base..])
        }
        Step::Done { r, rows, g0, g1 } => {
            // Bias and activation while the tile row is still in L1.
            let (c0, c1) = (g0 * LOWP_NR, (g1 * LOWP_NR).min(n));
            for i in r..r + rows {
                let row = &mut c[i * ldc + c0 - base..i * ldc + c1 - base];
                bias_act(kern, bias.map(|b| &b[c0..c1]), act, row);
            }
        }
    });
}

/// `C[m x n] = act(A[m x k] · B + bias)` with B in bf16, on the rinfer pool.
pub fn gemm_bf16(
    a: &[f32],
    m: usize,
    b: &PackedBf16,
    bias: Option<&[f32]>,
    act: Activation,
    c: &mut [f32],
) -> Result<()> {
    let (k, n) = (b.k, b.n);
    check_dims(a, m, k, n, bias, c)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let lp = lowp_of(b.kernels)?;
    let kern = b.kernels;
    let kp = k.div_ceil(2);
    let lda = 2 * kp;
    install(|| {
        with_scratch(&BF16_SCRATCH, m * lda, |aq| {
            if k > 0 {
                aq.par_chunks_mut(lda)
                    .zip(a.par_chunks(k))
                    .with_min_len(32)
                    .for_each(|(d, s)| (lp.to_bf16)(s, d));
            } else {
                aq.fill(0);
            }
            let aq = &*aq;
            partition(m, n, k, lp.mr, LOWP_NR, c, |r0, r1, p0, p1, c, ldc| {
                let tile = |r: usize, rows: usize, p: usize, ct: &mut [f32]| {
                    let cols = LOWP_NR.min(n - p * LOWP_NR);
                    (lp.bf16)(kp, &aq[r * lda..], lda, b.panel(p), ct, ldc, rows, cols)
                };
                let part = (r0, r1, p0, p1);
                sweep(
                    kern,
                    lda * LOWP_NR * 2,
                    lp.mr,
                    n,
                    part,
                    c,
                    ldc,
                    bias,
                    act,
                    &tile,
                )
            });
        })
    });
    Ok(())
}

/// `C[m x n] = act(A[m x k] · B + bias)` with B in int8 and A quantised per row to
/// u8 on the fly, on the rinfer pool.
pub fn gemm_int8(
    a: &[f32],
    m: usize,
    b: &PackedInt8,
    bias: Option<&[f32]>,
    act: Activation,
    c: &mut [f32],
) -> Result<()> {
    let (k, n) = (b.k, b.n);
    check_dims(a, m, k, n, bias, c)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let lp = lowp_of(b.kernels)?;
    let kern = b.kernels;
    let kq = k.div_ceil(4);
    let wide = b.layout().activation_bytes() == 2;
    let lda = 4 * kq * b.layout().activation_bytes();
    install(|| {
        with_scratch(&INT8_SCRATCH, m * lda, |aq| {
            let mut a_scale = vec![1.0f32; m];
            let mut a_zero = vec![0i32; m];
            if k > 0 {
                aq.par_chunks_mut(lda)
                    .zip(a.par_chunks(k))
                    .zip(a_scale.par_iter_mut().zip(a_zero.par_iter_mut()))
                    .with_min_len(32)
                    .for_each_init(Vec::new, |narrow, ((d, s), (scale, zero))| {
                        if wide {
                            // Quantise, then widen each u8 to a little-endian u16.
                            narrow.resize(4 * kq, 0u8);
                            (*scale, *zero) = (lp.quantize_u8)(s, narrow);
                            for (w, &v) in d.chunks_exact_mut(2).zip(narrow.iter()) {
                                w[0] = v;
                                w[1] = 0;
                            }
                        } else {
                            (*scale, *zero) = (lp.quantize_u8)(s, d);
                        }
                    });
            } else {
                aq.fill(0);
            }
            let aq = &*aq;
            partition(m, n, k, lp.mr, LOWP_NR, c, |r0, r1, p0, p1, c, ldc| {
                let tile = |r: usize, rows: usize, p: usize, ct: &mut [f32]| {
                    let cols = LOWP_NR.min(n - p * LOWP_NR);
                    let cs = p * LOWP_NR..(p + 1) * LOWP_NR;
                    let scales = Int8Scales {
                        a_scale: &a_scale[r..r + rows],
                        a_zero: &a_zero[r..r + rows],
                        b_scale: &b.scale[cs.clone()],
                        b_colsum: &b.colsum[cs],
                    };
                    (lp.int8)(
                        kq,
                        &aq[r * lda..],
                        lda,
                        b.panel(p),
                        ct,
                        ldc,
                        rows,
                        cols,
                        &scales,
                    )
                };
                let part = (r0, r1, p0, p1);
                sweep(
                    kern,
                    b.panel(0).len(),
                    lp.mr,
                    n,
                    part,
                    c,
                    ldc,
                    bias,
                    act,
                    &tile,
                )
            });
        })
    });
    Ok(())
}

/// Constant weights packed for one precision: what a linear layer holds.
#[derive(Debug)]
pub enum PackedLinear {
    /// f32 panels.
    F32(PackedB),
    /// bf16 panels.
    Bf16(PackedBf16),
    /// int8 panels with per-column scales.
    Int8(PackedInt8),
}

impl PackedLinear {
    /// Packs the transpose of a row-major `N x K` matrix (PyTorch `Linear` layout).
    pub fn from_nk(
        w: &[f32],
        n: usize,
        k: usize,
        kernels: &'static Kernels,
        precision: Precision,
    ) -> Result<Self> {
        Ok(match precision {
            Precision::F32 => Self::F32(PackedB::from_nk(w, n, k, kernels)?),
            Precision::Bf16 => Self::Bf16(PackedBf16::from_nk(w, n, k, kernels)?),
            Precision::Int8 => Self::Int8(PackedInt8::from_nk(w, n, k, kernels)?),
        })
    }

    /// The precision of the packed weights.
    pub fn precision(&self) -> Precision {
        match self {
            Self::F32(_) => Precision::F32,
            Self::Bf16(_) => Precision::Bf16,
            Self::Int8(_) => Precision::Int8,
        }
    }

    /// `C[m x n] = act(A[m x k] · B + bias)` on the rinfer pool.
    pub fn gemm(
        &self,
        a: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        act: Activation,
        c: &mut [f32],
    ) -> Result<()> {
        match self {
            Self::F32(b) => super::gemm(a, m, b, bias, act, c),
            Self::Bf16(b) => gemm_bf16(a, m, b, bias, act, c),
            Self::Int8(b) => gemm_int8(a, m, b, bias, act, c),
        }
    }
}
