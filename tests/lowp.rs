//! bf16 and int8 GEMM on every path that has them, against f64 references, over
//! awkward shapes, one and several threads, with bias and activations.
//!
//! Tolerances follow from the number formats:
//! - bf16 keeps 8 significant bits: rounding moves each operand by at most 2^-8
//!   relative, so a product by at most ~2^-7; the sum's error is bounded by
//!   `2^-7 * sum_k |a_k * b_k|` plus f32 accumulation. Against a reference built
//!   from the bf16-rounded operands only f32 accumulation error remains.
//! - int8: a weight is off by at most half its column step `sb / 2`, an activation by
//!   half its row step `sa / 2`, so the sum is off by at most
//!   `sum_k (|a_k| sb + |b_k| sa) / 2 + k sa sb / 4`.

mod common;

use common::{assert_close, isas, random, skipped};
use rinfer::kernels::{
    self, gemm_bf16, gemm_int8, Activation, PackedBf16, PackedInt8, PackedLinear, Precision,
};
use rinfer::{Error, Isa};

fn lowp_isas() -> Vec<Isa> {
    isas()
        .into_iter()
        .filter(|&isa| {
            let has = kernels::for_isa(isa).unwrap().lowp.is_some();
            if !has {
                skipped(&format!("bf16/int8 kernels on {isa}"), "the path has none");
            }
            has
        })
        .collect()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn bf16_round(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&v| half::bf16::from_f32(v).to_f32())
        .collect()
}

/// f64 `A·B + bias` and, per element, `sum_k |a_k b_k|`.
fn reference(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    bias: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let mut c = vec![0.0f32; m * n];
    let mut mag = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut t) = (bias[j] as f64, 0.0f64);
            for p in 0..k {
                let prod = a[i * k + p] as f64 * b[p * n + j] as f64;
                s += prod;
                t += prod.abs();
            }
            c[i * n + j] = s as f32;
            mag[i * n + j] = t as f32;
        }
    }
    (c, mag)
}

fn assert_within(got: &[f32], want: &[f32], bound: &[f32], what: &str) {
    for (i, ((g, w), b)) in got.iter().zip(want).zip(bound).enumerate() {
        assert!(
            (g - w).abs() <= *b,
            "{what}: element {i}: got {g}, want {w}, bound {b}"
        );
    }
}

// M around the tile heights (2, 4, 8, 12 rows), K around the K-steps (2 bf16, 4
// int8; 4 bf16 and 8 int8 per `BFMMLA`/`USMMLA` step): below, odd, one past.
const DIMS_M: [usize; 13] = [1, 2, 5, 7, 8, 9, 11, 12, 13, 16, 17, 25, 40];
const DIMS_K: [usize; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 31, 64, 97, 384];
const DIMS_N: [usize; 8] = [1, 15, 16, 17, 31, 32, 33, 65];

/// Every (K, N) pair of the lists, with M cycling through its list: `(case, m, k, n)`.
fn shapes() -> impl Iterator<Item = (u64, usize, usize, usize)> {
    DIMS_M
        .iter()
        .cycle()
        .zip(
            DIMS_K
                .iter()
                .flat_map(|k| DIMS_N.iter().map(move |n| (k, n))),
        )
        .enumerate()
        .map(|(s, (&m, (&k, &n)))| (s as u64, m, k, n))
}

#[test]
fn bf16_matches_references_on_awkward_shapes() {
    for isa in lowp_isas() {
        let kern = kernels::for_isa(isa).unwrap();
        for (s, m, k, n) in shapes() {
            let seed = s * 7 + 1;
            let (a, b, bias) = (
                random(m * k, seed),
                random(k * n, seed + 1),
                random(n, seed + 2),
            );
            let packed = PackedBf16::from_kn(&b, k, n, kern).unwrap();
            for threads in [1, 3] {
                let mut c = vec![f32::NAN; m * n];
                pool(threads)
                    .install(|| gemm_bf16(&a, m, &packed, Some(&bias), Activation::None, &mut c))
                    .unwrap();
                let what = format!("bf16 {isa} {m}x{k}x{n} t={threads}");
                // Exact operands: only f32 accumulation error remains.
                let (want, mag) = reference(&bf16_round(&a), &bf16_round(&b), m, k, n, &bias);
                let tight: Vec<f32> = mag
                    .iter()
                    .map(|t| 1e-6 * (k as f32 + 1.0) * t + 1e-6)
                    .collect();
                assert_within(&c, &want, &tight, &format!("{what} (rounded operands)"));
                // The f32 operands: bf16's own rounding on top.
                let (want, mag) = reference(&a, &b, m, k, n, &bias);
                let loose: Vec<f32> = mag
                    .iter()
                    .map(|t| 2f32.powi(-7) * t * 1.01 + 1e-6)
                    .collect();
                assert_within(&c, &want, &loose, &what);
            }
        }
    }
}

#[test]
fn int8_matches_references_on_awkward_shapes() {
    for isa in lowp_isas() {
        let kern = kernels::for_isa(isa).unwrap();
        for (s, m, k, n) in shapes() {
            let seed = s * 11 + 5;
            // Activations with an offset (like post-GELU values) exercise the zero point.
            let a: Vec<f32> = random(m * k, seed).iter().map(|v| v * 2.0 + 0.5).collect();
            let (b, bias) = (random(k * n, seed + 1), random(n, seed + 2));
            let packed = PackedInt8::from_kn(&b, k, n, kern).unwrap();
            let (want, _) = reference(&a, &b, m, k, n, &bias);
            // The error bound of the formats (see the top of this file).
            let mut bound = vec![0.0f32; m * n];
            for i in 0..m {
                let row = &a[i * k..(i + 1) * k];
                let (lo, hi) = row
                    .iter()
                    .fold((0.0f32, 0.0f32), |(l, h), &v| (l.min(v), h.max(v)));
                let sa = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
                for j in 0..n {
                    let amax = (0..k).map(|p| b[p * n + j].abs()).fold(0.0f32, f32::max);
                    let sb = if amax > 0.0 { amax / 127.0 } else { 1.0 };
                    let (mut sum_a, mut sum_b) = (0.0f32, 0.0f32);
                    for p in 0..k {
                        sum_a += row[p].abs();
                        sum_b += b[p * n + j].abs();
                    }
                    bound[i * n + j] =
                        ((sum_a * sb + sum_b * sa) / 2.0 + k as f32 * sa * sb / 4.0) * 1.01 + 1e-5;
                }
            }
            for threads in [1, 3] {
                let mut c = vec![f32::NAN; m * n];
                pool(threads)
                    .install(|| gemm_int8(&a, m, &packed, Some(&bias), Activation::None, &mut c))
                    .unwrap();
                assert_within(
                    &c,
                    &want,
                    &bound,
                    &format!("int8 {isa} {m}x{k}x{n} t={threads}"),
                );
            }
        }
    }
}

/// Every SIMD path against the generic one on the same data: int8 sums are exact
/// integers and the rescale is the same formula, so the results agree to the last
/// bit or so; bf16 differs only in f32 accumulation order.
#[test]
fn simd_paths_agree_with_generic() {
    let generic = kernels::for_isa(Isa::Generic).unwrap();
    let (m, k, n) = (37, 389, 71);
    let a: Vec<f32> = random(m * k, 3).iter().map(|v| v * 3.0 - 0.4).collect();
    let (b, bias) = (random(k * n, 4), random(n, 5));
    let run = |kern, precision| {
        let packed = PackedLinear::from_nk(&transpose(&b, k, n), n, k, kern, precision).unwrap();
        let mut c = vec![f32::NAN; m * n];
        packed
            .gemm(&a, m, Some(&bias), Activation::GeluErf, &mut c)
            .unwrap();
        c
    };
    for isa in lowp_isas() {
        let kern = kernels::for_isa(isa).unwrap();
        assert_close(
            &run(kern, Precision::Int8),
            &run(generic, Precision::Int8),
            1e-6,
            &format!("int8 {isa} vs generic"),
        );
        assert_close(
            &run(kern, Precision::Bf16),
            &run(generic, Precision::Bf16),
            2e-5,
            &format!("bf16 {isa} vs generic"),
        );
    }
}

/// Every tile height (and a second tile), K from 1 to past two 8-byte steps, N
/// inside, at and past one panel, on every path against generic: int8 to the bit
/// (exact i32 sums, one rescale formula, whatever the instruction and panel
/// layout), bf16 to f32 accumulation order.
#[test]
fn tile_edges_agree_with_generic() {
    let generic = kernels::for_isa(Isa::Generic).unwrap();
    for isa in lowp_isas() {
        let kern = kernels::for_isa(isa).unwrap();
        let mr = kern.lowp.unwrap().mr;
        for k in [1usize, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17, 20] {
            for n in [1usize, 3, 31, 33] {
                let b = random(k * n, (k * 100 + n) as u64);
                let packed = |kern, p| PackedLinear::from_nk(&transpose(&b, k, n), n, k, kern, p);
                let (i8_simd, i8_ref) = (
                    packed(kern, Precision::Int8).unwrap(),
                    packed(generic, Precision::Int8).unwrap(),
                );
                let (bf_simd, bf_ref) = (
                    packed(kern, Precision::Bf16).unwrap(),
                    packed(generic, Precision::Bf16).unwrap(),
                );
                for m in 1..=2 * mr + 1 {
                    let a: Vec<f32> = random(m * k, (m * 7 + k) as u64)
                        .iter()
                        .map(|v| v * 2.0 + 0.3)
                        .collect();
                    let run = |w: &PackedLinear| {
                        let mut c = vec![f32::NAN; m * n];
                        w.gemm(&a, m, None, Activation::None, &mut c).unwrap();
                        c
                    };
                    let (got, want) = (run(&i8_simd), run(&i8_ref));
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(g, w)| g.to_bits() == w.to_bits());
                    assert!(same, "int8 {isa} {m}x{k}x{n}: {got:?} vs {want:?}");
                    let what = format!("bf16 {isa} {m}x{k}x{n}");
                    assert_close(&run(&bf_simd), &run(&bf_ref), 1e-6, &what);
                }
            }
        }
    }
}

fn transpose(b: &[f32], k: usize, n: usize) -> Vec<f32> {
    let mut t = vec![0.0; k * n];
    for p in 0..k {
        for j in 0..n {
            t[j * k + p] = b[p * n + j];
        }
    }
    t
}

#[test]
fn activations_and_bias_run_in_the_epilogue() {
    let (m, k, n) = (9, 40, 50);
    let a = random(m * k, 8);
    let (b, bias) = (random(k * n, 9), random(n, 10));
    for isa in lowp_isas() {
        let kern = kernels::for_isa(isa).unwrap();
        for precision in [Precision::Bf16, Precision::Int8] {
            let packed =
                PackedLinear::from_nk(&transpose(&b, k, n), n, k, kern, precision).unwrap();
            let mut plain = vec![0.0; m * n];
            packed
                .gemm(&a, m, Some(&bias), Activation::None, &mut plain)
                .unwrap();
            for (act, f) in [
                (Activation::Relu, (|x: f32| x.max(0.0)) as fn(f32) -> f32),
                (Activation::GeluErf, |x: f32| {
                    0.5 * x * (1.0 + libm::erff(x / 2f32.sqrt()))
                }),
            ] {
                let mut c = vec![0.0; m * n];
                packed.gemm(&a, m, Some(&bias), act, &mut c).unwrap();
                let want: Vec<f32> = plain.iter().map(|&x| f(x)).collect();
                assert_close(&c, &want, 1e-5, &format!("{precision} {isa} {act:?}"));
            }
        }
    }
}

#[test]
fn paths_without_lowp_kernels_refuse_clearly() {
    for isa in isas() {
        let kern = kernels::for_isa(isa).unwrap();
        if kern.lowp.is_some() {
            continue;
        }
        let err = PackedBf16::from_nk(&[1.0; 4], 2, 2, kern).unwrap_err();
        assert!(
            matches!(err, Error::Unsupported(ref m) if m.contains(isa.name())),
            "{err}"
        );
        let err = PackedInt8::from_nk(&[1.0; 4], 2, 2, kern).unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err}");
    }
}

#[test]
fn shapes_are_checked() {
    let kern = kernels::for_isa(Isa::Generic).unwrap();
    let packed = PackedInt8::from_nk(&[1.0; 6], 2, 3, kern).unwrap();
    let mut c = vec![0.0; 4];
    let err = gemm_int8(&[1.0; 5], 2, &packed, None, Activation::None, &mut c).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    let err = gemm_int8(
        &[1.0; 6],
        2,
        &packed,
        Some(&[0.0; 3]),
        Activation::None,
        &mut c,
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(PackedBf16::from_nk(&[1.0; 5], 2, 3, kern).is_err());
}

#[test]
fn int8_weights_dequantize_within_half_a_step() {
    let kern = kernels::for_isa(Isa::Generic).unwrap();
    let (k, n) = (13, 35);
    let b = random(k * n, 21);
    let packed = PackedInt8::from_kn(&b, k, n, kern).unwrap();
    let deq = packed.dequantized();
    for j in 0..n {
        let amax = (0..k).map(|p| b[p * n + j].abs()).fold(0.0f32, f32::max);
        let step = amax / 127.0;
        for p in 0..k {
            let err = (deq[p * n + j] - b[p * n + j]).abs();
            assert!(
                err <= step * 0.5 * 1.0001,
                "w[{p}][{j}] off by {err}, step {step}"
            );
        }
    }
}

#[test]
fn precision_names_parse() {
    for p in Precision::ALL {
        assert_eq!(Precision::parse(p.name()).unwrap(), p);
    }
    assert_eq!(Precision::parse(" BF16 ").unwrap(), Precision::Bf16);
    assert!(matches!(
        Precision::parse("fp8"),
        Err(Error::InvalidInput(_))
    ));
}
