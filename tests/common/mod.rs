//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rinfer::Isa;
use serde_json::Value;

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

/// Reports a test (or part of one) that did not run: on stderr, and as a line of
/// `skipped.log` in Cargo's test scratch folder, which `scripts/test_rust.sh`
/// empties before the suite and prints, counted, after it (so `cargo test -q`
/// cannot hide a skip, and a skip never reads as a pass).
pub fn skipped(test: &str, reason: &str) {
    let line = format!("SKIPPED {test}: {reason}");
    eprintln!("{line}");
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped.log");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        use std::io::Write;
        // One write of the whole line: appends from parallel tests stay whole.
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// The ISA paths to test: every one this CPU supports. The others are reported
/// through [`skipped`], with the features the CPU lacks.
pub fn isas() -> Vec<Isa> {
    for isa in Isa::ALL {
        if !isa.is_supported() {
            skipped(
                &format!("ISA path {isa}"),
                &format!("CPU lacks {}", isa.missing().join(", ")),
            );
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

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn minilm_dir() -> PathBuf {
    let dir = std::env::var("RINFER_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("models/all-MiniLM-L6-v2"));
    assert!(
        dir.join("model.safetensors").is_file(),
        "reference model missing at {}: run `make model`",
        dir.display()
    );
    dir
}

pub fn golden(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn f32s(v: &Value) -> Vec<f32> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

pub fn id_lists(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

/// Every row: cosine >= 0.99999 and max |diff| <= 1e-4.
pub fn assert_parity(got: &ndarray::Array2<f32>, want: &[f32], what: &str) {
    let dim = got.ncols();
    assert_eq!(got.len(), want.len(), "{what}: size");
    for (i, (g, w)) in got
        .rows()
        .into_iter()
        .zip(want.chunks_exact(dim))
        .enumerate()
    {
        let dot: f64 = g.iter().zip(w).map(|(a, b)| *a as f64 * *b as f64).sum();
        let ng: f64 = g.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        let nw: f64 = w.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        let cos = if ng == 0.0 && nw == 0.0 {
            1.0
        } else {
            dot / (ng * nw)
        };
        let max_diff = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(cos >= 0.99999, "{what}: row {i} cosine {cos}");
        assert!(max_diff <= 1e-4, "{what}: row {i} max abs diff {max_diff}");
    }
}
