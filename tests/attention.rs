//! Ragged attention on every ISA path against a naive f64 reference, and the
//! strided GEMM it is built on.

mod common;

use common::{assert_close, isas, random};
use rinfer::kernels::attention::{attention, attention_biased};
use rinfer::kernels::{self, gemm::gemm_serial_strided, PackedB};

/// softmax(q kᵀ / sqrt(dh)) v per sequence and head, in f64.
fn reference(qkv: &[f32], offsets: &[usize], heads: usize, dh: usize) -> Vec<f32> {
    reference_biased(qkv, offsets, heads, dh, &|_, _| 0.0)
}

/// softmax(q kᵀ / sqrt(dh) + bias(head, j - i)) v, in f64.
fn reference_biased(
    qkv: &[f32],
    offsets: &[usize],
    heads: usize,
    dh: usize,
    bias: &dyn Fn(usize, isize) -> f32,
) -> Vec<f32> {
    let h = heads * dh;
    let t = *offsets.last().unwrap();
    let mut out = vec![0.0f32; t * h];
    for w in offsets.windows(2) {
        for hd in 0..heads {
            for i in w[0]..w[1] {
                let at = |tok: usize, which: usize, d: usize| {
                    qkv[tok * 3 * h + which * h + hd * dh + d] as f64
                };
                let s: Vec<f64> = (w[0]..w[1])
                    .map(|j| {
                        (0..dh).map(|d| at(i, 0, d) * at(j, 1, d)).sum::<f64>() / (dh as f64).sqrt()
                            + bias(hd, j as isize - i as isize) as f64
                    })
                    .collect();
                let mx = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..dh {
                    let v: f64 = (w[0]..w[1]).zip(&e).map(|(j, p)| p / z * at(j, 2, d)).sum();
                    out[i * h + hd * dh + d] = v as f32;
                }
            }
        }
    }
    out
}

#[test]
fn ragged_attention_matches_reference() {
    for (heads, dh) in [(1, 1), (2, 7), (3, 16), (12, 32), (2, 33)] {
        let offsets = [0usize, 1, 1, 14, 17, 50, 51];
        let t = *offsets.last().unwrap();
        let qkv = random(t * 3 * heads * dh, (heads * 100 + dh) as u64);
        let want = reference(&qkv, &offsets, heads, dh);
        for isa in isas() {
            let kern = kernels::for_isa(isa).unwrap();
            for threads in [1, 3] {
                let mut ctx = vec![f32::NAN; t * heads * dh];
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| attention(kern, &qkv, &offsets, heads, dh, &mut ctx))
                    .unwrap();
                assert_close(
                    &ctx,
                    &want,
                    1e-5,
                    &format!("attention {isa} heads={heads} dh={dh} t={threads}"),
                );
            }
        }
    }
}

/// A relative bias (per head and distance, with -inf past a window as local
/// attention uses) on every path, one and several threads, against the reference.
#[test]
fn relative_bias_matches_reference() {
    let bias = |hd: usize, d: isize| -> f32 {
        if d.abs() > 9 {
            f32::NEG_INFINITY
        } else {
            0.3 * hd as f32 - 0.05 * d as f32 + if d > 0 { 0.2 } else { 0.0 }
        }
    };
    for (heads, dh) in [(1, 4), (3, 16), (2, 33)] {
        let offsets = [0usize, 1, 14, 40, 41, 80];
        let t = *offsets.last().unwrap();
        let qkv = random(t * 3 * heads * dh, (heads * 7 + dh) as u64);
        let want = reference_biased(&qkv, &offsets, heads, dh, &bias);
        for isa in isas() {
            let kern = kernels::for_isa(isa).unwrap();
            for threads in [1, 3] {
                let mut ctx = vec![f32::NAN; t * heads * dh];
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| {
                        attention_biased(
                            kern,
                            &qkv,
                            &offsets,
                            heads,
                            dh,
                            Some(&bias),
                            None,
                            &mut ctx,
                        )
                    })
                    .unwrap();
                assert_close(
                    &ctx,
                    &want,
                    1e-5,
                    &format!("biased {isa} h={heads} dh={dh}"),
                );
            }
        }
    }
}

/// A local window on long sequences runs in blocks of query rows that read only
/// the keys in reach: same result as the full computation with -inf outside.
#[test]
fn windowed_attention_matches_reference_on_long_sequences() {
    let window = 21usize;
    let masked = |_: usize, d: isize| -> f32 {
        if d.unsigned_abs() > window {
            f32::NEG_INFINITY
        } else {
            0.0
        }
    };
    let tilt = |hd: usize, d: isize| -> f32 { 0.01 * (hd as f32 + 1.0) * d as f32 };
    let both = |hd: usize, d: isize| masked(hd, d) + tilt(hd, d);
    let (heads, dh) = (2, 16);
    let offsets = [0usize, 300, 301, 420, 530];
    let t = *offsets.last().unwrap();
    let qkv = random(t * 3 * heads * dh, 77);
    for (with_bias, reference_bias) in [
        (false, &masked as &dyn Fn(usize, isize) -> f32),
        (true, &both),
    ] {
        let want = reference_biased(&qkv, &offsets, heads, dh, reference_bias);
        for isa in isas() {
            let kern = kernels::for_isa(isa).unwrap();
            for threads in [1, 3] {
                let mut ctx = vec![f32::NAN; t * heads * dh];
                let bias = with_bias.then_some(&tilt as &(dyn Fn(usize, isize) -> f32 + Sync));
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| {
                        attention_biased(
                            kern,
                            &qkv,
                            &offsets,
                            heads,
                            dh,
                            bias,
                            Some(window),
                            &mut ctx,
                        )
                    })
                    .unwrap();
                assert_close(
                    &ctx,
                    &want,
                    1e-5,
                    &format!("windowed {isa} bias={with_bias}"),
                );
            }
        }
    }
}

#[test]
fn attention_checks_sizes() {
    let kern = kernels::active();
    let mut ctx = vec![0.0; 8];
    assert!(attention(kern, &[0.0; 23], &[0, 2], 2, 2, &mut ctx).is_err());
    assert!(attention(kern, &[0.0; 24], &[0, 3, 2], 2, 2, &mut ctx).is_err());
}

#[test]
fn strided_gemm_reads_and_writes_views() {
    let (m, k, n, lda, ldc) = (7, 5, 9, 11, 13);
    let a = random(m * lda, 1);
    let b = random(k * n, 2);
    let dense: Vec<f32> = (0..m)
        .flat_map(|i| a[i * lda..i * lda + k].to_vec())
        .collect();
    let want = kernels::gemm::reference(&dense, &b, m, k, n, None);
    for isa in isas() {
        let packed = PackedB::from_kn(&b, k, n, kernels::for_isa(isa).unwrap()).unwrap();
        let mut c = vec![-7.0f32; m * ldc];
        gemm_serial_strided(&a, lda, m, &packed, &mut c, ldc).unwrap();
        for i in 0..m {
            assert_close(
                &c[i * ldc..i * ldc + n],
                &want[i * n..(i + 1) * n],
                1e-5,
                &format!("{isa} row {i}"),
            );
            assert!(
                c[i * ldc + n..(i * ldc + ldc).min(c.len())]
                    .iter()
                    .all(|&v| v == -7.0),
                "{isa}: wrote outside the view"
            );
        }
        assert!(
            gemm_serial_strided(&a[..lda * (m - 1) + k - 1], lda, m, &packed, &mut c, ldc).is_err()
        );
    }
}
