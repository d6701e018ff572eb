//! Times text generation on a decoder folder and prints one JSON object; used by
//! `benches/peers/generation_peers.py` to put rinfer beside llama.cpp and PyTorch
//! in one run.
//!
//! usage: gen_timing MODEL_DIR PROMPT_TOKENS NEW_TOKENS [DTYPE [STREAMS]]
//!   PROMPT_TOKENS  length of the (fixed pseudo-random) prompt
//!   NEW_TOKENS     tokens generated per sequence (end-of-sequence ignored)
//!   DTYPE          f32 (default), bf16 or int8
//!   STREAMS        concurrent sequences of the batched run (default 8), or `serve`:
//!                  load and warm up, print `ready`, then for each line read on stdin
//!                  time one prefill + decode of the prompt and print its JSON line
//!                  (for a bench that interleaves engines' repetitions)
//! Prints prefill tokens/s and time to first token (one sequence), decode tokens/s
//! (one sequence), the aggregate tokens/s of STREAMS sequences decoding together,
//! and the memory bandwidth of a parallel copy measured in the same process.
//! Threads: RINFER_NUM_THREADS.

use std::time::Instant;

use rayon::prelude::*;
use rinfer::{Generator, LoadOptions, Precision, SamplingParams};

fn prompt(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % (vocab as u64 - 1)) as u32 + 1
        })
        .collect()
}

/// GB/s of copying a 512 MiB buffer on the compute pool (a STREAM-like copy:
/// bytes read plus bytes written), best of 5.
fn copy_bandwidth() -> f64 {
    let n = 128 << 20;
    let src = vec![1.0f32; n];
    let mut dst = vec![0.0f32; n];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        rinfer::kernels::threads::install(|| {
            dst.par_chunks_mut(1 << 16)
                .zip(src.par_chunks(1 << 16))
                .for_each(|(d, s)| d.copy_from_slice(s))
        });
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(&dst);
    }
    (2 * n * 4) as f64 / best / 1e9
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(3..=5).contains(&args.len()) {
        eprintln!("usage: gen_timing MODEL_DIR PROMPT_TOKENS NEW_TOKENS [DTYPE [STREAMS]]");
        std::process::exit(2);
    }
    let p_len: usize = args[1].parse().expect("PROMPT_TOKENS");
    let n_new: usize = args[2].parse().expect("NEW_TOKENS");
    let dtype = Precision::parse(args.get(3).map_or("f32", |s| s.as_str())).expect("DTYPE");
    let serve = args.get(4).is_some_and(|s| s == "serve");
    let streams: usize = match args.get(4) {
        Some(s) if !serve => s.parse().expect("STREAMS"),
        _ => 8,
    };
    let load = LoadOptions {
        dtype,
        quality_floor: Some(-1.0),
        ..Default::default()
    };
    let g = Generator::load_with(&args[0], &load).unwrap_or_else(|e| {
        eprintln!("cannot load model: {e}");
        std::process::exit(1)
    });
    if let Some(note) = g.info().note {
        eprintln!("{note}");
        std::process::exit(1);
    }
    let model = g.model();
    let vocab = model.config().vocab_size;
    let params = SamplingParams {
        max_tokens: n_new,
        ignore_eos: true,
        ..Default::default()
    };
    // Warm-up (packs the LM head, touches the weights).
    let mut b = g.batch();
    b.add(
        model,
        prompt(16, vocab, 9),
        SamplingParams {
            max_tokens: 2,
            ..params.clone()
        },
    )
    .unwrap();
    while !b.is_empty() {
        b.step(model, g.tokenizer()).unwrap();
    }
    // One sequence: prefill (time to first token), then decode.
    let single = || {
        let mut b = g.batch();
        b.prefill_chunk = p_len.max(1);
        b.add(model, prompt(p_len, vocab, 1), params.clone())
            .unwrap();
        let t = Instant::now();
        b.step(model, g.tokenizer()).unwrap();
        let ttft = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut decoded = 0;
        while !b.is_empty() {
            decoded += b.step(model, g.tokenizer()).unwrap().len();
        }
        (ttft, decoded, t.elapsed().as_secs_f64())
    };
    if serve {
        println!("ready");
        for line in std::io::stdin().lines() {
            if line.is_err() {
                break;
            }
            let (ttft, decoded, decode_s) = single();
            println!(
                "{{\"ttft_s\":{ttft:.6},\"decoded\":{decoded},\"decode_s\":{decode_s:.6},\"decode_tok_s\":{:.3}}}",
                decoded as f64 / decode_s
            );
        }
        return;
    }
    let (ttft, decoded, decode_s) = single();
    // STREAMS sequences decoding together (prefilled first, decode timed).
    let mut b = g.batch();
    b.prefill_chunk = p_len.max(1);
    for i in 0..streams {
        b.add(model, prompt(p_len, vocab, 100 + i as u64), params.clone())
            .unwrap();
    }
    b.step(model, g.tokenizer()).unwrap();
    let t = Instant::now();
    let mut tokens = streams; // the first step sampled one token each
    while !b.is_empty() {
        tokens += b.step(model, g.tokenizer()).unwrap().len();
    }
    let batch_s = t.elapsed().as_secs_f64();
    println!(
        "{{\"dtype\":\"{dtype}\",\"prompt_tokens\":{p_len},\"new_tokens\":{n_new},\"ttft_s\":{ttft:.6},\
         \"prefill_tok_s\":{:.3},\"decode_tok_s\":{:.3},\"streams\":{streams},\"batch_tok_s\":{:.3},\
         \"copy_gb_s\":{:.3},\"isa\":\"{}\",\"gemm\":\"{}\"}}",
        p_len as f64 / ttft,
        decoded as f64 / decode_s,
        (tokens - streams) as f64 / batch_s,
        copy_bandwidth(),
        g.info().isa,
        g.info().gemm_kernel,
    );
}
