//! f32 GEMM `C = act(A·B + bias)` for row-major activations times constant weights.
//!
//! Weights are packed once ([`PackedB`]) into panels of `NR` columns, `K` deep, for
//! the microkernel of one ISA. The driver blocks K into slices (A's rows of a tile
//! stay in L1) and N into groups of panels (a B block stays in L2). Paths with a
//! microkernel that reads A in place (AVX-512) use it directly; the others pack A's
//! rows `MR` at a time. The output is split over the rayon pool: by rows when there
//! are many, by column panels when there are few (single-sentence latency).
//! `lowp` holds the bf16 and int8 counterparts.

pub mod driver;
pub mod lowp;

use driver::Step;
use rayon::prelude::*;

use super::threads::install;
use super::{Isa, Kernels};
use crate::error::{Error, Result};

/// Align packed panels to a cache line.
const ALIGN_FLOATS: usize = 16;

/// Function applied to the output after the bias.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// Exact (erf) GELU.
    GeluErf,
    /// Tanh-approximated GELU.
    GeluTanh,
    /// ReLU.
    Relu,
    /// SiLU (swish): `x * sigmoid(x)`.
    Silu,
}

/// A constant `K x N` right-hand matrix packed for one ISA's microkernel.
pub struct PackedB {
    kernels: &'static Kernels,
    k: usize,
    n: usize,
    /// `ceil(n / nr)` panels of `k * nr` floats, starting at `offset`.
    data: Vec<f32>,
    offset: usize,
}

impl std::fmt::Debug for PackedB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedB")
            .field("isa", &self.kernels.isa)
            .field("k", &self.k)
            .field("n", &self.n)
            .finish()
    }
}

impl PackedB {
    /// Packs a row-major `K x N` matrix `b`.
    pub fn from_kn(b: &[f32], k: usize, n: usize, kernels: &'static Kernels) -> Result<Self> {
        check_len("B", b.len(), k, n)?;
        let mut packed = Self::empty(kernels);
        packed.refill_rows(k, n, |kk| &b[kk * n..(kk + 1) * n]);
        Ok(packed)
    }

    /// Packs the transpose of a row-major `N x K` matrix `w`, the layout of a
    /// PyTorch `Linear` weight (`out_features x in_features`): `C = A·Wᵀ`.
    pub fn from_nk(w: &[f32], n: usize, k: usize, kernels: &'static Kernels) -> Result<Self> {
        check_len("W", w.len(), n, k)?;
        let mut packed = Self::empty(kernels);
        packed.refill_cols(k, n, 1.0, |nn| &w[nn * k..(nn + 1) * k]);
        Ok(packed)
    }

    /// A `0 x 0` matrix to refill later (scratch reused across calls).
    pub fn empty(kernels: &'static Kernels) -> Self {
        PackedB {
            kernels,
            k: 0,
            n: 0,
            data: Vec::new(),
            offset: 0,
        }
    }

    /// Sizes the buffer for `K x N` (reusing its memory) and returns the panels.
    fn resize(&mut self, k: usize, n: usize) -> &mut [f32] {
        let nr = self.kernels.nr;
        let need = n.div_ceil(nr) * k * nr + ALIGN_FLOATS;
        if self.data.len() < need {
            // Zeroed lazily by the allocator (untouched pages), so the advice takes
            // effect as the panels are written. The old contents are not needed.
            self.data = vec![0.0; need];
            super::mmap::advise_huge_pages(&self.data);
        }
        self.offset = self
            .data
            .as_ptr()
            .align_offset(ALIGN_FLOATS * 4)
            .min(ALIGN_FLOATS);
        self.k = k;
        self.n = n;
        &mut self.data[self.offset..need - ALIGN_FLOATS + self.offset]
    }

    /// Packs `K x N` from its rows: `row(kk)` is row `kk` (`N` values).
    pub fn refill_rows<'a>(&mut self, k: usize, n: usize, row: impl Fn(usize) -> &'a [f32]) {
        let nr = self.kernels.nr;
        let body = self.resize(k, n);
        if k == 0 {
            return;
        }
        for (p, panel) in body.chunks_exact_mut(k * nr).enumerate() {
            let cols = nr.min(n - p * nr);
            for (kk, group) in panel.chunks_exact_mut(nr).enumerate() {
                group[..cols].copy_from_slice(&row(kk)[p * nr..p * nr + cols]);
                group[cols..].fill(0.0);
            }
        }
    }

    /// Packs `K x N` times `scale` from its columns: `col(nn)` is column `nn`
    /// (`K` values), i.e. row `nn` of the transpose.
    pub fn refill_cols<'a>(
        &mut self,
        k: usize,
        n: usize,
        scale: f32,
        col: impl Fn(usize) -> &'a [f32],
    ) {
        let nr = self.kernels.nr;
        let body = self.resize(k, n);
        if k == 0 {
            return;
        }
        const MAX_NR: usize = 32;
        assert!(nr <= MAX_NR, "panel width {nr} above {MAX_NR}");
        for (p, panel) in body.chunks_exact_mut(k * nr).enumerate() {
            let cols = nr.min(n - p * nr);
            // The panel's columns (the last one repeated past N, zeroed below):
            // then each group is one gather, and nothing is allocated.
            let src: [&[f32]; MAX_NR] =
                std::array::from_fn(|j| &col(p * nr + j.min(cols - 1))[..k]);
            for (kk, group) in panel.chunks_exact_mut(nr).enumerate() {
                for (j, v) in group.iter_mut().enumerate() {
                    *v = src[j][kk] * scale;
                }
                group[cols..].fill(0.0);
            }
        }
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

    /// Rows `k0..k0+kc` of panel `p`.
    fn panel(&self, p: usize, k0: usize, kc: usize) -> &[f32] {
        let nr = self.kernels.nr;
        let start = self.offset + p * self.k * nr + k0 * nr;
        &self.data[start..start + kc * nr]
    }
}

pub(crate) fn check_len(what: &str, len: usize, rows: usize, cols: usize) -> Result<()> {
    match rows.checked_mul(cols) {
        Some(need) if need == len => Ok(()),
        _ => Err(Error::InvalidInput(format!(
            "{what} has {len} elements, expected {rows} x {cols}"
        ))),
    }
}

/// `C[m x n] = act(A[m x k] · B + bias)`, all row-major, on the rinfer thread pool
/// (or the rayon pool the caller is already running in).
pub fn gemm(
    a: &[f32],
    m: usize,
    b: &PackedB,
    bias: Option<&[f32]>,
    act: Activation,
    c: &mut [f32],
) -> Result<()> {
    check(a, m, b, bias, c)?;
    if m > 0 && b.n > 0 {
        install(|| run(a, m, b, bias, act, c));
    }
    Ok(())
}

/// [`gemm`] on the calling thread only: for small products inside work that is
/// already spread over the pool (attention heads, for instance).
pub fn gemm_serial(
    a: &[f32],
    m: usize,
    b: &PackedB,
    bias: Option<&[f32]>,
    act: Activation,
    c: &mut [f32],
) -> Result<()> {
    check(a, m, b, bias, c)?;
    if m > 0 && b.n > 0 {
        let job = Job {
            a,
            lda: b.k,
            b,
            bias,
            act,
            rows: m,
            p0: 0,
            p1: b.n.div_ceil(b.kernels.nr),
        };
        compute(&job, c, b.n);
    }
    Ok(())
}

/// `C = A·B` on the calling thread, with row strides: row `i` of A starts at
/// `a[i * lda]`, row `i` of C at `c[i * ldc]` (views into wider matrices, such as
/// one head's columns of the fused QKV projection).
pub fn gemm_serial_strided(
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
) -> Result<()> {
    let (k, n) = (b.k, b.n);
    let fits = |len: usize, ld: usize, cols: usize| {
        m == 0
            || (ld >= cols
                && (m - 1).checked_mul(ld).and_then(|x| x.checked_add(cols)) <= Some(len))
    };
    if !fits(a.len(), lda, k) || !fits(c.len(), ldc, n) {
        return Err(Error::InvalidInput(format!(
            "strided GEMM: A ({} values, stride {lda}) or C ({} values, stride {ldc}) too small for {m} x {k} x {n}",
            a.len(),
            c.len()
        )));
    }
    if m > 0 && n > 0 {
        let job = Job {
            a,
            lda,
            b,
            bias: None,
            act: Activation::None,
            rows: m,
            p0: 0,
            p1: n.div_ceil(b.kernels.nr),
        };
        compute(&job, c, ldc);
    }
    Ok(())
}

fn check(a: &[f32], m: usize, b: &PackedB, bias: Option<&[f32]>, c: &[f32]) -> Result<()> {
    check_dims(a, m, b.k, b.n, bias, c)
}

/// Checks `A[m x k]`, `C[m x n]` and a bias of `n`.
pub(crate) fn check_dims(
    a: &[f32],
    m: usize,
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
    c: &[f32],
) -> Result<()> {
    check_len("A", a.len(), m, k)?;
    check_len("C", c.len(), m, n)?;
    if let Some(bias) = bias {
        if bias.len() != n {
            return Err(Error::InvalidInput(format!(
                "bias has {} elements, expected {n}",
                bias.len()
            )));
        }
    }
    Ok(())
}

/// One contiguous job: rows `r0..r1` (relative to `a`) times panels `p0..p1`,
/// written to `c` whose row stride is `ldc` and whose column 0 is panel `p0`.
struct Job<'a> {
    a: &'a [f32],
    /// Row stride of `a`.
    lda: usize,
    b: &'a PackedB,
    bias: Option<&'a [f32]>,
    act: Activation,
    rows: usize,
    p0: usize,
    p1: usize,
}

fn run(a: &[f32], m: usize, b: &PackedB, bias: Option<&[f32]>, act: Activation, c: &mut [f32]) {
    let (k, n) = (b.k, b.n);
    partition(
        m,
        n,
        k,
        b.kernels.mr,
        b.kernels.nr,
        c,
        |r0, r1, p0, p1, c, ldc| {
            let job = Job {
                a: &a[r0 * k..r1 * k],
                lda: k,
                b,
                bias,
                act,
                rows: r1 - r0,
                p0,
                p1,
            };
            compute(&job, c, ldc)
        },
    );
}

/// Splits `C[m x n]` (panels of `nr` columns, tiles of `mr` rows) over the pool and
/// calls `work(r0, r1, p0, p1, c, ldc)` for each part: rows `r0..r1`, panels
/// `p0..p1`, where `c` starts at row `r0`, column `p0 * nr`, with row stride `ldc`.
/// Many rows: each task owns a band of whole rows. Few rows (one short sentence):
/// tasks split the column panels, each into its own buffer, copied back after.
pub(crate) fn partition<F>(
    m: usize,
    n: usize,
    k: usize,
    mr: usize,
    nr: usize,
    c: &mut [f32],
    work: F,
) where
    F: Fn(usize, usize, usize, usize, &mut [f32], usize) + Sync,
{
    let panels = n.div_ceil(nr);
    let threads = rayon::current_num_threads().max(1);
    let micro_rows = m.div_ceil(mr);
    if threads == 1 || k == 0 || (micro_rows < 2 * threads && panels < 2) {
        work(0, m, 0, panels, c, n);
    } else if micro_rows >= 2 * threads {
        let tasks = (threads * 4).min(micro_rows);
        let band = micro_rows.div_ceil(tasks) * mr;
        c.par_chunks_mut(band * n).enumerate().for_each(|(i, cb)| {
            let r0 = i * band;
            work(r0, r0 + cb.len() / n, 0, panels, cb, n)
        });
    } else {
        let tasks = threads.min(panels);
        let per = panels.div_ceil(tasks);
        let parts: Vec<(usize, usize, Vec<f32>)> = (0..panels)
            .step_by(per)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|p0| {
                let p1 = (p0 + per).min(panels);
                let width = (p1 * nr).min(n) - p0 * nr;
                let mut out = vec![0.0f32; m * width];
                work(0, m, p0, p1, &mut out, width);
                (p0 * nr, width, out)
            })
            .collect();
        for (col, width, out) in parts {
            for (dst, src) in c.chunks_exact_mut(n).zip(out.chunks_exact(width)) {
                dst[col..col + width].copy_from_slice(src);
            }
        }
    }
}

/// Computes one job into `c` (row stride `ldc`, column 0 = first column of panel `p0`)
/// through the one GEMM driver: with the microkernel that reads A in place where the
/// ISA has one, else packing each band of A once per K slice.
fn compute(job: &Job, c: &mut [f32], ldc: usize) {
    let kern = job.b.kernels;
    let (mr, nr) = (kern.mr, kern.nr);
    let (k, n) = (job.b.k, job.b.n);
    let col0 = job.p0 * nr;
    if k == 0 {
        let col_end = (job.p1 * nr).min(n);
        for row in c.chunks_exact_mut(ldc).take(job.rows) {
            row[..col_end - col0].fill(0.0);
        }
        epilogue(job, c, ldc, 0, job.rows, col0, col_end);
        return;
    }
    let finish = |c: &mut [f32], r: usize, rows: usize, g0: usize, g1: usize| {
        epilogue(job, c, ldc, r, r + rows, g0 * nr, (g1 * nr).min(n))
    };
    if let Some(direct) = kern.microkernel_direct {
        let plan = driver::Plan::direct(k, job.rows, mr, nr);
        driver::drive(&plan, k, job.rows, job.p0, job.p1, |s| match s {
            Step::Band { .. } => {}
            Step::Tile {
                r, rows, p, k0, kc, ..
            } => {
                let col = p * nr;
                direct(
                    kc,
                    &job.a[r * job.lda + k0..],
                    job.lda,
                    job.b.panel(p, k0, kc),
                    &mut c[r * ldc + (col - col0)..],
                    ldc,
                    rows,
                    nr.min(n - col),
                    k0 > 0,
                )
            }
            Step::Done { r, rows, g0, g1 } => finish(c, r, rows, g0, g1),
        });
        return;
    }
    let plan = driver::Plan::packed(k, mr, nr);
    let mut apack = vec![0.0f32; plan.band.min(job.rows.div_ceil(mr) * mr) * plan.kc];
    driver::drive(&plan, k, job.rows, job.p0, job.p1, |s| match s {
        Step::Band { b0, b1, k0, kc } => {
            let mut r = b0;
            while r < b1 {
                let rows = mr.min(b1 - r);
                let at = (r - b0) * kc;
                pack_a(
                    job.a,
                    job.lda,
                    r,
                    rows,
                    k0,
                    kc,
                    mr,
                    &mut apack[at..at + mr * kc],
                );
                r += rows;
            }
        }
        Step::Tile {
            b0,
            r,
            rows,
            p,
            k0,
            kc,
        } => {
            let at = (r - b0) * kc;
            let col = p * nr;
            (kern.microkernel)(
                kc,
                &apack[at..at + mr * kc],
                job.b.panel(p, k0, kc),
                &mut c[r * ldc + (col - col0)..],
                ldc,
                rows,
                nr.min(n - col),
                k0 > 0,
            )
        }
        Step::Done { r, rows, g0, g1 } => finish(c, r, rows, g0, g1),
    });
}

/// Packs rows `r0..r0+rows`, columns `k0..k0+kc` of A (row stride `lda`) into
/// `kc` groups of `mr` values.
#[allow(clippy::too_many_arguments)]
fn pack_a(
    a: &[f32],
    lda: usize,
    r0: usize,
    rows: usize,
    k0: usize,
    kc: usize,
    mr: usize,
    out: &mut [f32],
) {
    // Eight rows at a time: reads stay sequential per row, writes fill whole groups.
    let mut i = 0;
    while i < rows {
        let take = (rows - i).min(8);
        let src: [&[f32]; 8] = std::array::from_fn(|j| {
            let r = r0 + i + j.min(take - 1);
            &a[r * lda + k0..r * lda + k0 + kc]
        });
        for (p, dst) in out.chunks_exact_mut(mr).take(kc).enumerate() {
            for (j, d) in dst[i..i + take].iter_mut().enumerate() {
                *d = src[j][p];
            }
        }
        i += take;
    }
}

/// Bias and activation over rows `r0..r1`, absolute columns `c0..c1`.
fn epilogue(job: &Job, c: &mut [f32], ldc: usize, r0: usize, r1: usize, c0: usize, c1: usize) {
    let base = job.p0 * job.b.kernels.nr;
    let bias = job.bias.map(|b| &b[c0..c1]);
    for r in r0..r1 {
        let row = &mut c[r * ldc + (c0 - base)..r * ldc + (c1 - base)];
        bias_act(job.b.kernels, bias, job.act, row);
    }
}

/// `row = act(row + bias)`, `bias` (when given) as long as `row`.
pub(crate) fn bias_act(kern: &Kernels, bias: Option<&[f32]>, act: Activation, row: &mut [f32]) {
    if let Some(bias) = bias {
        (kern.add_bias)(row, bias);
    }
    match act {
        Activation::None => {}
        Activation::GeluErf => (kern.gelu_erf)(row),
        Activation::GeluTanh => (kern.gelu_tanh)(row),
        Activation::Relu => (kern.relu)(row),
        Activation::Silu => (kern.silu)(row),
    }
}

/// Textbook triple loop with f64 accumulation: the truth GEMM tests compare with.
/// `b` is row-major `K x N`.
pub fn reference(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = bias.map_or(0.0, |bb| bb[j] as f64);
            for p in 0..k {
                s += a[i * k + p] as f64 * b[p * n + j] as f64;
            }
            c[i * n + j] = s as f32;
        }
    }
    c
}
