//! Times rinfer's GEMM (f32, bf16 or int8) on one shape and prints one JSON line; used by
//! `benches/peers/gemm_peers.py` to put rinfer beside numpy and PyTorch in one run.
//!
//! usage: gemm_timing M K N THREADS [REPS] [DTYPE]
//!   M, K, N   C[M x N] = A[M x K] · B[K x N]
//!   THREADS   size of the rayon pool the GEMM runs on
//!   REPS      timed repetitions after 3 warm-up runs (default 20); the median is reported
//!   DTYPE     f32 (default), bf16 or int8

use std::time::Instant;

use rinfer::kernels::{self, Activation, PackedLinear, Precision};

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<usize> = raw.iter().take(5).map(|a| a.parse().unwrap_or(0)).collect();
    let dtype = match raw.get(5).map(|d| Precision::parse(d)).transpose() {
        Ok(d) => d.unwrap_or_default(),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if args.len() < 4 || args.contains(&0) {
        eprintln!(
            "usage: gemm_timing M K N THREADS [REPS] [DTYPE]  (positive integers; f32|bf16|int8)"
        );
        std::process::exit(2);
    }
    let (m, k, n, threads) = (args[0], args[1], args[2], args[3]);
    let reps = args.get(4).copied().unwrap_or(20).max(1);
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i % 97) as f32 - 48.0) / 97.0)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| ((i % 89) as f32 - 44.0) / 89.0)
        .collect();
    let kern = kernels::active();
    let mut bt = vec![0.0f32; k * n];
    for (i, v) in b.iter().enumerate() {
        bt[(i % n) * k + i / n] = *v;
    }
    let packed = match PackedLinear::from_nk(&bt, n, k, kern, dtype) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let mut c = vec![0.0f32; m * n];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let mut times = Vec::with_capacity(reps);
    pool.install(|| {
        for i in 0..reps + 3 {
            let t = Instant::now();
            packed
                .gemm(&a, m, None, Activation::None, &mut c)
                .expect("sizes agree");
            if i >= 3 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
    });
    times.sort_by(|x, y| x.total_cmp(y));
    let median = times[times.len() / 2];
    let gflops = 2.0 * (m * k * n) as f64 / median / 1e9;
    println!(
        "{{\"isa\":\"{}\",\"dtype\":\"{dtype}\",\"m\":{m},\"k\":{k},\"n\":{n},\"threads\":{threads},\"median_s\":{median:.6e},\"gflops\":{gflops:.2}}}",
        kern.isa
    );
}
