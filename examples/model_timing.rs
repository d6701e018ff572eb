//! Times an embedding model on prepared token-id cases and prints one JSON line per
//! case; used by `benches/peers/model_peers.py` to put rinfer beside PyTorch and
//! ONNX Runtime on the same ids in one run.
//!
//! usage: model_timing MODEL_DIR CASES_JSON REPS [DTYPE [VECTORS_OUT]]
//!   MODEL_DIR    sentence-transformers folder
//!   CASES_JSON   {"cases": [{"name": .., "ids": [[..], ..], "reps": optional}], "texts": [..]}
//!   REPS         timed repetitions per case (median reported), after one warm-up
//!   DTYPE        f32 (default), bf16 or int8
//!   VECTORS_OUT  file to write the vectors of "texts" to (little-endian f32, row-major)
//! Threads: RINFER_NUM_THREADS. Stderr names the GEMM kernel and, for bf16/int8, the
//! load-time quality probe. Besides the cases it times tokenization alone and
//! end to end (strings in, vectors out) on "texts".

use std::time::Instant;

use rinfer::{Embedder, EncodeOptions, LoadOptions, Precision};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(3..=5).contains(&args.len()) {
        eprintln!("usage: model_timing MODEL_DIR CASES_JSON REPS [DTYPE [VECTORS_OUT]]");
        std::process::exit(2);
    }
    let reps: usize = args[2].parse().unwrap_or(10).max(1);
    let dtype = Precision::parse(args.get(3).map_or("f32", |s| s.as_str())).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let load = LoadOptions {
        dtype,
        quality_floor: Some(-1.0),
        ..Default::default()
    };
    let model = Embedder::load_with(&args[0], &load).unwrap_or_else(|e| {
        eprintln!("cannot load model: {e}");
        std::process::exit(1)
    });
    let info = model.info();
    if let Some(note) = info.note {
        eprintln!("{note}");
        std::process::exit(1);
    }
    // What ran, on stderr (stdout is the JSON lines): kernel and, for bf16/int8,
    // the load-time probe agreement with f32.
    match info.quality {
        Some(q) => eprintln!(
            "{} ({}): min cosine to f32 {:.6}, mean {:.6} over {} probes",
            info.gemm_kernel, info.dtype, q.min_cosine, q.mean_cosine, q.probes
        ),
        None => eprintln!("{} ({})", info.gemm_kernel, info.dtype),
    }
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&args[1]).expect("cases file"))
            .expect("JSON");
    let opts = EncodeOptions {
        batch_size: 1 << 20,
        ..Default::default()
    };
    for case in spec["cases"].as_array().expect("cases") {
        let ids: Vec<Vec<u32>> = serde_json::from_value(case["ids"].clone()).expect("ids");
        let case_reps = case["reps"].as_u64().map_or(reps, |r| r.max(1) as usize);
        let secs = time(case_reps, || {
            model.encode_ids(&ids, &opts).expect("encode");
        });
        println!(
            "{{\"case\":{},\"seconds\":{secs:.6e}}}",
            serde_json::to_string(&case["name"]).unwrap()
        );
    }
    let texts: Vec<String> = serde_json::from_value(spec["texts"].clone()).expect("texts");
    let tok = time(reps, || {
        model.tokenizer().encode(&texts, true).expect("tokenize");
    });
    println!("{{\"case\":\"tokenize\",\"seconds\":{tok:.6e}}}");
    let e2e = time(reps, || {
        model.encode_with(&texts, &opts).expect("encode");
    });
    println!("{{\"case\":\"end_to_end\",\"seconds\":{e2e:.6e}}}");
    if let Some(path) = args.get(4) {
        let vectors = model.encode_with(&texts, &opts).expect("encode");
        let bytes: Vec<u8> = vectors.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, bytes).expect("write vectors");
    }
}
