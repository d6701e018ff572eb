//! Every row/element kernel on every ISA path this CPU has, against the generic
//! reference, over awkward sizes and random data.

mod common;

use common::{assert_close, isas, random, skipped};
use proptest::prelude::*;
use rinfer::kernels::{self, Isa, Kernels};

/// 0, 1, around the vector widths (8, 16, 32), primes, and a large odd size.
const SIZES: &[usize] = &[
    0,
    1,
    2,
    3,
    7,
    8,
    9,
    15,
    16,
    17,
    31,
    32,
    33,
    63,
    64,
    65,
    97,
    127,
    384,
    1024 + 17,
];

fn generic() -> &'static Kernels {
    kernels::for_isa(Isa::Generic).unwrap()
}

/// Applies `f` of each ISA's table to a copy of `x` and compares with generic's.
fn check_inplace(name: &str, pick: fn(&Kernels) -> fn(&mut [f32]), scale: f32, tol: f32) {
    for (s, &n) in SIZES.iter().enumerate() {
        let x: Vec<f32> = random(n, 10 + s as u64).iter().map(|v| v * scale).collect();
        let mut want = x.clone();
        pick(generic())(&mut want);
        for isa in isas() {
            let mut got = x.clone();
            pick(kernels::for_isa(isa).unwrap())(&mut got);
            assert_close(&got, &want, tol, &format!("{name} on {isa}, n={n}"));
        }
    }
}

#[test]
fn gelu_erf_matches_reference() {
    check_inplace("gelu_erf", |k| k.gelu_erf, 6.0, 2e-6);
}

#[test]
fn gelu_tanh_matches_reference() {
    check_inplace("gelu_tanh", |k| k.gelu_tanh, 6.0, 2e-6);
}

#[test]
fn silu_matches_reference() {
    check_inplace("silu", |k| k.silu, 12.0, 2e-6);
}

#[test]
fn rms_norm_matches_reference() {
    for &n in SIZES {
        let x: Vec<f32> = random(n, 7).iter().map(|v| v * 4.0 + 0.5).collect();
        let g = random(n, 8);
        for eps in [1e-6, 1e-5] {
            let mut want = x.clone();
            (generic().rms_norm)(&mut want, &g, eps);
            for isa in isas() {
                let mut got = x.clone();
                (kernels::for_isa(isa).unwrap().rms_norm)(&mut got, &g, eps);
                assert_close(&got, &want, 1e-5, &format!("rms_norm on {isa}, n={n}"));
            }
        }
    }
}

#[test]
fn relu_matches_reference() {
    check_inplace("relu", |k| k.relu, 1.0, 0.0);
}

#[test]
fn l2_normalize_matches_reference() {
    check_inplace("l2_normalize", |k| k.l2_normalize, 3.0, 1e-6);
    for isa in isas() {
        let mut zero = vec![0.0f32; 37];
        (kernels::for_isa(isa).unwrap().l2_normalize)(&mut zero);
        assert!(
            zero.iter().all(|&v| v == 0.0),
            "a zero row stays zero on {isa}"
        );
    }
}

#[test]
fn gelu_extremes() {
    let x = vec![-1e4f32, -20.0, -5.0, -1e-30, 0.0, 1e-30, 5.0, 20.0, 1e4];
    let mut want = x.clone();
    (generic().gelu_erf)(&mut want);
    for isa in isas() {
        let k = kernels::for_isa(isa).unwrap();
        let mut got = x.clone();
        (k.gelu_erf)(&mut got);
        assert_close(&got, &want, 1e-6, &format!("gelu_erf extremes on {isa}"));
        let mut got = x.clone();
        let mut want_t = x.clone();
        (k.gelu_tanh)(&mut got);
        (generic().gelu_tanh)(&mut want_t);
        assert_close(&got, &want_t, 1e-6, &format!("gelu_tanh extremes on {isa}"));
    }
}

#[test]
fn add_bias_matches_reference() {
    for &n in SIZES {
        let x = random(n, 1);
        let b = random(n, 2);
        let mut want = x.clone();
        (generic().add_bias)(&mut want, &b);
        for isa in isas() {
            let mut got = x.clone();
            (kernels::for_isa(isa).unwrap().add_bias)(&mut got, &b);
            assert_close(&got, &want, 0.0, &format!("add_bias on {isa}, n={n}"));
        }
    }
}

#[test]
fn layer_norm_with_and_without_residual() {
    for &n in SIZES {
        let x: Vec<f32> = random(n, 3).iter().map(|v| v * 4.0 + 1.5).collect();
        let r = random(n, 4);
        let g = random(n, 5);
        let b = random(n, 6);
        for residual in [None, Some(r.as_slice())] {
            let mut want = x.clone();
            (generic().layer_norm)(&mut want, residual, &g, &b, 1e-12);
            for isa in isas() {
                let mut got = x.clone();
                (kernels::for_isa(isa).unwrap().layer_norm)(&mut got, residual, &g, &b, 1e-12);
                let what = format!(
                    "layer_norm on {isa}, n={n}, residual={}",
                    residual.is_some()
                );
                assert_close(&got, &want, 1e-5, &what);
            }
        }
    }
}

#[test]
fn softmax_with_and_without_mask() {
    for &n in SIZES {
        let x: Vec<f32> = random(n, 7).iter().map(|v| v * 30.0).collect();
        let mask: Vec<f32> = (0..n)
            .map(|i| if i % 3 == 1 { f32::NEG_INFINITY } else { 0.0 })
            .collect();
        for m in [None, Some(mask.as_slice())] {
            let mut want = x.clone();
            (generic().softmax)(&mut want, m);
            if n > 0 && m.is_none() {
                let total: f32 = want.iter().sum();
                assert!((total - 1.0).abs() < 1e-5, "reference sums to one");
            }
            for isa in isas() {
                let mut got = x.clone();
                (kernels::for_isa(isa).unwrap().softmax)(&mut got, m);
                let what = format!("softmax on {isa}, n={n}, mask={}", m.is_some());
                assert_close(&got, &want, 2e-6, &what);
            }
        }
    }
    // A row masked out entirely gives zeros, not NaN.
    for isa in isas() {
        let mut x = vec![1.0f32; 5];
        (kernels::for_isa(isa).unwrap().softmax)(&mut x, Some(&[f32::NEG_INFINITY; 5]));
        assert_eq!(x, [0.0; 5], "{isa}");
    }
}

#[test]
fn exp_shifted_matches_reference() {
    for &n in SIZES {
        let x: Vec<f32> = random(n, 9).iter().map(|v| v * 30.0).collect();
        let mut want = x.clone();
        let want_sum = (generic().exp_shifted)(&mut want);
        for isa in isas() {
            let mut got = x.clone();
            let sum = (kernels::for_isa(isa).unwrap().exp_shifted)(&mut got);
            assert_close(&got, &want, 2e-6, &format!("exp_shifted on {isa}, n={n}"));
            assert_close(
                &[sum],
                &[want_sum],
                2e-6,
                &format!("exp_shifted sum on {isa}, n={n}"),
            );
        }
    }
    for isa in isas() {
        let mut x = vec![f32::NEG_INFINITY; 3];
        assert_eq!(
            (kernels::for_isa(isa).unwrap().exp_shifted)(&mut x),
            0.0,
            "{isa}"
        );
        assert_eq!(x, [0.0; 3], "{isa}");
    }
}

#[test]
fn mean_rows_matches_reference() {
    for &cols in &[1usize, 7, 16, 17, 384] {
        for rows in [0usize, 1, 2, 5, 33] {
            let x = random(rows * cols, (rows * 31 + cols) as u64);
            let mut want = vec![f32::NAN; cols];
            (generic().mean_rows)(&x, &mut want);
            for isa in isas() {
                let mut got = vec![f32::NAN; cols];
                (kernels::for_isa(isa).unwrap().mean_rows)(&x, &mut got);
                assert_close(
                    &got,
                    &want,
                    1e-6,
                    &format!("mean_rows on {isa}, {rows}x{cols}"),
                );
            }
        }
    }
}

#[test]
fn half_conversions_are_exact() {
    for &n in SIZES {
        let x = random(n, 9);
        let f16_bytes: Vec<u8> = x
            .iter()
            .flat_map(|&v| half::f16::from_f32(v * 100.0).to_le_bytes())
            .collect();
        let bf16_bytes: Vec<u8> = x
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v * 1e5).to_le_bytes())
            .collect();
        let mut want16 = vec![0.0f32; n];
        let mut wantb = vec![0.0f32; n];
        (generic().f16_to_f32)(&f16_bytes, &mut want16);
        (generic().bf16_to_f32)(&bf16_bytes, &mut wantb);
        for isa in isas() {
            let k = kernels::for_isa(isa).unwrap();
            let mut got = vec![f32::NAN; n];
            (k.f16_to_f32)(&f16_bytes, &mut got);
            assert_eq!(got, want16, "f16 on {isa}, n={n}");
            (k.bf16_to_f32)(&bf16_bytes, &mut got);
            assert_eq!(got, wantb, "bf16 on {isa}, n={n}");
        }
    }
    // Specials survive: inf, -0, NaN.
    let specials = [half::f16::INFINITY, half::f16::NEG_ZERO, half::f16::NAN];
    let bytes: Vec<u8> = specials.iter().flat_map(|v| v.to_le_bytes()).collect();
    for isa in isas() {
        let mut got = [0.0f32; 3];
        (kernels::for_isa(isa).unwrap().f16_to_f32)(&bytes, &mut got);
        assert!(
            got[0].is_infinite() && got[1] == 0.0 && got[1].is_sign_negative() && got[2].is_nan()
        );
    }
}

#[test]
fn isa_names_parse_and_unknown_is_an_error() {
    for isa in Isa::ALL {
        assert_eq!(Isa::parse(isa.name()).unwrap(), isa);
        assert_eq!(Isa::parse(&isa.name().to_uppercase()).unwrap(), isa);
    }
    let err = Isa::parse("sse9").unwrap_err();
    assert!(matches!(err, rinfer::Error::IsaUnavailable { .. }), "{err}");
    assert!(
        err.to_string().contains("generic, avx2, avx2-vnni, avx512"),
        "{err}"
    );
    assert!(Isa::Generic.is_supported());
    assert!(Isa::supported().contains(&Isa::best()));
}

#[test]
fn active_table_follows_rinfer_isa() {
    // CI runs the suite once per `RINFER_ISA` value; the table must be that path.
    let active = kernels::try_active();
    match std::env::var("RINFER_ISA") {
        Ok(name) if !name.is_empty() => {
            let want = Isa::parse(&name).unwrap();
            if want.is_supported() {
                assert_eq!(active.unwrap().isa, want);
            } else {
                skipped(
                    &format!("RINFER_ISA={name}"),
                    &format!("CPU lacks {}", want.missing().join(", ")),
                );
                assert!(active.is_err());
            }
        }
        _ => assert_eq!(active.unwrap().isa, Isa::best()),
    }
    assert_eq!(rinfer::build_info().isa, kernels::active().isa);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_rows(n in 0usize..300, seed in any::<u64>(), scale in 0.01f32..50.0) {
        let x: Vec<f32> = random(n, seed).iter().map(|v| v * scale).collect();
        let g = random(n, seed ^ 1);
        let b = random(n, seed ^ 2);
        for isa in isas() {
            let k = kernels::for_isa(isa).unwrap();
            let mut want = x.clone();
            let mut got = x.clone();
            (generic().gelu_erf)(&mut want);
            (k.gelu_erf)(&mut got);
            assert_close(&got, &want, 2e-6, "gelu_erf");
            let mut want = x.clone();
            let mut got = x.clone();
            (generic().softmax)(&mut want, None);
            (k.softmax)(&mut got, None);
            assert_close(&got, &want, 2e-6, "softmax");
            let mut want = x.clone();
            let mut got = x.clone();
            (generic().layer_norm)(&mut want, None, &g, &b, 1e-5);
            (k.layer_norm)(&mut got, None, &g, &b, 1e-5);
            assert_close(&got, &want, 2e-5, "layer_norm");
        }
    }
}

/// Both GEMM tile kernels of every path (packed A, and A read in place where the
/// path has that), called directly on one tile, against a plain triple loop:
/// every tile height and width, with and without accumulation.
#[test]
fn microkernels_compute_one_tile() {
    for isa in isas() {
        let kern = kernels::for_isa(isa).unwrap();
        let (mr, nr) = (kern.mr, kern.nr);
        for kc in [1usize, 7, 64] {
            let a = random(mr * kc, kc as u64); // row-major mr x kc
            let b = random(kc * nr, kc as u64 + 1); // kc groups of nr
            let mut packed_a = vec![0.0f32; kc * mr];
            for p in 0..kc {
                for i in 0..mr {
                    packed_a[p * mr + i] = a[i * kc + p];
                }
            }
            for rows in 1..=mr {
                for cols in [1, nr / 2 + 1, nr] {
                    for acc in [false, true] {
                        let ldc = nr + 3;
                        let start = random(rows * ldc, 99);
                        let mut want = start.clone();
                        for i in 0..rows {
                            for j in 0..cols {
                                let dot: f32 = (0..kc).map(|p| a[i * kc + p] * b[p * nr + j]).sum();
                                want[i * ldc + j] =
                                    if acc { start[i * ldc + j] + dot } else { dot };
                            }
                        }
                        let what = format!("{isa} tile {rows}x{cols} kc={kc} acc={acc}");
                        let mut c = start.clone();
                        (kern.microkernel)(kc, &packed_a, &b, &mut c, ldc, rows, cols, acc);
                        assert_close(&c, &want, 1e-5, &format!("packed {what}"));
                        if let Some(direct) = kern.microkernel_direct {
                            let mut c = start.clone();
                            direct(kc, &a, kc, &b, &mut c, ldc, rows, cols, acc);
                            assert_close(&c, &want, 1e-5, &format!("direct {what}"));
                        }
                    }
                }
            }
        }
    }
}

/// `RINFER_CPU_MASK` hides features: every path needing one reads as absent, names
/// it, and the best path is below it (how the suite runs as on an older CPU).
#[test]
fn masked_features_read_as_absent() {
    let mask = kernels::masked_features();
    for isa in Isa::ALL {
        let missing = isa.missing();
        assert_eq!(isa.is_supported(), missing.is_empty(), "{isa}");
        for m in mask {
            if isa != Isa::Generic && missing.iter().all(|f| f != m) {
                // The mask names a feature this path does not need.
                continue;
            }
            if missing.iter().any(|f| f == m) {
                let err = kernels::for_isa(isa).unwrap_err().to_string();
                assert!(err.contains(m.as_str()), "{isa}: {err}");
            }
        }
    }
    if mask.iter().any(|m| m == "avx512f") {
        assert!(!Isa::Avx512.is_supported() && !Isa::Avx512Bf16.is_supported());
        // AVX-VNNI (VEX) needs no AVX-512: a CPU with it keeps that path.
        let below = [Isa::Avx2Vnni, Isa::Avx2]
            .into_iter()
            .find(|i| i.is_supported())
            .unwrap_or(Isa::Generic);
        assert_eq!(Isa::best(), below);
    }
    if mask.iter().any(|m| m == "i8mm") {
        assert!(!Isa::NeonI8mm.is_supported() && !Isa::NeonBf16.is_supported());
        assert!(!matches!(Isa::best(), Isa::NeonI8mm | Isa::NeonBf16));
    }
    assert!(Isa::Generic.is_supported());
}

#[test]
fn dot_and_axpy_match_reference() {
    for (s, &n) in SIZES.iter().enumerate() {
        let a = random(n, 40 + s as u64);
        let b = random(n + 3, 80 + s as u64); // longer: only the shorter length counts
        let want = (generic().dot)(&a, &b);
        let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
        assert!(
            (want as f64 - exact).abs() <= 1e-6 * (1.0 + exact.abs()),
            "generic dot n={n}"
        );
        let y0 = random(n, 120 + s as u64);
        let mut want_y = y0.clone();
        (generic().axpy)(&mut want_y, -0.75, &a);
        for isa in isas() {
            let k = kernels::for_isa(isa).unwrap();
            let got = (k.dot)(&a, &b);
            let scale: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
            assert!(
                (got - want).abs() <= 1e-6 * (1.0 + scale),
                "dot on {isa}, n={n}: {got} vs {want}"
            );
            let mut y = y0.clone();
            (k.axpy)(&mut y, -0.75, &a);
            assert_close(&y, &want_y, 1e-6, &format!("axpy on {isa}, n={n}"));
            // bf16 operands: the same as f32 on their widened values
            let bits: Vec<u16> = b
                .iter()
                .map(|v| half::bf16::from_f32(*v).to_bits())
                .collect();
            let wide: Vec<f32> = bits
                .iter()
                .map(|&v| half::bf16::from_bits(v).to_f32())
                .collect();
            let want16 = (generic().dot)(&a, &wide);
            assert_eq!(
                (generic().dot_bf16)(&a, &bits),
                want16,
                "generic dot_bf16 n={n}"
            );
            let got16 = (k.dot_bf16)(&a, &bits);
            assert!(
                (got16 - want16).abs() <= 1e-6 * (1.0 + scale),
                "dot_bf16 on {isa}, n={n}: {got16} vs {want16}"
            );
            let (mut y16, mut yw) = (y0.clone(), y0.clone());
            (k.axpy_bf16)(&mut y16, 0.5, &bits[..n]);
            (generic().axpy)(&mut yw, 0.5, &wide[..n]);
            assert_close(&y16, &yw, 1e-6, &format!("axpy_bf16 on {isa}, n={n}"));
        }
    }
}
