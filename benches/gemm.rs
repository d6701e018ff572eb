//! GEMM throughput (GFLOP/s) per ISA path and precision on the shapes of
//! all-MiniLM-L6-v2: tokens M x (K, N) for the fused QKV, output, FFN-up and
//! FFN-down projections. Groups are named `gemm/<M>x<K>x<N>/<isa>` (f32),
//! `gemm_bf16/...` and `gemm_int8/...` (paths with those kernels; int8 operations
//! count as FLOPs). Threads: `RINFER_NUM_THREADS`. `RINFER_BENCH_DTYPES=int8` (a
//! comma list) limits the precisions, `RINFER_BENCH_M=512,4096` the row counts.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rinfer::kernels::{self, Activation, PackedLinear, Precision};
use rinfer::Isa;

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 9) as f32)
                / (1 << 23) as f32
                - 0.5
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let ms: Vec<usize> = std::env::var("RINFER_BENCH_M")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 16, 512, 4096]);
    let dtypes: Vec<Precision> = std::env::var("RINFER_BENCH_DTYPES")
        .ok()
        .map(|s| {
            s.split(',')
                .filter_map(|x| Precision::parse(x).ok())
                .collect()
        })
        .unwrap_or_else(|| Precision::ALL.to_vec());
    let shapes = [(384, 1152), (384, 384), (384, 1536), (1536, 384)];
    for &dtype in &dtypes {
        let prefix = match dtype {
            Precision::F32 => "gemm".to_string(),
            other => format!("gemm_{other}"),
        };
        for &m in &ms {
            for &(k, n) in &shapes {
                let mut group = c.benchmark_group(format!("{prefix}/{m}x{k}x{n}"));
                group.throughput(Throughput::Elements((2 * m * k * n) as u64));
                if m * k * n > 500_000_000 {
                    group.sample_size(10);
                }
                let a = data(m * k, 1);
                let w = data(n * k, 2);
                let mut out = vec![0.0f32; m * n];
                for isa in Isa::ALL {
                    let Ok(kern) = kernels::for_isa(isa) else {
                        eprintln!("SKIPPED: {isa} not supported by this CPU");
                        continue;
                    };
                    if isa == Isa::Generic && m > 16 {
                        continue; // the scalar reference is too slow to be worth timing here
                    }
                    let Ok(packed) = PackedLinear::from_nk(&w, n, k, kern, dtype) else {
                        eprintln!("SKIPPED: {isa} has no {dtype} kernels");
                        continue;
                    };
                    group.bench_function(BenchmarkId::from_parameter(isa.name()), |bch| {
                        bch.iter(|| {
                            packed
                                .gemm(&a, m, None, Activation::None, &mut out)
                                .unwrap()
                        })
                    });
                }
                group.finish();
            }
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
