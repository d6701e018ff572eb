//! Compute kernels and their run-time dispatch: the instruction set is probed once,
//! a table of function pointers is chosen (`RINFER_ISA` may force one), and every
//! caller goes through that table. All `unsafe` code of the crate lives below here.

/// Compiles the shared vectorisable kernels of `kernels::vector` once more, for the
/// target features given, behind safe entry points with the table's signatures.
macro_rules! vector_kernels {
    ($features:literal; $( $name:ident ( $($arg:ident : $ty:ty),* ) $(-> $ret:ty)? ;)*) => { $(
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[target_feature(enable = $features)]
            fn inner($($arg: $ty),*) $(-> $ret)? {
                crate::kernels::vector::$name($($arg),*)
            }
            // SAFETY: this function is reachable only through its ISA's kernel table,
            // which `kernels::for_isa` hands out after `Isa::is_supported` confirmed
            // that the CPU and OS support every feature in `$features`.
            unsafe { inner($($arg),*) }
        }
    )* };
}

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod attention;
pub mod gemm;
pub mod generic;
pub mod mmap;
pub mod threads;
mod vector;
#[cfg(target_arch = "x86_64")]
mod x86_64;

use std::fmt;
use std::sync::OnceLock;

use crate::error::{Error, Result};

pub use gemm::lowp::{gemm_bf16, gemm_int8, PackedBf16, PackedInt8, PackedLinear, Precision};
pub use gemm::{gemm, gemm_serial, Activation, PackedB};

/// An instruction-set path. Each has its own kernel table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable scalar Rust: the reference every other path is tested against.
    Generic,
    /// x86-64 AVX2 + FMA (+ F16C).
    Avx2,
    /// [`Isa::Avx2`] plus AVX-VNNI (`VPDPBUSD` on 256-bit registers, VEX-encoded):
    /// native int8 GEMM on CPUs without AVX-512 (Alder Lake and later client cores,
    /// Sierra Forest).
    Avx2Vnni,
    /// x86-64 AVX-512 F/BW/VL/DQ.
    Avx512,
    /// AVX-512 plus BF16 (`VDPBF16PS`) and VNNI (`VPDPBUSD`): the f32 kernels of
    /// [`Isa::Avx512`] and native bf16 and int8 GEMM kernels.
    Avx512Bf16,
    /// [`Isa::Avx512Bf16`] plus AMX (`TDPBF16PS`, `TDPBUSD` on tile registers): bf16
    /// and int8 GEMM in 32x32 tiles (Sapphire Rapids and later Xeons).
    Amx,
    /// aarch64 Advanced SIMD (NEON): an 8x12 f32 FMA microkernel and the vector
    /// kernels; bf16 weights widened to f32 in registers.
    Neon,
    /// NEON plus the dot-product extension (`SDOT`): int8 GEMM.
    NeonDotprod,
    /// NEON, dotprod and the int8 matrix-multiply extension (`USMMLA`: a 2x8 u8 by
    /// 8x2 s8 block into 2x2 i32): an 8x32 int8 tile over octet panels
    /// ([`Int8Layout::Octets`]); bf16 as on [`Isa::Neon`].
    NeonI8mm,
    /// [`Isa::NeonI8mm`] plus the bf16 extension (`BFMMLA`: a 2x4 by 4x2 bf16 block
    /// into 2x2 f32): bf16 activations and weights, an 8x32 bf16 tile over quad
    /// panels ([`Bf16Layout::Quads`]), as `VDPBF16PS` does on x86-64.
    NeonBf16,
}

impl Isa {
    /// Every path rinfer knows, fastest last within each architecture.
    pub const ALL: [Isa; 10] = [
        Isa::Generic,
        Isa::Avx2,
        Isa::Avx2Vnni,
        Isa::Avx512,
        Isa::Avx512Bf16,
        Isa::Amx,
        Isa::Neon,
        Isa::NeonDotprod,
        Isa::NeonI8mm,
        Isa::NeonBf16,
    ];

    /// The name used by `RINFER_ISA` and reported by [`crate::build_info`].
    pub fn name(self) -> &'static str {
        match self {
            Isa::Generic => "generic",
            Isa::Avx2 => "avx2",
            Isa::Avx2Vnni => "avx2-vnni",
            Isa::Avx512 => "avx512",
            Isa::Avx512Bf16 => "avx512bf16",
            Isa::Amx => "amx",
            Isa::Neon => "neon",
            Isa::NeonDotprod => "neon-dotprod",
            Isa::NeonI8mm => "neon-i8mm",
            Isa::NeonBf16 => "neon-bf16",
        }
    }

    /// Parses a name as accepted by `RINFER_ISA` (case-insensitive).
    pub fn parse(name: &str) -> Result<Isa> {
        let lower = name.trim().to_ascii_lowercase();
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name() == lower)
            .ok_or_else(|| Error::IsaUnavailable {
                requested: name.to_string(),
                reason: format!(
                    "unknown name; expected one of {}",
                    Isa::ALL.map(Isa::name).join(", ")
                ),
            })
    }

    /// Whether this CPU (and OS) can run the path: [`Isa::missing`] is empty.
    pub fn is_supported(self) -> bool {
        self.missing().is_empty()
    }

    /// The CPU features this path needs that the CPU lacks, or that
    /// `RINFER_CPU_MASK` hides (see [`masked_features`]); empty when it can run.
    /// A path of another architecture lacks its whole architecture.
    pub fn missing(self) -> Vec<&'static str> {
        let Some(features) = self.features() else {
            return vec![self.arch()];
        };
        let mask = masked_features();
        features
            .into_iter()
            .filter(|&(name, has)| !has || mask.iter().any(|m| m == name))
            .map(|(name, _)| name)
            .collect()
    }

    /// The architecture a path runs on (`""` for the portable one).
    fn arch(self) -> &'static str {
        match self {
            Isa::Generic => "",
            Isa::Avx2 | Isa::Avx2Vnni | Isa::Avx512 | Isa::Avx512Bf16 | Isa::Amx => "x86_64",
            Isa::Neon | Isa::NeonDotprod | Isa::NeonI8mm | Isa::NeonBf16 => "aarch64",
        }
    }

    /// Each CPU feature the path needs with whether this CPU has it; `None` for a
    /// path of another architecture.
    fn features(self) -> Option<Vec<(&'static str, bool)>> {
        match self.arch() {
            "" => Some(Vec::new()),
            #[cfg(target_arch = "x86_64")]
            "x86_64" => Some(x86_64::features(self)),
            #[cfg(target_arch = "aarch64")]
            "aarch64" => Some(aarch64::features(self)),
            _ => None,
        }
    }

    /// The paths this CPU supports.
    pub fn supported() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_supported()).collect()
    }

    /// The fastest supported path.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|i| i.is_supported())
            .unwrap_or(Isa::Generic)
    }
}

/// CPU features that detection reports absent whatever the CPU has: the
/// comma-separated names in `RINFER_CPU_MASK` (e.g. `avx512f`), read once per
/// process. Tests use it to run as they would on an older CPU (with `avx512f`
/// hidden, an AVX-512 machine runs the suite as an AVX2-only one does); it can
/// only take paths away, never add one the CPU lacks.
pub fn masked_features() -> &'static [String] {
    static MASK: OnceLock<Vec<String>> = OnceLock::new();
    MASK.get_or_init(|| {
        std::env::var("RINFER_CPU_MASK")
            .unwrap_or_default()
            .split(',')
            .map(|f| f.trim().to_ascii_lowercase())
            .filter(|f| !f.is_empty())
            .collect()
    })
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The GEMM microkernel: `C[0..mr, 0..nr] (+)= Apacked · Bpanel`.
///
/// `a` holds `kc` groups of `MR` values (row `i` of step `p` at `a[p * MR + i]`),
/// `b` holds `kc` groups of `NR` values; `c` starts at the tile's top-left with row
/// stride `ldc`. Only the first `mr` rows and `nr` columns of the tile are written.
pub type MicroKernel =
    fn(kc: usize, a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, mr: usize, nr: usize, acc: bool);

/// The bf16 GEMM microkernel: `C[0..mr, 0..nr] = A · Bpanel`, accumulated in f32.
///
/// `a` holds `mr` rows of `2 * kp` bf16 values (row stride `lda` elements; odd K is
/// padded with a zero); `b` is one packed panel in the path's [`Bf16Layout`]: with
/// `Pairs`, `kp` groups of [`LOWP_NR`] columns, each column holding its two
/// K-consecutive bf16 values side by side. `c` starts at the tile's top-left with
/// row stride `ldc`; only `mr` rows and `nr` columns are written.
pub type Bf16Kernel = fn(
    kp: usize,
    a: &[u16],
    lda: usize,
    b: &[u16],
    c: &mut [f32],
    ldc: usize,
    mr: usize,
    nr: usize,
);

/// Per-row (activation) and per-column (weight) quantisation parameters of one
/// int8 tile: `C[i][j] = a_scale[i] * b_scale[j] * (acc[i][j] - a_zero[i] * b_colsum[j])`.
#[derive(Clone, Copy, Debug)]
pub struct Int8Scales<'a> {
    /// Activation scale of each of the tile's rows.
    pub a_scale: &'a [f32],
    /// Activation zero point (0..=255) of each row.
    pub a_zero: &'a [i32],
    /// Weight scale of each of the panel's [`LOWP_NR`] columns.
    pub b_scale: &'a [f32],
    /// Sum of each column's quantised weights.
    pub b_colsum: &'a [i32],
}

/// The int8 GEMM microkernel: unsigned 8-bit activations times signed 8-bit weights,
/// summed in i32, rescaled to f32 in the store.
///
/// `a` holds `mr` rows of `4 * kq` activations of [`Int8Layout::activation_bytes`]
/// bytes each (row stride `lda` bytes); `b` is one packed
/// panel in the path's [`Int8Layout`]: with `Quads`, `kq` groups of [`LOWP_NR`]
/// columns, each column holding four K-consecutive weights. Output as for [`Bf16Kernel`].
pub type Int8Kernel = fn(
    kq: usize,
    a: &[u8],
    lda: usize,
    b: &[i8],
    c: &mut [f32],
    ldc: usize,
    mr: usize,
    nr: usize,
    scales: &Int8Scales,
);

/// The weight panel layout an int8 kernel reads. The quantised values (and so the
/// results) are the same in both; only their storage differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Layout {
    /// Per column, four K-consecutive `i8` (`VPDPBUSD`'s operand).
    Quads,
    /// Per column, two K-consecutive `i16` (`VPMADDWD`'s operand: exact u8 x s8
    /// products without VNNI, at twice the bytes). The activations are widened too:
    /// each u8 is stored in the low byte of a little-endian `u16`, so that a pair of
    /// them is one 32-bit broadcast from memory.
    Pairs16,
    /// Per column, eight K-consecutive `i8`, K padded to a multiple of 8 (so two
    /// neighbouring columns are one 16-byte `USMMLA` operand); `kq` quads of
    /// activations make `kq.div_ceil(2)` groups of 256 bytes.
    Octets,
}

impl Int8Layout {
    /// Values per column in one K-group of a panel.
    pub fn per_column(self) -> usize {
        match self {
            Int8Layout::Quads => 4,
            Int8Layout::Pairs16 => 2,
            Int8Layout::Octets => 8,
        }
    }

    /// Bytes an activation takes in the rows the kernel reads.
    pub fn activation_bytes(self) -> usize {
        match self {
            Int8Layout::Pairs16 => 2,
            Int8Layout::Quads | Int8Layout::Octets => 1,
        }
    }

    /// K rounded up to what a panel stores (activation rows hold whole quads).
    pub fn padded_k(self, k: usize) -> usize {
        match self {
            Int8Layout::Quads | Int8Layout::Pairs16 => k.div_ceil(4) * 4,
            Int8Layout::Octets => k.div_ceil(8) * 8,
        }
    }
}

/// The weight panel layout a bf16 kernel reads; the values are the same in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Layout {
    /// Per column, two K-consecutive bf16 (`VDPBF16PS`'s operand, and what the
    /// widening kernels read).
    Pairs,
    /// Per column, four K-consecutive bf16, K padded to a multiple of 4 (so two
    /// neighbouring columns are one 16-byte `BFMMLA` operand).
    Quads,
}

impl Bf16Layout {
    /// Values per column in one K-group of a panel.
    pub fn per_column(self) -> usize {
        match self {
            Bf16Layout::Pairs => 2,
            Bf16Layout::Quads => 4,
        }
    }
}

/// Columns of a bf16 or int8 weight panel, on every path.
pub const LOWP_NR: usize = 32;

/// The checks an f32 microkernel's safe entry makes before its unsafe body: the
/// tile fits `max_mr x max_nr`, the packed A (`kc` steps of `max_mr`) and B (`kc`
/// steps of `max_nr`) are long enough, and so is C (rows at stride `ldc`). Returns
/// false for an empty tile.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_f32_tile(
    (max_mr, max_nr): (usize, usize),
    kc: usize,
    a_len: usize,
    b_len: usize,
    (c_len, ldc): (usize, usize),
    mr: usize,
    nr: usize,
) -> bool {
    assert!(
        mr <= max_mr && nr <= max_nr,
        "tile {mr}x{nr} exceeds {max_mr}x{max_nr}"
    );
    assert!(
        a_len >= kc * max_mr && b_len >= kc * max_nr,
        "packed operands too short"
    );
    if mr == 0 || nr == 0 {
        return false;
    }
    assert!(c_len >= (mr - 1) * ldc + nr, "C tile outside the slice");
    true
}

/// The checks a bf16 or int8 tile's safe entry makes before its unsafe body: the
/// tile fits `max_mr x LOWP_NR`, and `a` (rows of `groups * per` values at stride
/// `lda`), the panel `b` and `c` (rows at stride `ldc`) are long enough. `per` is 2
/// for bf16 pairs, 4 for int8 quads. Returns false for an empty tile.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_lowp_tile(
    max_mr: usize,
    (groups, per): (usize, usize),
    (a_len, lda): (usize, usize),
    b_len: usize,
    (c_len, ldc): (usize, usize),
    mr: usize,
    nr: usize,
) -> bool {
    assert!(
        mr <= max_mr && nr <= LOWP_NR,
        "tile {mr}x{nr} exceeds {max_mr}x{LOWP_NR}"
    );
    assert!(b_len >= groups * per * LOWP_NR, "weight panel too short");
    if mr == 0 || nr == 0 {
        return false;
    }
    assert!(
        a_len >= (mr - 1) * lda + per * groups,
        "activation rows too short"
    );
    assert!(c_len >= (mr - 1) * ldc + nr, "C tile outside the slice");
    true
}

/// An int8 tile's scales cover its `mr` rows and the whole 32-column panel.
pub(crate) fn check_int8_scales(s: &Int8Scales, mr: usize) {
    assert!(
        s.a_scale.len() >= mr && s.a_zero.len() >= mr,
        "row scales too short"
    );
    assert!(
        s.b_scale.len() >= LOWP_NR && s.b_colsum.len() >= LOWP_NR,
        "column scales must cover the whole panel"
    );
}

/// The reduced-precision kernels of a path.
pub struct LowpKernels {
    /// Rows of the bf16 and int8 microkernel tiles.
    pub mr: usize,
    /// The bf16 microkernel.
    pub bf16: Bf16Kernel,
    /// The int8 microkernel.
    pub int8: Int8Kernel,
    /// f32 to bf16 (round to nearest even), zero-filling `dst` past `src.len()`.
    pub to_bf16: fn(src: &[f32], dst: &mut [u16]),
    /// Asymmetric u8 quantisation of one row, zero-filling `dst` past `src.len()`;
    /// returns `(scale, zero_point)` with `x ≈ scale * (q - zero_point)`.
    pub quantize_u8: fn(src: &[f32], dst: &mut [u8]) -> (f32, i32),
    /// How the int8 kernel reads its weight panels.
    pub int8_layout: Int8Layout,
    /// How the bf16 kernel reads its weight panels.
    pub bf16_layout: Bf16Layout,
    /// How the bf16 kernel computes, for reports (e.g. `VDPBF16PS`).
    pub bf16_compute: &'static str,
    /// How the int8 kernel computes, for reports (e.g. `VPDPBUSD`).
    pub int8_compute: &'static str,
}

/// A GEMM microkernel reading A unpacked: like [`MicroKernel`], but row `i` of the
/// tile's A is `a[i * lda..i * lda + kc]` (no packing pass over A).
pub type DirectMicroKernel = fn(
    kc: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    mr: usize,
    nr: usize,
    acc: bool,
);

/// `x = LayerNorm(x + residual) * gamma + beta` over one row.
pub type LayerNormFn =
    fn(x: &mut [f32], residual: Option<&[f32]>, gamma: &[f32], beta: &[f32], eps: f32);

/// One instruction set's kernels. Obtain it with [`active`] or [`for_isa`].
pub struct Kernels {
    /// The path these kernels belong to.
    pub isa: Isa,
    /// Rows of the GEMM microkernel's tile (activations).
    pub mr: usize,
    /// Columns of the GEMM microkernel's tile (packed weights panel width).
    pub nr: usize,
    /// The GEMM microkernel.
    pub microkernel: MicroKernel,
    /// The same tile reading A unpacked, where the path has one (used instead).
    pub microkernel_direct: Option<DirectMicroKernel>,
    /// `x[i] += bias[i]` over a row.
    pub add_bias: fn(x: &mut [f32], bias: &[f32]),
    /// GELU, exact form `x/2 * (1 + erf(x/√2))`, in place.
    pub gelu_erf: fn(x: &mut [f32]),
    /// GELU, tanh approximation (`gelu_new`), in place.
    pub gelu_tanh: fn(x: &mut [f32]),
    /// ReLU in place.
    pub relu: fn(x: &mut [f32]),
    /// SiLU (swish) `x * sigmoid(x)` in place.
    pub silu: fn(x: &mut [f32]),
    /// `x = gamma * x / sqrt(mean(x²) + eps)` over one row (RMSNorm).
    pub rms_norm: fn(x: &mut [f32], gamma: &[f32], eps: f32),
    /// `x = LayerNorm(x + residual) * gamma + beta` over one row.
    pub layer_norm: LayerNormFn,
    /// Softmax over one row in place, after adding an optional additive mask.
    pub softmax: fn(x: &mut [f32], mask: Option<&[f32]>),
    /// `x = exp(x - max(x))` in place, returning the sum: softmax without the final
    /// division, for callers that divide something smaller (attention's output).
    pub exp_shifted: fn(x: &mut [f32]) -> f32,
    /// Scales a row to unit L2 norm (a zero row stays zero).
    pub l2_normalize: fn(x: &mut [f32]),
    /// `sum a[i] * b[i]` over the shorter of the two (attention scores over a cache).
    pub dot: fn(a: &[f32], b: &[f32]) -> f32,
    /// `y[i] += a * x[i]` over the shorter of the two (attention's weighted values).
    pub axpy: fn(y: &mut [f32], a: f32, x: &[f32]),
    /// [`Kernels::dot`] with `b` in bf16 bits (a bf16 KV cache).
    pub dot_bf16: fn(a: &[f32], b: &[u16]) -> f32,
    /// [`Kernels::axpy`] with `x` in bf16 bits (a bf16 KV cache).
    pub axpy_bf16: fn(y: &mut [f32], a: f32, x: &[u16]),
    /// `out[j] = mean_i x[i * out.len() + j]` over the rows of `x`.
    pub mean_rows: fn(x: &[f32], out: &mut [f32]),
    /// Little-endian IEEE f16 bytes to f32 (`dst.len() * 2 == src.len()`).
    pub f16_to_f32: fn(src: &[u8], dst: &mut [f32]),
    /// Little-endian bf16 bytes to f32 (`dst.len() * 2 == src.len()`).
    pub bf16_to_f32: fn(src: &[u8], dst: &mut [f32]),
    /// bf16 and int8 GEMM kernels, where this path has them.
    pub lowp: Option<&'static LowpKernels>,
}

impl fmt::Debug for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernels")
            .field("isa", &self.isa)
            .field("mr", &self.mr)
            .field("nr", &self.nr)
            .finish_non_exhaustive()
    }
}

/// The kernel table of `isa`, if this CPU supports it.
pub fn for_isa(isa: Isa) -> Result<&'static Kernels> {
    let missing = isa.missing();
    if !missing.is_empty() {
        return Err(Error::IsaUnavailable {
            requested: isa.name().to_string(),
            reason: format!(
                "this CPU lacks {}{}",
                missing.join(", "),
                if masked_features().is_empty() {
                    ""
                } else {
                    " (RINFER_CPU_MASK hides some features)"
                }
            ),
        });
    }
    Ok(match isa {
        Isa::Generic => &generic::KERNELS,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => &x86_64::avx2::KERNELS,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Vnni => &x86_64::avx2_vnni::KERNELS,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => &x86_64::avx512::KERNELS,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Bf16 => &x86_64::avx512bf16::KERNELS,
        #[cfg(target_arch = "x86_64")]
        Isa::Amx => &x86_64::amx::KERNELS,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => &aarch64::neon::KERNELS,
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDotprod => &aarch64::dotprod::KERNELS,
        #[cfg(target_arch = "aarch64")]
        Isa::NeonI8mm => &aarch64::i8mm::KERNELS,
        #[cfg(target_arch = "aarch64")]
        Isa::NeonBf16 => &aarch64::bf16::KERNELS,
        _ => unreachable!("is_supported() is false for another architecture's paths"),
    })
}

static ACTIVE: OnceLock<Result<&'static Kernels, String>> = OnceLock::new();

/// Chooses the kernel table: `RINFER_ISA` if set (it must name a supported path),
/// else the best the CPU has.
fn choose() -> Result<&'static Kernels> {
    match std::env::var("RINFER_ISA") {
        Ok(name) if !name.trim().is_empty() => for_isa(Isa::parse(&name)?),
        _ => for_isa(Isa::best()),
    }
}

/// The kernel table every operation uses, chosen once per process.
///
/// Errors when `RINFER_ISA` names an unknown path or one this CPU lacks.
pub fn try_active() -> Result<&'static Kernels> {
    ACTIVE
        .get_or_init(|| choose().map_err(|e| e.to_string()))
        .as_ref()
        .copied()
        .map_err(|reason| Error::IsaUnavailable {
            requested: std::env::var("RINFER_ISA").unwrap_or_default(),
            reason: reason.clone(),
        })
}

/// The kernel table every operation uses. Falls back to the best supported path
/// (after a warning on stderr) when `RINFER_ISA` is unusable; use [`try_active`]
/// to get the error instead.
pub fn active() -> &'static Kernels {
    match try_active() {
        Ok(k) => k,
        Err(e) => {
            static WARNED: OnceLock<()> = OnceLock::new();
            WARNED.get_or_init(|| eprintln!("rinfer: {e}; using {}", Isa::best()));
            // The best path is supported by construction.
            for_isa(Isa::best()).unwrap_or(&generic::KERNELS)
        }
    }
}
