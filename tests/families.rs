//! Encoder families other than BERT against transformers: XLM-RoBERTa (Unigram,
//! f32 and bf16 weights), RoBERTa (byte-level BPE), DistilBERT (WordPiece), their
//! embedders with pooling configs of old and new sentence-transformers releases, an
//! XLM-R cross-encoder and a DistilBERT classifier. Goldens come from
//! `scripts/make_golden_families.py`. Bars: token ids identical, cosine >= 0.99999
//! and max |diff| <= 1e-4 per vector, logits within 1e-4, batch invariance 1e-6,
//! bf16 and int8 within their quality floors.

mod common;

use std::path::PathBuf;

use common::{assert_close, assert_parity, f32s, golden, id_lists, root, skipped, strings};
use rinfer::quality::cosine;
use rinfer::{kernels, Classifier, Embedder, Error, LoadOptions, Precision, Reranker};
use serde_json::Value;

fn family_dirs() -> Vec<(String, PathBuf, Value)> {
    let base = root().join("tests/data/families");
    let mut dirs: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("golden.json").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 6,
        "family goldens missing under {}",
        base.display()
    );
    dirs.into_iter()
        .map(|d| {
            let g = golden(&d.join("golden.json"));
            (d.file_name().unwrap().to_string_lossy().into_owned(), d, g)
        })
        .collect()
}

fn of_kind(kind: &str) -> Vec<(String, PathBuf, Value)> {
    family_dirs()
        .into_iter()
        .filter(|(_, _, g)| g["kind"] == kind)
        .collect()
}

fn logits_of(g: &Value) -> Vec<f32> {
    g["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect()
}

#[test]
fn embedders_match_transformers() {
    for (name, dir, g) in of_kind("embedder") {
        let texts = strings(&g["texts"]);
        let model = Embedder::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.dim() as u64, g["dim"].as_u64().unwrap(), "{name}");
        assert_eq!(
            model.normalizes(),
            g["normalize"].as_bool().unwrap(),
            "{name}"
        );
        let enc = model.tokenizer().encode(&texts, true).unwrap();
        for (i, ids) in id_lists(&g["ids"]).iter().enumerate() {
            assert_eq!(enc.ids_of(i), ids.as_slice(), "{name}: ids of text {i}");
        }
        let got = model.encode(&texts).unwrap();
        assert_parity(&got, &f32s(&g["embeddings_f32_b64"]), &name);
        // Batch invariance: each text alone gives its row of the batch.
        for (i, t) in texts.iter().enumerate() {
            let alone = model.encode(&[t]).unwrap();
            assert_close(
                alone.row(0).as_slice().unwrap(),
                got.row(i).as_slice().unwrap(),
                1e-6,
                &format!("{name}: text {i} alone vs in batch"),
            );
        }
        let info = model.info();
        assert!(
            [
                "xlm-roberta",
                "roberta",
                "distilbert",
                "mpnet",
                "modernbert",
                "nomic_bert",
                "new",
                "jina_bert"
            ]
            .contains(&info.model_type.as_str()),
            "{name}: {info:?}"
        );
    }
}

#[test]
fn classifiers_and_rerankers_match_transformers() {
    for (name, dir, g) in of_kind("classifier") {
        let texts = strings(&g["texts"]);
        let clf = Classifier::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(clf.labels(), strings(&g["labels"]).as_slice(), "{name}");
        let got = clf.logits(&texts, true).unwrap();
        assert_close(got.as_slice().unwrap(), &logits_of(&g), 1e-4, &name);
    }
    for (name, dir, g) in of_kind("reranker") {
        let texts = strings(&g["texts"]);
        let passages: Vec<&str> = texts.iter().map(String::as_str).collect();
        let rr = Reranker::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        let query = g["query"].as_str().unwrap();
        // The pair template of the family (`<s> q </s></s> p </s>`).
        let pairs: Vec<(&str, &str)> = passages.iter().map(|p| (query, *p)).collect();
        let enc = rr.tokenizer().encode_pairs(&pairs, true).unwrap();
        for (i, ids) in id_lists(&g["ids"]).iter().enumerate() {
            assert_eq!(enc.ids_of(i), ids.as_slice(), "{name}: ids of pair {i}");
        }
        let got = rr.logits(query, &passages, true).unwrap();
        assert_close(&got, &logits_of(&g), 1e-4, &name);
    }
}

/// A ModernBERT folder with the Hub's config format (`global_attn_every_n_layers`,
/// `global_rope_theta`, `local_rope_theta`) gives what transformers 5's format
/// (`layer_types`, `rope_parameters`) gives; an irregular `layer_types` is refused.
#[test]
fn modernbert_reads_both_config_formats() {
    let src = root().join("tests/data/families/modernbert-mean");
    let g = golden(&src.join("golden.json"));
    let texts = strings(&g["texts"]);
    let copy = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let d = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(&src).unwrap() {
            let e = e.unwrap();
            let to = d.path().join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                std::fs::create_dir(&to).unwrap();
                for f in std::fs::read_dir(e.path()).unwrap() {
                    let f = f.unwrap();
                    std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
                }
            } else {
                std::fs::copy(e.path(), to).unwrap();
            }
        }
        let p = d.path().join("config.json");
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        edit(v.as_object_mut().unwrap());
        std::fs::write(&p, v.to_string()).unwrap();
        d
    };
    let hub = copy(&|c| {
        c.remove("layer_types");
        c.remove("rope_parameters");
        c.insert("global_rope_theta".into(), 160000.0.into());
        c.insert("local_rope_theta".into(), 10000.0.into());
        c.insert("global_attn_every_n_layers".into(), 3.into());
    });
    let got = Embedder::load(hub.path()).unwrap().encode(&texts).unwrap();
    assert_parity(
        &got,
        &f32s(&g["embeddings_f32_b64"]),
        "modernbert hub config",
    );
    let odd = copy(&|c| {
        let types = [
            "full_attention",
            "full_attention",
            "sliding_attention",
            "full_attention",
        ];
        c.insert("layer_types".into(), types.map(Value::from).to_vec().into());
    });
    let err = Embedder::load(odd.path()).unwrap_err().to_string();
    assert!(err.contains("layer_types"), "{err}");
}

/// MPNet's relative-position buckets equal transformers' for every distance in
/// -600..=600 (exact range, logarithmic range, clamp).
#[test]
fn mpnet_buckets_match_transformers() {
    let g = golden(&root().join("tests/data/families/mpnet-mean/buckets.json"));
    let from = g["from"].as_i64().unwrap() as isize;
    for (k, want) in g["buckets"].as_array().unwrap().iter().enumerate() {
        let d = from + k as isize;
        assert_eq!(
            rinfer::models::mpnet::bucket(d),
            want.as_u64().unwrap() as usize,
            "distance {d}"
        );
    }
}

/// bf16 and int8 meet their floors on every family (where the path has the kernels).
#[test]
fn reduced_precision_meets_floors_on_every_family() {
    let kern = kernels::active();
    if kern.lowp.is_none() || kern.isa == rinfer::Isa::Generic {
        skipped(
            &format!("family bf16/int8 on {}", kern.isa),
            "the path has no SIMD bf16/int8 kernels",
        );
        return;
    }
    for (name, dir, g) in of_kind("embedder") {
        let texts = strings(&g["texts"]);
        let want = f32s(&g["embeddings_f32_b64"]);
        for (dtype, floor) in [(Precision::Bf16, 0.999), (Precision::Int8, 0.99)] {
            let opts = LoadOptions {
                dtype,
                ..Default::default()
            };
            let model = Embedder::load_with(&dir, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
            let got = model.encode(&texts).unwrap();
            let dim = got.ncols();
            for (i, w) in want.chunks_exact(dim).enumerate() {
                let c = cosine(got.row(i).as_slice().unwrap(), w);
                assert!(c >= floor, "{name} {dtype}: text {i} cosine {c} < {floor}");
            }
        }
    }
}

/// Unknown families and options, and weights of another family, are typed errors
/// naming what is wrong.
#[test]
fn unknown_families_and_wrong_weights_are_refused() {
    let src = root().join("tests/data/families/xlmr-mean");
    let with_config = |edit: &dyn Fn(&mut Value)| {
        let d = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(&src).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
            }
        }
        let p = d.path().join("config.json");
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(&p, v.to_string()).unwrap();
        d
    };
    type Edit<'a> = &'a dyn Fn(&mut Value);
    let cases: [(&str, Edit, &str); 4] = [
        (
            "unknown family",
            &|v| v["model_type"] = "longformer".into(),
            "model_type `longformer`",
        ),
        (
            "relative positions",
            &|v| v["position_embedding_type"] = "relative_key".into(),
            "position_embedding_type",
        ),
        (
            "decoder flag",
            &|v| v["is_decoder"] = true.into(),
            "is_decoder",
        ),
        // XLM-R weights read as BERT: the `roberta.`-less names differ only in prefix,
        // so the position table's rows (max positions) decide; run as DistilBERT they
        // are missing outright.
        (
            "wrong family",
            &|v| {
                v["model_type"] = "distilbert".into();
                v["dim"] = v["hidden_size"].clone();
                v["n_layers"] = v["num_hidden_layers"].clone();
                v["n_heads"] = v["num_attention_heads"].clone();
                v["hidden_dim"] = v["intermediate_size"].clone();
            },
            "transformer.layer.0",
        ),
    ];
    for (what, edit, needle) in cases {
        let d = with_config(edit);
        let err = Embedder::load(d.path()).unwrap_err();
        assert!(
            matches!(err, Error::Config { .. } | Error::MissingTensor { .. }),
            "{what}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(needle), "{what}: {msg}");
        if what == "unknown family" {
            assert!(
                msg.contains("config.json") && msg.contains("xlm-roberta"),
                "{msg}"
            );
        }
    }
    // A tokenizer of a larger vocabulary than the model's: refused, naming both.
    let d = with_config(&|v| v["vocab_size"] = 50.into());
    let err = Embedder::load(d.path()).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("vocab_size"),
        "{err}"
    );
    // An embedding folder is not a classifier.
    assert!(Classifier::load(&src).is_err());
}
