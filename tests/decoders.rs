//! Decoder families against transformers: tiny random-init Qwen3, Qwen2 (YaRN),
//! Llama 3.x (llama3 RoPE scaling, sharded checkpoint), Llama with linear and
//! dynamic scaling, Mistral (a sliding window shorter than the inputs), Gemma 3
//! (local/global layers) and EmbeddingGemma (bidirectional), a bf16 Qwen3, the
//! sentence-transformers embedders (last-token and mean pooling, prompts, Dense,
//! Matryoshka) and the Qwen3 rerankers. Goldens come from
//! `scripts/make_golden_decoders.py`; bars: token ids identical, last hidden states
//! cosine >= 0.99999 and max |diff| <= 1e-4 per token on ragged batches, logits and
//! reranker scores within 1e-4.

mod common;

use std::path::PathBuf;

use common::{assert_close, assert_parity, f32s, golden, id_lists, root, strings};
use rinfer::models::{Model, TokenBatch};
use rinfer::quality::cosine;
use rinfer::{Embedder, EncodeOptions, Reranker};
use serde_json::Value;

fn data() -> PathBuf {
    root().join("tests/data/decoders")
}

/// Every folder with a golden holding hidden states.
fn model_dirs() -> Vec<(String, PathBuf, Value)> {
    let mut dirs: Vec<_> = std::fs::read_dir(data())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("golden.json").is_file())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|d| {
            let g = golden(&d.join("golden.json"));
            (d.file_name().unwrap().to_string_lossy().into_owned(), d, g)
        })
        .filter(|(_, _, g)| g.get("last_hidden_state").is_some())
        .collect()
}

/// Per token: cosine >= 0.99999 and max |diff| <= 1e-4.
fn assert_rows(got: &[f32], want: &[f32], h: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: size");
    for (t, (g, w)) in got.chunks_exact(h).zip(want.chunks_exact(h)).enumerate() {
        let c = cosine(g, w);
        let diff = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            c >= 0.99999 && diff <= 1e-4,
            "{what}, token {t}: cosine {c}, max |diff| {diff}"
        );
    }
}

#[test]
fn families_load_and_are_covered() {
    let names: Vec<String> = model_dirs().into_iter().map(|(n, _, _)| n).collect();
    for want in ["qwen3", "qwen2", "llama3", "mistral", "gemma3"] {
        assert!(
            names.iter().any(|n| n == want),
            "golden folder `{want}` missing under {} (have {names:?})",
            data().display()
        );
    }
}

#[test]
fn hidden_states_match_transformers_on_ragged_batches() {
    for (name, dir, g) in model_dirs() {
        let (model, tokenizer, h): (Box<dyn std::any::Any>, _, _) =
            if rinfer::model_kind(&dir).unwrap() == "reranker" {
                let r = Reranker::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
                let (t, h) = (r.tokenizer().clone(), r.info().hidden_size);
                (Box::new(r), t, h)
            } else {
                let m = Embedder::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
                let (t, h) = (m.tokenizer().clone(), m.info().hidden_size);
                (Box::new(m), t, h)
            };
        let model: &Model = match model.downcast_ref::<Reranker>() {
            Some(r) => r.model(),
            None => model.downcast_ref::<Embedder>().unwrap().model(),
        };
        let texts = strings(&g["texts"]);
        let ids = id_lists(&g["input_ids"]);
        let enc = tokenizer.encode(&texts, false).unwrap();
        for (i, want) in ids.iter().enumerate() {
            assert_eq!(
                &enc.ids[enc.offsets[i]..enc.offsets[i + 1]],
                want.as_slice(),
                "{name}: token ids of {:?}",
                texts[i]
            );
        }
        let all: Vec<u32> = ids.iter().flatten().copied().collect();
        let mut offsets = vec![0];
        for s in &ids {
            offsets.push(offsets.last().unwrap() + s.len());
        }
        let batch = TokenBatch {
            ids: &all,
            type_ids: None,
            offsets: &offsets,
        };
        let hidden = model.forward(&batch).unwrap();
        let states = g["last_hidden_state"].as_array().unwrap();
        for (i, want) in states.iter().enumerate() {
            let got = &hidden[offsets[i] * h..offsets[i + 1] * h];
            assert_rows(
                got,
                &f32s(want),
                h,
                &format!("{name}: text {i} in a ragged batch"),
            );
        }
        // Alone, each sequence gives what it gives in the batch.
        let one = TokenBatch {
            ids: &ids[0],
            type_ids: None,
            offsets: &[0, ids[0].len()],
        };
        let alone = model.forward(&one).unwrap();
        assert_close(
            &alone,
            &hidden[..ids[0].len() * h],
            1e-5,
            &format!("{name}: batch invariance"),
        );
        if let (Some(logits), Model::Decoder(dec)) = (g.get("logits_last"), model) {
            for (i, want) in logits.as_array().unwrap().iter().enumerate() {
                let last = &hidden[(offsets[i + 1] - 1) * h..offsets[i + 1] * h];
                let got = dec.logits(last, None).unwrap();
                assert_close(
                    &got,
                    &f32s(want),
                    1e-4,
                    &format!("{name}: logits of text {i}"),
                );
            }
        }
    }
}

#[test]
fn sentence_transformers_embedders_match() {
    for (name, dir, g) in model_dirs() {
        let Some(want) = g.get("st_embeddings") else {
            continue;
        };
        let model = Embedder::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        let texts = strings(&g["texts"]);
        let got = model.encode(&texts).unwrap();
        assert_parity(&got, &f32s(want), &format!("{name}: encode"));
        if let Some(want) = g.get("st_embeddings_query") {
            let opts = EncodeOptions {
                prompt_name: Some("query".into()),
                ..Default::default()
            };
            let got = model.encode_with(&texts, &opts).unwrap();
            assert_parity(
                &got,
                &f32s(want),
                &format!("{name}: encode with the query prompt"),
            );
        }
    }
}

#[test]
fn rerankers_match() {
    let mut seen = 0;
    for (name, dir, g) in model_dirs() {
        let Some(pairs) = g.get("pairs") else {
            continue;
        };
        let model = Reranker::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        let pairs: Vec<(String, String)> = pairs
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_string(),
                    p[1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let views: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let got = model.pair_logits(&views, true).unwrap();
        let want: Vec<f32> = g["pair_logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_close(&got, &want, 1e-4, &format!("{name}: reranker logits"));
        seen += 1;
    }
    assert!(seen >= 1, "no reranker golden found");
}

#[test]
fn matryoshka_and_document_prompt_match() {
    let mut seen = 0;
    for (name, dir, g) in model_dirs() {
        let model = || Embedder::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        let texts = strings(&g["texts"]);
        if let Some(want) = g.get("st_embeddings_truncate_dim_32") {
            let opts = EncodeOptions {
                truncate_dim: Some(32),
                ..Default::default()
            };
            let got = model().encode_with(&texts, &opts).unwrap();
            assert_eq!(got.ncols(), 32);
            assert_parity(&got, &f32s(want), &format!("{name}: truncate_dim 32"));
            seen += 1;
        }
        if let Some(want) = g.get("st_embeddings_document") {
            let opts = EncodeOptions {
                prompt_name: Some("document".into()),
                ..Default::default()
            };
            let has = model().prompts().contains_key("document");
            if has {
                let got = model().encode_with(&texts, &opts).unwrap();
                assert_parity(&got, &f32s(want), &format!("{name}: document prompt"));
                seen += 1;
            }
        }
    }
    assert!(seen >= 2, "Matryoshka and document-prompt goldens missing");
}

#[test]
fn reduced_precision_stays_close() {
    let dir = data().join("qwen3_embedding");
    let g = golden(&dir.join("golden.json"));
    let texts = strings(&g["texts"]);
    let want = f32s(&g["st_embeddings"]);
    for (dtype, floor) in [
        (rinfer::Precision::Bf16, 0.999),
        (rinfer::Precision::Int8, 0.99),
    ] {
        let opts = rinfer::LoadOptions {
            dtype,
            ..Default::default()
        };
        let model = Embedder::load_with(&dir, &opts).unwrap();
        if let Some(note) = model.info().note {
            common::skipped("reduced_precision_stays_close", &note);
            continue;
        }
        let got = model.encode(&texts).unwrap();
        let dim = got.ncols();
        for (i, row) in got.rows().into_iter().enumerate() {
            let c = cosine(row.as_slice().unwrap(), &want[i * dim..(i + 1) * dim]);
            assert!(c >= floor, "{dtype}: text {i} cosine {c} < {floor}");
        }
    }
}

/// A copy of a golden folder with its config edited.
fn edited(name: &str, edit: impl Fn(&mut Value)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(data().join(name)).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let path = tmp.path().join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    tmp
}

/// A golden folder, an edit of its config, and what the refusal must name.
type Refusal = (&'static str, Box<dyn Fn(&mut Value)>, &'static str);

#[test]
fn configs_rinfer_cannot_run_exactly_are_refused() {
    let cases: Vec<Refusal> = vec![
        (
            "qwen3",
            Box::new(|v| {
                v["rope_scaling"] = serde_json::json!({"rope_type": "longrope", "factor": 2.0})
            }),
            "longrope",
        ),
        (
            "qwen3",
            Box::new(|v| v["auto_map"] = serde_json::json!({"AutoModel": "x.Model"})),
            "custom modeling code",
        ),
        (
            "gemma3",
            Box::new(|v| v["attn_logit_softcapping"] = serde_json::json!(50.0)),
            "attn_logit_softcapping",
        ),
        (
            "llama3",
            Box::new(|v| v["use_bidirectional_attention"] = serde_json::json!(true)),
            "use_bidirectional_attention",
        ),
        (
            "mistral",
            Box::new(|v| v["hidden_act"] = serde_json::json!("relu2")),
            "relu2",
        ),
        (
            "qwen3",
            Box::new(|v| v["num_key_value_heads"] = serde_json::json!(3)),
            "num_key_value_heads",
        ),
        (
            "llama3",
            Box::new(|v| v["partial_rotary_factor"] = serde_json::json!(0.5)),
            "partial_rotary_factor",
        ),
    ];
    for (name, edit, needle) in cases {
        let dir = edited(name, edit);
        let err = Embedder::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(needle), "{name}: `{needle}` not in: {err}");
    }
}

#[test]
fn long_reranker_pairs_are_truncated_keeping_the_template_end() {
    let dir = data().join("qwen3_reranker");
    let model = Reranker::load(&dir).unwrap();
    let long = "the capital city of a large country ".repeat(200);
    let pairs = [("What is the capital of China?", long.as_str())];
    let err = model.pair_logits(&pairs, false).unwrap_err();
    assert!(matches!(err, rinfer::Error::InputTooLong { .. }), "{err}");
    let got = model.pair_logits(&pairs, true).unwrap();
    assert!(got[0].is_finite());
    // Cut to the limit (the template's closing tokens restored after the cut), the
    // pair is scored; the limit is short enough for the document to be cut.
    let max = model.tokenizer().max_len();
    assert!(max < 400, "the test needs a short limit, got {max}");
}
