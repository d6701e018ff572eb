//! sentence-transformers modules around the encoder against sentence-transformers
//! itself (`scripts/make_golden_st.py`): Pooling with `include_prompt: false`, two
//! Dense layers (tanh with bias, identity without), Normalize; named, default and
//! literal prompts; Matryoshka truncation with and without renormalisation; token
//! embeddings (`output_value="token_embeddings"`) and a `max_seq_length` set at run
//! time.

mod common;

use common::{assert_parity, f32s, golden, root, strings};
use rinfer::{Embedder, EncodeOptions, Error, LoadOptions};

fn dir() -> std::path::PathBuf {
    root().join("tests/data/st/st-dense-prompts")
}

#[test]
fn dense_prompts_and_truncation_match_sentence_transformers() {
    let g = golden(&dir().join("golden.json"));
    let texts = strings(&g["texts"]);
    let model = Embedder::load(dir()).unwrap();
    assert_eq!(model.dim(), 16);
    assert_eq!(model.default_prompt_name(), Some("query"));
    assert_eq!(model.prompts()["doc"], "passage: ");
    assert_eq!(model.similarity_fn_name(), "cosine");
    let run = |opts: EncodeOptions| model.encode_with(&texts, &opts).unwrap();
    let cases = [
        ("default_prompt", EncodeOptions::default()),
        (
            "query",
            EncodeOptions {
                prompt_name: Some("query".into()),
                ..Default::default()
            },
        ),
        (
            "doc",
            EncodeOptions {
                prompt_name: Some("doc".into()),
                ..Default::default()
            },
        ),
        (
            "literal",
            EncodeOptions {
                prompt: Some("Represent this sentence: ".into()),
                ..Default::default()
            },
        ),
        (
            "no_prompt",
            EncodeOptions {
                prompt: Some(String::new()),
                ..Default::default()
            },
        ),
        (
            "truncated_8",
            EncodeOptions {
                prompt_name: Some("doc".into()),
                truncate_dim: Some(8),
                ..Default::default()
            },
        ),
        (
            "truncated_8_normalized",
            EncodeOptions {
                prompt_name: Some("doc".into()),
                truncate_dim: Some(8),
                normalize: Some(true),
                ..Default::default()
            },
        ),
    ];
    for (name, opts) in cases {
        assert_parity(&run(opts), &f32s(&g[name]), name);
    }
    // Truncation chosen at load applies to every call and to the reported width.
    let small = Embedder::load_with(
        dir(),
        &LoadOptions {
            truncate_dim: Some(8),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(small.dim(), 8);
    let opts = EncodeOptions {
        prompt_name: Some("doc".into()),
        ..Default::default()
    };
    assert_parity(
        &small.encode_with(&texts, &opts).unwrap(),
        &f32s(&g["truncated_8"]),
        "load-time truncation",
    );
}

#[test]
fn token_embeddings_and_max_seq_length_match_sentence_transformers() {
    let g = golden(&dir().join("golden.json"));
    let texts = strings(&g["texts"]);
    let model = Embedder::load(dir()).unwrap();
    let opts = EncodeOptions {
        prompt_name: Some("doc".into()),
        batch_size: 4,
        ..Default::default()
    };
    let got = model.encode_tokens(&texts, &opts).unwrap();
    let want = g["tokens_doc"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (m, w)) in got.iter().zip(want).enumerate() {
        let shape: Vec<usize> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(m.dim(), (shape[0], shape[1]), "text {i}");
        assert_parity(
            m,
            &f32s(&w["b64"]),
            &format!("token embeddings of text {i}"),
        );
    }
    // From token ids: the same rows.
    let ids = model
        .tokenizer()
        .encode(&[format!("passage: {}", texts[1])], true)
        .unwrap();
    let by_ids = model
        .encode_ids_tokens(&[ids.ids_of(0)], &EncodeOptions::default())
        .unwrap();
    assert_eq!(by_ids[0], got[1]);

    assert_eq!(model.max_seq_length(), 48);
    model.set_max_seq_length(8).unwrap();
    assert_eq!(model.max_seq_length(), 8);
    assert_eq!(model.info().max_seq_length, 8);
    let short = model.encode(&texts).unwrap();
    assert_parity(&short, &f32s(&g["max_seq_length_8"]), "max_seq_length 8");
    let strict = EncodeOptions {
        truncate: false,
        ..Default::default()
    };
    assert!(matches!(
        model.encode_with(&texts[4..5], &strict),
        Err(Error::InputTooLong { max: 8, .. })
    ));
    for bad in [0, 65] {
        assert!(matches!(
            model.set_max_seq_length(bad),
            Err(Error::InvalidInput(m)) if m.contains("1..=64")
        ));
    }
    assert_eq!(model.max_seq_length(), 8);
}

#[test]
fn bad_prompts_and_modules_are_typed_errors() {
    let model = Embedder::load(dir()).unwrap();
    let err = model
        .encode_with(
            &["x"],
            &EncodeOptions {
                prompt_name: Some("nope".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("query"), "{err}");
    let both = EncodeOptions {
        prompt_name: Some("query".into()),
        prompt: Some("x: ".into()),
        ..Default::default()
    };
    assert!(model.encode_with(&["x"], &both).is_err());
    let zero = EncodeOptions {
        truncate_dim: Some(0),
        ..Default::default()
    };
    assert!(model.encode_with(&["x"], &zero).is_err());

    // A folder whose modules rinfer cannot run is refused, naming the module.
    let copy = tempfile::tempdir().unwrap();
    let cp = |from: &std::path::Path, to: &std::path::Path| {
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    };
    cp(&dir(), copy.path());
    for sub in ["1_Pooling", "2_Dense", "3_Dense", "4_Normalize"] {
        std::fs::create_dir(copy.path().join(sub)).unwrap();
        cp(&dir().join(sub), &copy.path().join(sub));
    }
    let modules = copy.path().join("modules.json");
    let text = std::fs::read_to_string(&modules).unwrap();
    std::fs::write(&modules, text.replace("dense.Dense", "lstm.LSTM")).unwrap();
    let err = Embedder::load(copy.path()).unwrap_err().to_string();
    assert!(
        err.contains("LSTM") && err.contains("modules.json"),
        "{err}"
    );
    // A module path that leaves the folder is refused, whichever way it leaves.
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(outside.path().join("2_Dense")).unwrap();
    cp(&dir().join("2_Dense"), &outside.path().join("2_Dense"));
    let away = outside.path().join("2_Dense");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&away, copy.path().join("linked")).unwrap();
    let mut escapes = vec![
        "\"../2_Dense\"".to_string(),
        "\"2_Dense/../../x\"".to_string(),
        serde_json::to_string(&away).unwrap(),
    ];
    if cfg!(unix) {
        escapes.push("\"linked\"".to_string());
    }
    for bad in escapes {
        std::fs::write(&modules, text.replacen("\"2_Dense\"", &bad, 1)).unwrap();
        let err = Embedder::load(copy.path()).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{bad}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains("outside the model folder") || msg.contains("inside the model folder"),
            "{bad}: {msg}"
        );
    }
    std::fs::write(&modules, text).unwrap();
    // Dense weights only as a pickle: refused, saying why.
    std::fs::rename(
        copy.path().join("2_Dense/model.safetensors"),
        copy.path().join("2_Dense/pytorch_model.bin"),
    )
    .unwrap();
    let err = Embedder::load(copy.path()).unwrap_err().to_string();
    assert!(err.contains("safetensors"), "{err}");
}

/// SPLADE models (sentence-transformers SparseEncoder folders): BERT with max
/// pooling and relu, DistilBERT with sum pooling and log1p_relu. Indices identical,
/// values within 1e-4, and top-k keeps the largest.
#[test]
fn splade_matches_sentence_transformers() {
    for name in ["splade-bert", "splade-distilbert"] {
        let d = root().join("tests/data/st").join(name);
        let g = golden(&d.join("golden.json"));
        let texts = strings(&g["texts"]);
        let model = Embedder::load(&d).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(model.is_sparse());
        for (key, top_k) in [("sparse", None), ("top5", Some(5))] {
            let got = model
                .encode_sparse(&texts, &EncodeOptions::default(), top_k)
                .unwrap();
            for (i, (v, want)) in got.iter().zip(g[key].as_array().unwrap()).enumerate() {
                let idx: Vec<u32> = want["indices"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect();
                assert_eq!(v.indices, idx, "{name} {key} text {i}: indices");
                for (a, b) in v.values.iter().zip(want["values"].as_array().unwrap()) {
                    let b = b.as_f64().unwrap() as f32;
                    assert!((a - b).abs() <= 1e-4, "{name} {key} text {i}: {a} vs {b}");
                }
            }
        }
        // Dense calls on a sparse model are refused, and sparse ones on a dense model.
        assert!(matches!(model.encode(&["x"]), Err(Error::Unsupported(_))));
    }
    let dense = Embedder::load(dir()).unwrap();
    assert!(matches!(
        dense.encode_sparse(&["x"], &EncodeOptions::default(), None),
        Err(Error::Unsupported(_))
    ));
}
