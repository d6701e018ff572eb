//! Helpers shared by the integration tests.
#![allow(dead_code)]

use rinfer::Isa;

/// Deterministic values in [-1, 1) (SplitMix64), so failures reproduce.
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The ISA paths to test: every one this CPU supports. The others are named on
/// stderr (visible with `--nocapture`, and in CI's log) as skipped.
pub fn isas() -> Vec<Isa> {
    for isa in Isa::ALL {
        if !isa.is_supported() {
            eprintln!("SKIPPED: ISA path `{isa}` is not supported by this CPU");
        }
    }
    Isa::supported()
}

/// Element-wise |got - want| <= tol * max(1, |want|), with a readable failure.
pub fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let bound = tol * w.abs().max(1.0);
        assert!(
            (g - w).abs() <= bound || (g.is_nan() && w.is_nan()),
            "{what}: element {i}: got {g}, want {w} (tol {bound})"
        );
    }
}
