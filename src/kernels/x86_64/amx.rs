//! AMX path (Intel Sapphire Rapids and later Xeons): the f32 kernels of the AVX-512
//! path, and bf16 (`TDPBF16PS`) and int8 (`TDPBUSD`) GEMM tiles on the AMX tile
//! registers, 32x32 per call (int8 tiles of 12 rows or fewer and bf16 single rows
//! stay on the zmm kernels of [`avx512bf16`], faster there).
//!
//! A tile register holds up to 16 rows of 64 bytes. The weight panels are already in
//! the layout AMX reads: a quad (int8) or pair (bf16) step of a panel is 128 bytes,
//! columns 0..16 then 16..32, each column's K-consecutive values side by side, so one
//! B tile is 16 steps of one half at a stride of 128 bytes. The activations are rows
//! of 64 bytes per K chunk (64 u8 or 32 bf16). Eight tiles: A rows 0..16 and 16..32
//! (tmm0, tmm1), B halves (tmm2, tmm3), and the four 16x16 accumulators (tmm4..tmm7).
//! A block of fewer than 16 rows gets tiles of its height (a configuration per
//! height, kept while it serves); the last K chunk, when short, is copied into
//! zero-padded buffers: a tile never reads outside its operands.
//!
//! Rust has no stable AMX intrinsics or feature detection: the instructions go
//! through `asm!` with literal tile registers (no register class exists for them;
//! nothing else in the process uses them), and the CPU features are read from CPUID
//! leaf 7 and XCR0 here. Linux hands the tile state to a process only on request
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`), made once when the path
//! is probed; on other systems the path reports itself unavailable.

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::Cell;
use std::sync::OnceLock;

use super::{avx512, avx512bf16};
use crate::kernels::{
    check_int8_scales, check_lowp_tile, Bf16Layout, Int8Layout, Int8Scales, Isa, Kernels,
    LowpKernels, LOWP_NR,
};

/// Rows of the bf16 and int8 tiles (two 16-row tile blocks).
pub const MR: usize = 32;

/// The AMX kernel table.
pub static KERNELS: Kernels = Kernels {
    isa: Isa::Amx,
    lowp: Some(&LOWP),
    ..avx512::TABLE
};

/// The reduced-precision kernels of this path; the conversions are AVX-512 BF16's.
pub static LOWP: LowpKernels = LowpKernels {
    mr: MR,
    bf16,
    int8,
    int8_layout: Int8Layout::Quads,
    bf16_layout: Bf16Layout::Pairs,
    bf16_compute: "TDPBF16PS on AMX tiles",
    int8_compute: "TDPBUSD on AMX tiles",
    ..avx512bf16::LOWP
};

/// AMX-TILE, AMX-INT8 and AMX-BF16 as CPUID leaf 7 reports them (EDX bits 24, 25, 22).
pub fn cpu_features() -> [(&'static str, bool); 3] {
    // CPUID leaf 7 exists on every CPU with AVX2 (this path's list starts with the
    // AVX-512 features, so these bits decide nothing on an older CPU).
    let edx = __cpuid_count(7, 0).edx;
    [
        ("amx-tile", edx & (1 << 24) != 0),
        ("amx-int8", edx & (1 << 25) != 0),
        ("amx-bf16", edx & (1 << 22) != 0),
    ]
}

/// Whether the OS lets this process use the tile registers: XCR0 enables tile
/// state (bits 17 and 18) and, on Linux, the kernel granted the permission asked
/// for here (once per process).
pub fn os_permits() -> bool {
    static PERMITTED: OnceLock<bool> = OnceLock::new();
    *PERMITTED.get_or_init(|| {
        if !is_x86_feature_detected!("avx512f")
            || !is_x86_feature_detected!("xsave")
            || !cpu_features().iter().all(|&(_, has)| has)
        {
            return false;
        }
        // SAFETY: XSAVE (and so XGETBV) is supported: checked just above.
        let xcr0 = unsafe { xcr0() };
        if xcr0 & (0b11 << 17) != 0b11 << 17 {
            return false;
        }
        request_tile_state()
    })
}

/// XCR0, the OS-enabled state components.
///
/// # Safety
/// The CPU must support XSAVE.
#[target_feature(enable = "xsave")]
unsafe fn xcr0() -> u64 {
    // SAFETY: the caller guarantees XSAVE.
    unsafe { _xgetbv(0) }
}

#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM takes two integers and touches
    // no memory of ours; it fails (non-zero) where the kernel does not support it.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// The tile configuration (`LDTILECFG`'s 64 bytes): palette 1; every tile 64
/// bytes wide; the B tiles (tmm2, tmm3) 16 rows; the A tile and accumulators of the
/// first row block (tmm0, tmm4, tmm5) `rows0` rows and those of the second (tmm1,
/// tmm6, tmm7) `rows1` (16 when the block is unused). Tiles as tall as the block's
/// rows read and write only those rows: a short block needs no padding.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn new(rows0: usize, rows1: usize) -> Self {
        let mut b = [0u8; 64];
        b[0] = 1;
        let rows1 = if rows1 == 0 { 16 } else { rows1 };
        for (t, rows) in [rows0, rows1, 16, 16, rows0, rows0, rows1, rows1]
            .into_iter()
            .enumerate()
        {
            b[16 + 2 * t] = 64; // bytes per row, little-endian u16
            b[48 + t] = rows as u8;
        }
        TileConfig(b)
    }
}

thread_local! {
    /// The row counts this thread's tiles are configured for (`(0, 0)`: none yet).
    /// Nothing else in the process configures tiles, so a configuration stays
    /// until a tile of another height asks for its own.
    static CONFIGURED: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Loads the configuration for blocks of `rows0` and `rows1` rows, unless loaded.
fn configure(rows0: usize, rows1: usize) {
    CONFIGURED.with(|c| {
        if c.get() != (rows0, rows1) {
            let cfg = TileConfig::new(rows0, rows1);
            // SAFETY: `cfg` is a valid palette-1 configuration of 64 bytes (rows 1..=16,
            // 64 bytes per row); LDTILECFG only reads it.
            unsafe { asm!("ldtilecfg [{}]", in(reg) &cfg as *const TileConfig, options(nostack, readonly)) };
            c.set((rows0, rows1));
        }
    });
}

/// 32 rows of 32 four-byte sums (i32 or f32), as the tiles store them.
#[repr(C, align(64))]
struct Sums([[u32; 32]; 32]);

/// Zero-padded copies of a partial operand: 16 rows of 64 bytes (A) or 16 steps of
/// 128 bytes (B).
#[repr(C, align(64))]
struct Pad<const N: usize>([u8; N]);

/// One instruction on literal tile registers: `$op` is `TDPBUSD` or `TDPBF16PS`.
macro_rules! dot {
    ($op:literal, $c:literal, $a:literal, $b:literal) => {
        // SAFETY: the tiles are configured (the caller's first step) and hold
        // loaded operands; the instruction touches no memory.
        unsafe {
            asm!(
                concat!($op, " tmm", $c, ", tmm", $a, ", tmm", $b),
                options(nostack)
            )
        }
    };
}

/// `TILELOADD tmm$t, [ptr + stride]`.
macro_rules! load {
    ($t:literal, $ptr:expr, $stride:expr) => {
        // SAFETY: the caller guarantees the tile's configured rows (at most 16) of
        // 64 readable bytes at `$ptr`, `$stride` bytes apart.
        unsafe {
            asm!(
                concat!("tileloadd tmm", $t, ", [{p} + {s}]"),
                p = in(reg) $ptr,
                s = in(reg) $stride,
                options(nostack, readonly)
            )
        }
    };
}

/// `TILESTORED [ptr + stride], tmm$t`.
macro_rules! store {
    ($t:literal, $ptr:expr, $stride:expr) => {
        // SAFETY: the caller guarantees the tile's configured rows (at most 16) of
        // 64 writable bytes at `$ptr`, `$stride` bytes apart.
        unsafe {
            asm!(
                concat!("tilestored [{p} + {s}], tmm", $t),
                p = in(reg) $ptr,
                s = in(reg) $stride,
                options(nostack)
            )
        }
    };
}

/// Copies rows `0..rows` (at most 16) of `len <= 64` bytes from `src` (stride
/// `lda`) into a zeroed 16x64 buffer.
///
/// # Safety
/// `src` must be valid for those reads.
unsafe fn pad_rows(src: *const u8, lda: usize, rows: usize, len: usize) -> Pad<1024> {
    let mut p = Pad([0u8; 1024]);
    for i in 0..rows {
        // SAFETY: row `i` has `len` readable bytes (the caller's contract); the
        // buffer row has 64 >= len.
        unsafe {
            std::ptr::copy_nonoverlapping(src.add(i * lda), p.0.as_mut_ptr().add(64 * i), len)
        };
    }
    p
}

/// Sums of a 32x32 tile over `units` K steps (quads for int8, pairs for bf16),
/// stored to rows `0..mr` of `out` (the other rows are left as they are); `DPBF16`
/// picks the instruction.
///
/// # Safety
/// `a` must be valid for `mr <= 32` rows of `4 * units` bytes at stride `lda`, `b`
/// for `128 * units` bytes; the CPU must support AMX-TILE and the instruction's AMX
/// extension, and [`os_permits`] must have returned true.
unsafe fn tiles<const DPBF16: bool>(
    units: usize,
    a: *const u8,
    lda: usize,
    b: *const u8,
    mr: usize,
    out: &mut Sums,
) {
    let two = mr > 16;
    let rows0 = mr.min(16);
    let rows1 = mr.saturating_sub(16);
    configure(rows0, rows1);
    // SAFETY: configured above; TILEZERO touches no memory.
    unsafe {
        asm!(
            "tilezero tmm4",
            "tilezero tmm5",
            "tilezero tmm6",
            "tilezero tmm7",
            options(nostack)
        )
    };
    let bytes = 4 * units;
    let mut off = 0;
    while off < bytes {
        let len = (bytes - off).min(64);
        let steps = len / 4;
        // B: 16 steps of 128 bytes from step `off / 4`, padded where fewer remain.
        let bpad;
        let bsrc = if steps == 16 {
            b.wrapping_add(32 * off)
        } else {
            let mut p = Pad([0u8; 2048]);
            // SAFETY: steps `off / 4 ..` up to `units` are inside the panel.
            unsafe {
                std::ptr::copy_nonoverlapping(b.add(32 * off), p.0.as_mut_ptr(), 128 * steps)
            };
            bpad = p;
            bpad.0.as_ptr()
        };
        load!(2, bsrc, 128usize);
        load!(3, bsrc.wrapping_add(64), 128usize);
        // A: the block's rows, in place unless this is a short last K chunk.
        let a0;
        if len == 64 {
            load!(0, a.wrapping_add(off), lda);
        } else {
            // SAFETY: rows `0..rows0` hold `len` bytes from `off`.
            a0 = unsafe { pad_rows(a.add(off), lda, rows0, len) };
            load!(0, a0.0.as_ptr(), 64usize);
        }
        if DPBF16 {
            dot!("tdpbf16ps", "4", "0", "2");
            dot!("tdpbf16ps", "5", "0", "3");
        } else {
            dot!("tdpbusd", "4", "0", "2");
            dot!("tdpbusd", "5", "0", "3");
        }
        if two {
            let a1;
            let top = a.wrapping_add(16 * lda + off);
            if len == 64 {
                load!(1, top, lda);
            } else {
                // SAFETY: rows `16..mr` hold `len` bytes from `off`.
                a1 = unsafe { pad_rows(top, lda, rows1, len) };
                load!(1, a1.0.as_ptr(), 64usize);
            }
            if DPBF16 {
                dot!("tdpbf16ps", "6", "1", "2");
                dot!("tdpbf16ps", "7", "1", "3");
            } else {
                dot!("tdpbusd", "6", "1", "2");
                dot!("tdpbusd", "7", "1", "3");
            }
        }
        off += len;
    }
    let base = out.0.as_mut_ptr() as *mut u8;
    store!(4, base, 128usize);
    store!(5, base.wrapping_add(64), 128usize);
    if two {
        store!(6, base.wrapping_add(16 * 128), 128usize);
        store!(7, base.wrapping_add(16 * 128 + 64), 128usize);
    }
}

/// The columns `0..nr` of a 16-wide half as a store mask.
fn half_mask(nr: usize, h: usize) -> __mmask16 {
    let cols = nr.saturating_sub(16 * h).min(16);
    ((1u32 << cols) - 1) as __mmask16
}

/// Safe entry point with the [`crate::kernels::Bf16Kernel`] contract.
#[allow(clippy::too_many_arguments)]
fn bf16(
    kp: usize,
    a: &[u16],
    lda: usize,
    b: &[u16],
    c: &mut [f32],
    ldc: usize,
    mr: usize,
    nr: usize,
) {
    if mr == 1 {
        // One row fills a sixteenth of a tile: `VDPBF16PS` on zmm is faster there
        // (measured: 1x384x1536, 1 thread, 40.6 against 28.0 GFLOP/s), on the same
        // panels.
        return avx512bf16::bf16(kp, a, lda, b, c, ldc, mr, nr);
    }
    if !check_lowp_tile(MR, (kp, 2), (a.len(), lda), b.len(), (c.len(), ldc), mr, nr) {
        return;
    }
    let mut sums = Sums([[0; 32]; 32]);
    // SAFETY: the checks above bound the reads: `mr` rows of `2 * kp` bf16 (`4 * kp`
    // bytes) at a stride of `lda` values, and `kp` steps of 64 bf16 (128 bytes) of
    // the panel. The table holding this function is handed out only when the CPU
    // has AMX-TILE and AMX-BF16 and the OS permits the tile state.
    unsafe {
        tiles::<true>(
            kp,
            a.as_ptr() as *const u8,
            2 * lda,
            b.as_ptr() as *const u8,
            mr,
            &mut sums,
        )
    };
    // SAFETY: rows `0..mr`, columns `0..nr` of C are in the slice (checked above);
    // the CPU has AVX-512 (this path's features include it).
    unsafe { store_bf16(&sums, c.as_mut_ptr(), ldc, mr, nr) };
}

/// # Safety
/// `c` must be valid for rows `0..mr` (stride `ldc`) of `nr <= 32` columns; the
/// CPU must support AVX-512 F.
#[target_feature(enable = "avx512f")]
unsafe fn store_bf16(sums: &Sums, c: *mut f32, ldc: usize, mr: usize, nr: usize) {
    for (i, row) in sums.0.iter().enumerate().take(mr) {
        for h in 0..2 {
            let mask = half_mask(nr, h);
            // SAFETY: the sums row holds 32 values; the masked store writes only
            // columns below `nr` of row `i` (the caller's contract).
            unsafe {
                let v = _mm512_loadu_ps(row.as_ptr().add(16 * h) as *const f32);
                _mm512_mask_storeu_ps(c.add(i * ldc + 16 * h), mask, v);
            }
        }
    }
}

/// Safe entry point with the [`crate::kernels::Int8Kernel`] contract.
#[allow(clippy::too_many_arguments)]
fn int8(
    kq: usize,
    a: &[u8],
    lda: usize,
    b: &[i8],
    c: &mut [f32],
    ldc: usize,
    mr: usize,
    nr: usize,
    s: &Int8Scales,
) {
    if mr <= avx512bf16::MR {
        // A few rows fill too little of a 16-row tile: `VPDPBUSD` on zmm is faster
        // there (measured: 10x384x1536, 1 thread, 601 against 349 GFLOP/s), on the
        // same panels, to the same exact sums.
        return avx512bf16::int8(kq, a, lda, b, c, ldc, mr, nr, s);
    }
    check_int8_scales(s, mr);
    if !check_lowp_tile(MR, (kq, 4), (a.len(), lda), b.len(), (c.len(), ldc), mr, nr) {
        return;
    }
    let mut sums = Sums([[0; 32]; 32]);
    // SAFETY: the checks above bound the reads: `mr` rows of `4 * kq` bytes at a
    // stride of `lda`, and `kq` steps of 128 bytes of the panel. The table holding
    // this function is handed out only when the CPU has AMX-TILE and AMX-INT8 and
    // the OS permits the tile state.
    unsafe { tiles::<false>(kq, a.as_ptr(), lda, b.as_ptr() as *const u8, mr, &mut sums) };
    // SAFETY: rows `0..mr`, columns `0..nr` of C are in the slice, the scales cover
    // `mr` rows and 32 columns (checked above); the CPU has AVX-512.
    unsafe { store_int8(&sums, c.as_mut_ptr(), ldc, mr, nr, s) };
}

/// `C = a_scale * b_scale * (sum - a_zero * colsum)`, as every int8 path computes it.
///
/// # Safety
/// As [`store_bf16`], and `s` must cover `mr` rows and 32 columns.
#[target_feature(enable = "avx512f")]
unsafe fn store_int8(sums: &Sums, c: *mut f32, ldc: usize, mr: usize, nr: usize, s: &Int8Scales) {
    for (i, row) in sums.0.iter().enumerate().take(mr) {
        let zero = _mm512_set1_epi32(s.a_zero[i]);
        let sa = _mm512_set1_ps(s.a_scale[i]);
        for h in 0..2 {
            let mask = half_mask(nr, h);
            // SAFETY: 32 sums per row, 32 column scales and sums (the caller's
            // contract); the masked store writes only columns below `nr`.
            unsafe {
                let v = _mm512_loadu_si512(row.as_ptr().add(16 * h) as *const _);
                let cs = _mm512_loadu_si512(s.b_colsum.as_ptr().add(16 * h) as *const _);
                let bs = _mm512_loadu_ps(s.b_scale.as_ptr().add(16 * h));
                let v = _mm512_sub_epi32(v, _mm512_mullo_epi32(zero, cs));
                let f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(bs, sa));
                _mm512_mask_storeu_ps(c.add(i * ldc + 16 * h), mask, f);
            }
        }
    }
}

const _: () = assert!(LOWP_NR == 32, "AMX tiles cover panels of 32 columns");
