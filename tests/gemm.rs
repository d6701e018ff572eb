//! GEMM on every ISA path this CPU has, against the f64 triple-loop reference,
//! over awkward shapes, with one and several threads, with bias and activations.

mod common;

use common::{assert_close, isas, random};
use proptest::prelude::*;
use rinfer::kernels::{self, gemm, Activation, PackedB};

/// Runs `gemm` for one ISA on a pool of `threads` threads.
fn run(
    isa: rinfer::Isa,
    threads: usize,
    a: &[f32],
    b_kn: &[f32],
    (m, k, n): (usize, usize, usize),
    bias: Option<&[f32]>,
    act: Activation,
) -> Vec<f32> {
    let kern = kernels::for_isa(isa).unwrap();
    let packed = PackedB::from_kn(b_kn, k, n, kern).unwrap();
    let mut c = vec![f32::NAN; m * n];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| gemm(a, m, &packed, bias, act, &mut c))
        .unwrap();
    c
}

fn check_shape(m: usize, k: usize, n: usize, threads: usize, seed: u64) {
    let a = random(m * k, seed);
    let b = random(k * n, seed + 1);
    let bias = random(n, seed + 2);
    let want = kernels::gemm::reference(&a, &b, m, k, n, Some(&bias));
    // Tolerance: f32 accumulation over k terms of size ~1.
    let tol = 1e-5 * (k as f32).sqrt().max(1.0) * 4.0;
    for isa in isas() {
        let got = run(
            isa,
            threads,
            &a,
            &b,
            (m, k, n),
            Some(&bias),
            Activation::None,
        );
        assert_close(
            &got,
            &want,
            tol,
            &format!("gemm {isa} {m}x{k}x{n} t={threads}"),
        );
    }
}

#[test]
fn awkward_shapes_one_and_two_threads() {
    let dims = [1usize, 2, 5, 7, 11, 12, 13, 16, 17, 31, 32, 33, 47, 64, 97];
    let mut seed = 0;
    for &m in &[1usize, 2, 5, 6, 7, 11, 12, 13, 25, 37] {
        for &k in &[1usize, 3, 16, 17, 33, 97] {
            for &n in &dims {
                seed += 3;
                check_shape(m, k, n, 1, seed);
            }
        }
    }
    for &(m, k, n) in &[
        (1, 384, 1152),
        (16, 384, 384),
        (100, 129, 67),
        (61, 1041, 45),
    ] {
        for threads in [1, 2, 3] {
            seed += 3;
            check_shape(m, k, n, threads, seed);
        }
    }
}

#[test]
fn model_shapes_with_k_blocking() {
    // K = 3001 takes several K passes (slices of at most 1536); m = 130 splits rows
    // across threads.
    for threads in [1, 2] {
        check_shape(37, 3001, 70, threads, 400 + threads as u64);
    }
    for threads in [1, 2, 4] {
        check_shape(130, 1536, 384, threads, 100 + threads as u64);
        check_shape(33, 384, 1536, threads, 200 + threads as u64);
    }
    check_shape(4, 1024 + 17, 1024 + 17, 2, 300);
    // One row (decoding a token) sweeps each panel over the whole of K at once.
    for threads in [1, 2] {
        check_shape(1, 3001, 70, threads, 500 + threads as u64);
        check_shape(1, 4864, 896 + 5, threads, 600 + threads as u64);
    }
}

#[test]
fn empty_dimensions() {
    for isa in isas() {
        // k = 0: C = bias (also with enough rows to split over threads).
        let bias = [1.0f32, -2.0, 3.0];
        let got = run(isa, 2, &[], &[], (2, 0, 3), Some(&bias), Activation::None);
        assert_eq!(got, [1.0, -2.0, 3.0, 1.0, -2.0, 3.0], "{isa}");
        let got = run(isa, 2, &[], &[], (13, 0, 1), None, Activation::None);
        assert_eq!(got, [0.0; 13], "{isa}");
        // m = 0 and n = 0: nothing to do, no error.
        assert!(run(
            isa,
            2,
            &[],
            &random(12, 1),
            (0, 4, 3),
            None,
            Activation::None
        )
        .is_empty());
        assert!(run(
            isa,
            2,
            &random(8, 1),
            &[],
            (2, 4, 0),
            None,
            Activation::None
        )
        .is_empty());
    }
}

#[test]
fn fused_activations_match_separate_ones() {
    let (m, k, n) = (19, 40, 70);
    let a = random(m * k, 7);
    let b = random(k * n, 8);
    let bias = random(n, 9);
    let generic = kernels::for_isa(rinfer::Isa::Generic).unwrap();
    for (act, f) in [
        (Activation::GeluErf, generic.gelu_erf),
        (Activation::GeluTanh, generic.gelu_tanh),
        (Activation::Relu, generic.relu),
    ] {
        let mut want = kernels::gemm::reference(&a, &b, m, k, n, Some(&bias));
        f(&mut want);
        for isa in isas() {
            let got = run(isa, 2, &a, &b, (m, k, n), Some(&bias), act);
            assert_close(&got, &want, 1e-4, &format!("{act:?} on {isa}"));
        }
    }
}

#[test]
fn pytorch_linear_layout_is_the_transpose() {
    let (m, k, n) = (5, 9, 35);
    let a = random(m * k, 11);
    let w = random(n * k, 12); // [n, k]
    let mut b = vec![0.0; k * n];
    for i in 0..n {
        for j in 0..k {
            b[j * n + i] = w[i * k + j];
        }
    }
    let want = kernels::gemm::reference(&a, &b, m, k, n, None);
    for isa in isas() {
        let packed = PackedB::from_nk(&w, n, k, kernels::for_isa(isa).unwrap()).unwrap();
        assert_eq!((packed.k(), packed.n(), packed.isa()), (k, n, isa));
        let mut c = vec![0.0; m * n];
        gemm(&a, m, &packed, None, Activation::None, &mut c).unwrap();
        assert_close(&c, &want, 1e-4, &format!("from_nk {isa}"));
    }
}

#[test]
fn wrong_sizes_are_typed_errors() {
    let kern = kernels::active();
    assert!(matches!(
        PackedB::from_kn(&[1.0; 5], 2, 3, kern),
        Err(rinfer::Error::InvalidInput(_))
    ));
    let packed = PackedB::from_kn(&[1.0; 6], 2, 3, kern).unwrap();
    let mut c = vec![0.0; 6];
    let err = gemm(&[1.0; 3], 2, &packed, None, Activation::None, &mut c).unwrap_err();
    assert!(
        err.to_string().contains("A has 3 elements, expected 2 x 2"),
        "{err}"
    );
    let err = gemm(
        &[1.0; 4],
        2,
        &packed,
        Some(&[0.0; 2]),
        Activation::None,
        &mut c,
    )
    .unwrap_err();
    assert!(err.to_string().contains("bias"), "{err}");
    let err = gemm(&[1.0; 4], 2, &packed, None, Activation::None, &mut c[..5]).unwrap_err();
    assert!(err.to_string().contains("C has 5"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_shapes(m in 1usize..40, k in 0usize..80, n in 1usize..80, threads in 1usize..4, seed in any::<u64>()) {
        check_shape(m, k, n, threads, seed);
    }
}
