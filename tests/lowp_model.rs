//! all-MiniLM-L6-v2 (and the small test models) in bf16 and int8: agreement with
//! the f32 golden vectors, a retrieval check, the quality the engine reports at
//! load, its floor, and the f32 fallback on a path without bf16/int8 kernels.
//!
//! Bars (cosine to the f32 vector of the same text): bf16 >= 0.999, int8 >= 0.99.
//! Retrieval (50 queries, top 5 of 500 texts, `tests/data/retrieval.json` from
//! `scripts/make_retrieval_set.py`): bf16 keeps >= 99% of the f32 neighbours,
//! int8 >= 95%.

mod common;

use common::{f32s, golden, minilm_dir, root, skipped, strings};
use ndarray::Array2;
use rinfer::quality::{cosine, PROBE_TEXTS};
use rinfer::{kernels, Embedder, Error, Isa, LoadOptions, Precision};

/// Whether the active path has SIMD bf16/int8 kernels; says so on stderr when not.
/// (The generic path's scalar ones are checked against the references in
/// `tests/lowp.rs`; a whole model on them would take minutes.)
fn lowp_available() -> bool {
    let kern = kernels::active();
    if kern.lowp.is_none() {
        skipped(
            &format!("model-level bf16/int8 on {}", kern.isa),
            "the path has no bf16/int8 kernels (only the fallback test applies)",
        );
    } else if kern.isa == Isa::Generic {
        skipped(
            "model-level bf16/int8 on generic",
            "too slow on the scalar path; its kernels are tested in tests/lowp.rs",
        );
        return false;
    }
    kern.lowp.is_some()
}

fn load(dtype: Precision) -> Embedder {
    Embedder::load_with(
        minilm_dir(),
        &LoadOptions {
            dtype,
            ..Default::default()
        },
    )
    .unwrap()
}

fn min_cosine(got: &Array2<f32>, want: &[f32]) -> f32 {
    got.rows()
        .into_iter()
        .zip(want.chunks_exact(got.ncols()))
        .map(|(g, w)| cosine(g.as_slice().unwrap(), w))
        .fold(1.0, f32::min)
}

#[test]
fn minilm_reduced_precision_stays_close_to_f32() {
    if !lowp_available() {
        return;
    }
    let g = golden(&root().join("tests/golden/minilm.json"));
    let texts = strings(&g["texts"]);
    let want = f32s(&g["embeddings_f32_b64"]);
    for (dtype, bar) in [(Precision::Bf16, 0.999), (Precision::Int8, 0.99)] {
        let model = load(dtype);
        let info = model.info();
        assert_eq!(info.dtype, dtype.name());
        assert_eq!(info.note, None);
        assert!(
            info.gemm_kernel.contains(dtype.name()),
            "{}",
            info.gemm_kernel
        );
        let q = info.quality.expect("quality measured at load");
        assert_eq!(q.probes, PROBE_TEXTS.len());
        assert!(
            q.min_cosine <= q.mean_cosine && q.mean_cosine <= 1.0 + 1e-6,
            "{q:?}"
        );
        assert!(q.min_cosine >= bar, "{dtype}: probe quality {q:?}");
        let got = model.encode(&texts).unwrap();
        let worst = min_cosine(&got, &want);
        eprintln!("{dtype}: min cosine to f32 golden {worst:.6}, probe set {q:?}");
        assert!(worst >= bar, "{dtype}: min cosine {worst} < {bar}");
        // Batch invariance holds in reduced precision too (per-row quantisation).
        let alone = model.encode(&texts[5..6]).unwrap();
        let diff = alone
            .iter()
            .zip(got.row(5))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff <= 1e-6,
            "{dtype}: text 5 alone vs in batch differs by {diff}"
        );
    }
}

/// Indices of the `k` corpus rows most similar to each query row (vectors unit length).
fn top_k(queries: &Array2<f32>, corpus: &Array2<f32>, k: usize) -> Vec<Vec<usize>> {
    let sims = queries.dot(&corpus.t());
    sims.rows()
        .into_iter()
        .map(|row| {
            let mut idx: Vec<usize> = (0..row.len()).collect();
            idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            idx.truncate(k);
            idx
        })
        .collect()
}

#[test]
fn retrieval_keeps_the_f32_neighbours() {
    if !lowp_available() {
        return;
    }
    let set = golden(&root().join("tests/data/retrieval.json"));
    let (queries, corpus) = (strings(&set["queries"]), strings(&set["corpus"]));
    assert_eq!((queries.len(), corpus.len()), (50, 500));
    let f32_model = load(Precision::F32);
    let want = top_k(
        &f32_model.encode(&queries).unwrap(),
        &f32_model.encode(&corpus).unwrap(),
        5,
    );
    drop(f32_model);
    for (dtype, bar) in [(Precision::Bf16, 0.99), (Precision::Int8, 0.95)] {
        let model = load(dtype);
        let got = top_k(
            &model.encode(&queries).unwrap(),
            &model.encode(&corpus).unwrap(),
            5,
        );
        let kept: usize = want
            .iter()
            .zip(&got)
            .map(|(w, g)| w.iter().filter(|i| g.contains(i)).count())
            .sum();
        let frac = kept as f64 / (5 * queries.len()) as f64;
        eprintln!(
            "{dtype}: kept {kept} of {} f32 top-5 neighbours ({frac:.3})",
            5 * queries.len()
        );
        assert!(
            frac >= bar,
            "{dtype}: kept {frac:.3} of the f32 top-5, bar {bar}"
        );
    }
}

#[test]
fn small_models_of_other_shapes_run_in_reduced_precision() {
    if !lowp_available() {
        return;
    }
    for name in [
        "gelu-mean",
        "gelunew-cls",
        "relu-max",
        "bf16-mean",
        "f16-mean",
    ] {
        let dir = root().join("tests/data/models").join(name);
        let g = golden(&dir.join("golden.json"));
        let texts = strings(&g["texts"]);
        let want = f32s(&g["embeddings_f32_b64"]);
        for (dtype, bar) in [(Precision::Bf16, 0.999), (Precision::Int8, 0.98)] {
            let opts = LoadOptions {
                dtype,
                quality_floor: Some(0.0),
                ..Default::default()
            };
            let model = Embedder::load_with(&dir, &opts).unwrap();
            let worst = min_cosine(&model.encode(&texts).unwrap(), &want);
            assert!(worst >= bar, "{name} {dtype}: min cosine {worst} < {bar}");
        }
    }
}

#[test]
fn loading_fails_under_the_quality_floor() {
    if !lowp_available() {
        return;
    }
    let opts = LoadOptions {
        dtype: Precision::Int8,
        quality_floor: Some(0.999_999_9),
        ..Default::default()
    };
    match Embedder::load_with(minilm_dir(), &opts) {
        Err(Error::QualityBelowFloor {
            dtype,
            min_cosine,
            floor,
        }) => {
            assert_eq!(dtype, "int8");
            assert!(min_cosine < floor && min_cosine > 0.9, "{min_cosine}");
        }
        other => panic!("expected QualityBelowFloor, got {other:?}"),
    }
}

/// On a path without bf16/int8 kernels a bf16 request runs f32 and says why; on a
/// path with them (every x86-64 one) it runs as asked.
#[test]
fn fallback_to_f32_is_reported() {
    let model = load(Precision::Bf16);
    let info = model.info();
    assert_eq!(info.requested_dtype, "bf16");
    if kernels::active().isa == Isa::Generic {
        skipped(
            "bf16 fallback on generic",
            "a whole bf16 model on the scalar path is too slow",
        );
    } else if kernels::active().lowp.is_some() {
        assert_eq!(info.dtype, "bf16");
        assert!(info.note.is_none());
    } else {
        assert_eq!(info.dtype, "f32");
        assert!(
            info.note.as_deref().unwrap_or("").contains("running f32"),
            "{info:?}"
        );
        assert!(info.quality.is_none());
        let g = golden(&root().join("tests/golden/minilm.json"));
        let texts = strings(&g["texts"]);
        let got = model.encode(&texts).unwrap();
        assert!(min_cosine(&got, &f32s(&g["embeddings_f32_b64"])) >= 0.99999);
    }
}

/// Several callers at once share the pool, the reused forward buffers and the
/// per-thread activation scratch: every answer equals the one computed alone.
#[test]
fn concurrent_callers_get_the_answers_they_get_alone() {
    if !lowp_available() {
        return;
    }
    let g = golden(&root().join("tests/golden/minilm.json"));
    let texts = strings(&g["texts"]);
    for dtype in [Precision::Bf16, Precision::Int8] {
        let model = load(dtype);
        let batches: Vec<Vec<String>> = (0..6)
            .map(|i| texts[i * 7..i * 7 + 3 + i * 4].to_vec())
            .collect();
        let alone: Vec<Array2<f32>> = batches.iter().map(|b| model.encode(b).unwrap()).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let (model, batches) = (&model, &batches);
                    s.spawn(move || {
                        (0..12)
                            .map(|r| {
                                let i = (t + r) % batches.len();
                                (i, model.encode(&batches[i]).unwrap())
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                for (i, got) in h.join().unwrap() {
                    let diff = got
                        .iter()
                        .zip(alone[i].iter())
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0f32, f32::max);
                    assert!(
                        diff <= 1e-6,
                        "{dtype}: batch {i} differs by {diff} when run concurrently"
                    );
                }
            }
        });
    }
}
