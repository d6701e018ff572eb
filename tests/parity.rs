//! Parity with PyTorch: all-MiniLM-L6-v2 against sentence-transformers, and small
//! random BERT models (other shapes, activations, poolings, stored dtypes, heads)
//! against transformers. Golden files come from `scripts/make_golden.py`.

mod common;

use common::{assert_parity, f32s, golden, id_lists, minilm_dir, root, strings};
use rinfer::{Classifier, Embedder, EncodeOptions, Error, Reranker};
use serde_json::Value;

#[test]
fn minilm_matches_sentence_transformers() {
    let g = golden(&root().join("tests/golden/minilm.json"));
    let texts = strings(&g["texts"]);
    let want = f32s(&g["embeddings_f32_b64"]);
    let model = Embedder::load(minilm_dir()).unwrap();
    assert_eq!((model.dim(), model.max_seq_length()), (384, 256));
    assert!(model.normalizes(), "modules.json lists Normalize");

    // Token ids identical to the Python tokenizer's (truncation included).
    let enc = model.tokenizer().encode(&texts, true).unwrap();
    let want_ids = id_lists(&g["ids"]);
    for (i, ids) in want_ids.iter().enumerate() {
        assert_eq!(
            enc.ids_of(i),
            ids.as_slice(),
            "token ids of text {i}: {:?}",
            texts[i]
        );
    }
    assert!(
        want_ids.iter().any(|r| r.len() == 256),
        "the set has a truncated text"
    );

    let got = model.encode(&texts).unwrap();
    assert_parity(&got, &want, "minilm, one batch");
    // Different batchings give the same answer.
    for bs in [1, 7] {
        let opts = EncodeOptions {
            batch_size: bs,
            ..Default::default()
        };
        assert_parity(
            &model.encode_with(&texts, &opts).unwrap(),
            &want,
            "minilm, batched",
        );
    }
    // Same vectors from token ids.
    let from_ids = model
        .encode_ids(&want_ids, &EncodeOptions::default())
        .unwrap();
    assert_parity(&from_ids, &want, "minilm, from ids");
}

#[test]
fn minilm_is_batch_invariant() {
    let g = golden(&root().join("tests/golden/minilm.json"));
    let texts = strings(&g["texts"]);
    let model = Embedder::load(minilm_dir()).unwrap();
    let batch = model.encode(&texts).unwrap();
    for (i, t) in texts.iter().enumerate().step_by(3) {
        let alone = model.encode(&[t]).unwrap();
        let diff = alone
            .row(0)
            .iter()
            .zip(batch.row(i))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff <= 1e-6, "text {i} alone vs in batch: max diff {diff}");
    }
    // Inside a different batch (reversed order, duplicated).
    let mut rev: Vec<&String> = texts.iter().rev().collect();
    rev.push(&texts[5]);
    let other = model.encode(&rev).unwrap();
    let n = texts.len();
    for i in 0..n {
        let diff = other
            .row(n - 1 - i)
            .iter()
            .zip(batch.row(i))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff <= 1e-6, "text {i} in reversed batch: max diff {diff}");
    }
}

#[test]
fn minilm_refuses_long_input_without_truncation() {
    let model = Embedder::load(minilm_dir()).unwrap();
    let long = "word ".repeat(400);
    let opts = EncodeOptions {
        truncate: false,
        batch_size: 2,
        ..Default::default()
    };
    match model.encode_with(&["short", "also short", "x", &long], &opts) {
        Err(Error::InputTooLong { index, tokens, max }) => {
            assert_eq!((index, max), (3, 256));
            assert!(tokens > 256);
        }
        other => panic!("expected InputTooLong, got {other:?}"),
    }
    // Token ids: bad id, empty sequence, too long.
    let err = model
        .encode_ids(&[vec![101u32, 999_999, 102]], &opts)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("999999"), "{err}");
    let err = model.encode_ids(&[Vec::<u32>::new()], &opts).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    let err = model.encode_ids(&[vec![101u32; 300]], &opts).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InputTooLong {
                index: 0,
                tokens: 300,
                max: 256
            }
        ),
        "{err}"
    );
    // No texts: an empty (0 x dim) matrix.
    let empty: [&str; 0] = [];
    assert_eq!(model.encode(&empty).unwrap().dim(), (0, 384));
}

#[test]
fn tiny_models_of_other_shapes_match_transformers() {
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
        let model = Embedder::load(&dir).unwrap();
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
        assert_parity(&got, &f32s(&g["embeddings_f32_b64"]), name);
    }
}

#[test]
fn classifier_logits_and_labels_match_transformers() {
    let dir = root().join("tests/data/models/classifier");
    let g = golden(&dir.join("golden.json"));
    let texts = strings(&g["texts"]);
    let clf = Classifier::load(&dir).unwrap();
    assert_eq!(clf.labels(), strings(&g["labels"]).as_slice());
    let logits = clf.logits(&texts, true).unwrap();
    for (i, want) in g["logits"].as_array().unwrap().iter().enumerate() {
        for (j, w) in want.as_array().unwrap().iter().enumerate() {
            let w = w.as_f64().unwrap() as f32;
            assert!(
                (logits[[i, j]] - w).abs() <= 1e-4,
                "text {i} label {j}: {} vs {w}",
                logits[[i, j]]
            );
        }
    }
    let preds = clf.predict(&texts).unwrap();
    for (i, p) in preds.iter().enumerate() {
        let row = logits.row(i);
        let best = (0..3).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        assert_eq!(p[0].index, best);
        assert_eq!(p[0].label, clf.labels()[best]);
        let total: f32 = p.iter().map(|x| x.score).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }
    // An embedding model is not a classifier: typed error.
    assert!(Classifier::load(root().join("tests/data/models/gelu-mean")).is_err());
}

#[test]
fn reranker_scores_match_transformers() {
    let dir = root().join("tests/data/models/reranker");
    let g = golden(&dir.join("golden.json"));
    let texts = strings(&g["texts"]);
    let passages: Vec<&str> = texts.iter().map(String::as_str).collect();
    let query = g["query"].as_str().unwrap();
    let rr = Reranker::load(&dir).unwrap();
    let logits = rr.logits(query, &passages, true).unwrap();
    let want: Vec<f32> = g["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_f64().unwrap() as f32)
        .collect();
    common::assert_close(&logits, &want, 1e-4, "reranker logits");
    let ranked = rr.rerank(query, &passages, Some(3)).unwrap();
    assert_eq!(ranked.len(), 3);
    let mut order: Vec<usize> = (0..want.len()).collect();
    order.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
    assert_eq!(
        ranked.iter().map(|r| r.index).collect::<Vec<_>>(),
        order[..3]
    );
    assert!(ranked.windows(2).all(|w| w[0].score >= w[1].score));
    // A three-label classifier is not a reranker.
    assert!(matches!(
        Reranker::load(root().join("tests/data/models/classifier")),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn broken_model_folders_are_typed_errors() {
    let err = Embedder::load("/nonexistent/model").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");

    let src = root().join("tests/data/models/gelu-mean");
    let copy = |skip: &str| {
        let d = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(&src).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() && e.file_name() != skip {
                std::fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
            }
        }
        d
    };
    // Missing files name themselves.
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        let d = copy(f);
        let err = Embedder::load(d.path()).unwrap_err();
        assert!(err.to_string().contains(f), "missing {f}: {err}");
    }
    // Inconsistent config: heads do not divide hidden size.
    let d = copy("");
    let cfg_path = d.path().join("config.json");
    let mut cfg: Value = golden(&cfg_path);
    cfg["num_attention_heads"] = 5.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let err = Embedder::load(d.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Config { path, .. } if path.ends_with("config.json")),
        "{err}"
    );
    // Config promising a larger model than the weights hold.
    cfg["num_attention_heads"] = 4.into();
    cfg["hidden_size"] = 64.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let err = Embedder::load(d.path()).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    // Unsupported activation.
    cfg["hidden_size"] = 48.into();
    cfg["hidden_act"] = "swish".into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let err = Embedder::load(d.path()).unwrap_err();
    assert!(err.to_string().contains("swish"), "{err}");
    // max_seq_length beyond the position table.
    cfg["hidden_act"] = "gelu".into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    std::fs::write(
        d.path().join("sentence_bert_config.json"),
        r#"{"max_seq_length": 4096}"#,
    )
    .unwrap();
    let err = Embedder::load(d.path()).unwrap_err();
    assert!(
        err.to_string().contains("sentence_bert_config.json"),
        "{err}"
    );
}

#[test]
fn minilm_tokens_have_text_and_character_spans() {
    let model = Embedder::load(minilm_dir()).unwrap();
    let toks = model.tokenizer().tokens(&["Héllo, wörld"], true).unwrap();
    let row = &toks[0];
    assert_eq!(
        row.first().map(|t| (t.text.as_str(), t.special, t.span)),
        Some(("[CLS]", true, None))
    );
    assert_eq!(
        row.last().map(|t| (t.text.as_str(), t.special)),
        Some(("[SEP]", true))
    );
    let ids = model.tokenizer().encode(&["Héllo, wörld"], true).unwrap();
    assert_eq!(row.iter().map(|t| t.id).collect::<Vec<_>>(), ids.ids_of(0));
    // Spans are character offsets: "wörld" starts at character 7.
    let text: Vec<char> = "Héllo, wörld".chars().collect();
    for t in row.iter().filter(|t| !t.special) {
        let (a, b) = t.span.unwrap();
        let piece: String = text[a..b].iter().collect::<String>().to_lowercase();
        assert!(!piece.is_empty() && b <= text.len(), "{t:?}");
    }
    assert!(
        row.iter().any(|t| t.span.map(|s| s.0) == Some(7)),
        "{row:?}"
    );
    let long = "word ".repeat(300);
    assert!(matches!(
        model.tokenizer().tokens(&[long.as_str()], false),
        Err(Error::InputTooLong { .. })
    ));
}
