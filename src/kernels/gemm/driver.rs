//! The one loop nest every GEMM runs (f32 with packed or in-place A, bf16, int8),
//! and the block sizes it uses, derived from the caches the CPU reports.
//!
//! A precision or ISA brings tiles (a microkernel and, where it reads packed A, a
//! packing step), never loops: [`drive`] walks K slices, bands of rows, groups of
//! weight panels and tiles in that order, and asks the caller, through [`Step`],
//! to pack a band, compute a tile, or finish a tile row (bias and activation while
//! it is still in L1).

use std::sync::OnceLock;

/// Cache sizes one core sees, and the block sizes derived from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    /// Level-1 data cache bytes (per core).
    pub l1d: usize,
    /// Level-2 cache bytes (per core).
    pub l2: usize,
    /// Bytes of packed B one pass sweeps per row tile, kept in L2: 3/8 of it.
    pub b_block: usize,
    /// Bytes of packed A (a band of rows, one K slice) reused across panel groups:
    /// 1/4 of L2.
    pub a_block: usize,
    /// Largest K slice when A is packed (its band stays in L2): `l2 * 3 / 2048`
    /// floats, 1536 at 1 MiB.
    pub kc_packed: usize,
    /// Largest K slice when the microkernel reads A in place (its rows of A stay in
    /// L1): `l1d * 3 / 128` floats, 768 at 32 KiB.
    pub kc_direct: usize,
}

/// Where the detected sizes came from, when detection fails: the machine the
/// ratios were measured on (32 KiB L1d, 1 MiB L2 per core).
const REFERENCE: (usize, usize) = (32 << 10, 1 << 20);

impl Blocking {
    /// The block sizes for caches of `l1d` and `l2` bytes per core (each clamped to
    /// a sane range first: 16-128 KiB and 256 KiB-4 MiB).
    pub fn for_caches(l1d: usize, l2: usize) -> Self {
        let l1d = l1d.clamp(16 << 10, 128 << 10);
        let l2 = l2.clamp(256 << 10, 4 << 20);
        // Slices in whole cache lines of floats.
        let line = |floats: usize| (floats / 16).max(1) * 16;
        Self {
            l1d,
            l2,
            b_block: l2 / 8 * 3,
            a_block: l2 / 4,
            kc_packed: line(l2 * 3 / 2048),
            kc_direct: line(l1d * 3 / 128),
        }
    }

    /// The size of the equal slices, each at most `max`, that `k` is cut into.
    pub(crate) fn slice(k: usize, max: usize) -> usize {
        k.div_ceil(k.div_ceil(max.max(1)).max(1)).max(1)
    }
}

/// This CPU's block sizes, detected once.
pub fn blocking() -> &'static Blocking {
    static B: OnceLock<Blocking> = OnceLock::new();
    B.get_or_init(|| {
        let (l1d, l2) = detect().unwrap_or(REFERENCE);
        Blocking::for_caches(l1d, l2)
    })
}

/// The L1d and L2 sizes of the first CPU, from Linux's sysfs cache description.
#[cfg(target_os = "linux")]
fn detect() -> Option<(usize, usize)> {
    let base = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let (mut l1d, mut l2) = (None, None);
    for entry in std::fs::read_dir(base).ok()?.flatten() {
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            continue;
        };
        let bytes = parse_size(size.trim())?;
        match (level.trim(), kind.trim()) {
            ("1", "Data" | "Unified") => l1d = Some(bytes),
            ("2", "Data" | "Unified") => l2 = Some(bytes),
            _ => {}
        }
    }
    Some((l1d?, l2?))
}

/// Elsewhere nothing is read: the reference sizes hold.
#[cfg(not(target_os = "linux"))]
fn detect() -> Option<(usize, usize)> {
    None
}

/// `"32K"`, `"1024K"`, `"2M"` or a plain byte count.
pub(crate) fn parse_size(s: &str) -> Option<usize> {
    let (num, mul) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<usize>().ok()?.checked_mul(mul)
}

/// How one job is blocked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Rows of a tile.
    pub mr: usize,
    /// K slice (the last one may be shorter; `usize::MAX`: all of K at once).
    pub kc: usize,
    /// Rows of a band (what one packing step covers).
    pub band: usize,
    /// Weight panels per group (one group's panels stay in L2 while every row
    /// tile of the band passes over them).
    pub group: usize,
}

impl Plan {
    /// The f32 path that packs A: K slices up to `kc_packed`, bands of A sized to
    /// `a_block`, panel groups to `b_block`.
    pub fn packed(k: usize, mr: usize, nr: usize) -> Self {
        let bl = blocking();
        let kc = Blocking::slice(k, bl.kc_packed);
        Self {
            mr,
            kc,
            band: (bl.a_block / (kc * 4) / mr).max(1) * mr,
            group: (bl.b_block / (kc * nr * 4)).max(1),
        }
    }

    /// The f32 path that reads A in place: one band; K slices up to `kc_direct`,
    /// or all of K for one row (decoding a token: every weight is read once, so
    /// each panel is swept whole, one contiguous stream).
    pub fn direct(k: usize, rows: usize, mr: usize, nr: usize) -> Self {
        let bl = blocking();
        let kc = if rows == 1 {
            k.max(1)
        } else {
            Blocking::slice(k, bl.kc_direct)
        };
        Self {
            mr,
            kc,
            band: rows.max(1),
            group: (bl.b_block / (kc * nr * 4)).max(1),
        }
    }

    /// bf16 and int8: one band, all of K in one pass (the tiles take whole K),
    /// panel groups of `panel_bytes` each sized to `b_block`.
    pub fn whole_k(rows: usize, mr: usize, panel_bytes: usize) -> Self {
        Self {
            mr,
            kc: usize::MAX,
            band: rows.max(1),
            group: (blocking().b_block / panel_bytes.max(1)).max(1),
        }
    }
}

/// What [`drive`] asks of the caller, in loop order. Rows are relative to the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Rows `b0..b1`, K slice `k0..k0 + kc` are about to be swept: pack them now
    /// if the tiles read packed A.
    Band {
        b0: usize,
        b1: usize,
        k0: usize,
        kc: usize,
    },
    /// One tile: rows `r..r + rows` (of the band starting at `b0`), panel `p`, K
    /// slice `k0..k0 + kc`; accumulate onto C when `k0 > 0`.
    Tile {
        b0: usize,
        r: usize,
        rows: usize,
        p: usize,
        k0: usize,
        kc: usize,
    },
    /// Rows `r..r + rows` have their final sums over panels `g0..g1`: add the bias
    /// and apply the activation now, while they are in L1.
    Done {
        r: usize,
        rows: usize,
        g0: usize,
        g1: usize,
    },
}

/// Walks one job (`rows` rows, panels `p0..p1`, depth `k`) as `plan` blocks it.
pub(crate) fn drive(
    plan: &Plan,
    k: usize,
    rows: usize,
    p0: usize,
    p1: usize,
    mut step: impl FnMut(Step),
) {
    let kc_max = plan.kc.max(1);
    let mut k0 = 0;
    loop {
        let kc = kc_max.min(k - k0);
        let last = k0 + kc >= k;
        let mut b0 = 0;
        while b0 < rows {
            let b1 = (b0 + plan.band.max(1)).min(rows);
            step(Step::Band { b0, b1, k0, kc });
            let mut g0 = p0;
            while g0 < p1 {
                let g1 = (g0 + plan.group.max(1)).min(p1);
                let mut r = b0;
                while r < b1 {
                    let n = plan.mr.min(b1 - r);
                    for p in g0..g1 {
                        step(Step::Tile {
                            b0,
                            r,
                            rows: n,
                            p,
                            k0,
                            kc,
                        });
                    }
                    if last {
                        step(Step::Done { r, rows: n, g0, g1 });
                    }
                    r += n;
                }
                g0 = g1;
            }
            b0 = b1;
        }
        k0 += kc;
        if k0 >= k {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_caches_give_the_measured_sizes() {
        let b = Blocking::for_caches(32 << 10, 1 << 20);
        assert_eq!(
            (b.b_block, b.a_block, b.kc_packed, b.kc_direct),
            (384 << 10, 256 << 10, 1536, 768)
        );
        // clamped, and slices stay whole cache lines
        let tiny = Blocking::for_caches(1, 1);
        assert_eq!((tiny.l1d, tiny.l2), (16 << 10, 256 << 10));
        assert_eq!(tiny.kc_direct % 16, 0);
        assert_eq!(Blocking::for_caches(48 << 10, 2 << 20).kc_direct, 1152);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("32K"), Some(32 << 10));
        assert_eq!(parse_size("1024K"), Some(1 << 20));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn every_tile_once_per_slice_and_every_row_finished_once() {
        for &(k, rows, p1, mr, kc, band, group) in &[
            (10, 7, 5, 3, 4, 6, 2),
            (0, 2, 1, 4, 8, 8, 1),
            (9, 1, 3, 12, 9, 1, 8),
            (17, 13, 4, 4, 5, 4, 3),
        ] {
            let plan = Plan {
                mr,
                kc,
                band,
                group,
            };
            let mut tiles = std::collections::HashMap::new();
            let mut done = vec![vec![0; p1]; rows];
            let mut banded = 0;
            drive(&plan, k, rows, 0, p1, |s| match s {
                Step::Band { b0, b1, .. } => banded += b1 - b0,
                Step::Tile {
                    r,
                    rows: n,
                    p,
                    k0,
                    kc,
                    ..
                } => {
                    assert!(n <= mr && kc <= plan.kc.max(1));
                    for i in r..r + n {
                        *tiles.entry((i, p)).or_insert(0) += kc;
                        let _ = k0;
                    }
                }
                Step::Done {
                    r, rows: n, g0, g1, ..
                } => {
                    for row in done.iter_mut().skip(r).take(n) {
                        for d in &mut row[g0..g1] {
                            *d += 1;
                        }
                    }
                }
            });
            let slices = k.div_ceil(plan.kc.max(1)).max(1);
            assert_eq!(banded, rows * slices);
            for i in 0..rows {
                for p in 0..p1 {
                    assert_eq!(tiles[&(i, p)], k, "row {i} panel {p} covers all of K");
                    assert_eq!(done[i][p], 1);
                }
            }
        }
    }
}
