//! The bodies of the fuzz targets (`tests/fuzz/`, run by `scripts/test_fuzz.sh`)
//! and of their regression test (`tests/fuzz_regressions.rs`, which feeds them
//! every committed corpus and crash input): each takes arbitrary bytes, drives
//! one of the crate's parsers or entry points with them, and panics only on a
//! bug. An error is the right answer to a bad input; a panic, an abort or a hang
//! is not. Not a stable API: for the fuzzers and tests of this repository.
//!
//! The targets that need a model load the tiny ones of `tests/data` (by this
//! crate's source path), once per process.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::engine::chat::Message;
use crate::engine::{
    model_kind, Classifier, Embedder, EncodeOptions, Generator, Prompt, Reranker, StConfig,
};
use crate::error::Error;
use crate::generate::SamplingParams;
use crate::kernels::{Isa, Precision};
use crate::models::{config, Model, ModelConfig, Pooling};
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;

/// A target's body: arbitrary bytes in, a panic only on a bug.
pub type Body = fn(&[u8]);

/// Every target: its name (the fuzz target's and the corpus folder's) and body.
pub const TARGETS: &[(&str, Body)] = &[
    ("safetensors_header", safetensors_header),
    ("model_config", model_config),
    ("tokenizer", tokenizer),
    ("encode_ids", encode_ids),
    ("python_args", python_args),
];

/// The test models of this crate's source tree.
fn test_data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// A folder of this process and thread for the files a target writes (the
/// loaders read paths), removed when the thread ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

fn scratch() -> PathBuf {
    SCRATCH.with(|s| {
        s.borrow_mut()
            .get_or_insert_with(|| {
                let id = format!("{:?}", std::thread::current().id());
                let id: String = id.chars().filter(char::is_ascii_digit).collect();
                let dir =
                    std::env::temp_dir().join(format!("rinfer-fuzz-{}-{id}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("a scratch folder in the temp dir");
                Scratch(dir)
            })
            .0
            .clone()
    })
}

/// Writes `bytes` to `path`, or removes the file when `bytes` is `None`.
fn put(path: &Path, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => std::fs::write(path, b).expect("write a scratch file"),
        None => match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove {}: {e}", path.display()),
        },
    }
}

/// Reads fixed-size values from the front of the input; past its end, zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n.min(self.0.len()));
        self.0 = tail;
        head
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let b = self.bytes(N);
        out[..b.len()].copy_from_slice(b);
        out
    }

    fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    fn usize(&mut self) -> usize {
        self.u64() as usize
    }

    fn f32(&mut self) -> f32 {
        f32::from_bits(self.u32())
    }

    fn f64(&mut self) -> f64 {
        f64::from_bits(self.u64())
    }

    /// `Some` with one value in two.
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        self.bool().then(|| f(self))
    }

    /// A string of up to 255 bytes (invalid UTF-8 replaced, as Python's `str`
    /// cannot hold it).
    fn string(&mut self) -> String {
        let n = self.u8() as usize;
        String::from_utf8_lossy(self.bytes(n)).into_owned()
    }

    fn rest(&mut self) -> &'a [u8] {
        self.bytes(usize::MAX)
    }
}

/// Bytes as a safetensors file through [`Weights::open`] (first byte even), or,
/// first byte odd, a sharded checkpoint through [`Weights::open_dir`] (a
/// little-endian `u16` length, that many bytes of
/// `model.safetensors.index.json`, the rest the shard `shard.safetensors`). Every
/// tensor found is viewed and converted to f32.
pub fn safetensors_header(data: &[u8]) {
    let mut input = Input(data);
    let dir = scratch().join("weights");
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let index = dir.join("model.safetensors.index.json");
    let single = dir.join("model.safetensors");
    let shard = dir.join("shard.safetensors");
    let weights = if input.u8() & 1 == 0 {
        put(&index, None);
        put(&shard, None);
        put(&single, Some(input.rest()));
        Weights::open(&single)
    } else {
        let n = input.u16() as usize;
        put(&single, None);
        put(&index, Some(input.bytes(n)));
        put(&shard, Some(input.rest()));
        Weights::open_dir(&dir)
    };
    let Ok(weights) = weights else { return };
    let weights = weights.with_prefixes(&["model."]);
    assert_eq!(weights.names().len(), weights.len());
    for name in weights.names() {
        let (_, shape) = weights.info(name).expect("a listed tensor has info");
        let shape = shape.to_vec();
        if let Ok(view) = weights.view(name) {
            assert_eq!(view.shape(), shape.as_slice());
            let t = view.to_f32();
            assert_eq!(t.data().len(), shape.iter().product::<usize>());
            let again = weights
                .get_f32(name, &shape)
                .expect("the shape it has is accepted");
            assert_eq!(again.data().len(), t.data().len());
        }
        let mut other = shape.clone();
        other.push(1);
        assert!(weights.get_f32(name, &other).is_err());
    }
    assert!(weights.view("\u{0}no such tensor").is_err());
}

/// The configs of a model folder, separated by NUL bytes: `config.json`,
/// `modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`,
/// `config_sentence_transformers.json` (an empty or missing part: no file). They
/// are parsed alone, then with the weights and tokenizer of a tiny test model (an
/// encoder, or a decoder for a decoder config) through [`model_kind`] and every
/// loader.
pub fn model_config(data: &[u8]) {
    const FILES: [&str; 5] = [
        "config.json",
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
    ];
    let mut parts = data.splitn(FILES.len(), |&b| b == 0);
    let parts: Vec<Option<&[u8]>> = FILES
        .iter()
        .map(|_| parts.next().filter(|p| !p.is_empty()))
        .collect();
    let root = scratch().join("folders");
    let folder = |name: &str, from: &str| {
        let dir = root.join(name);
        if !dir.join("tokenizer.json").is_file() {
            std::fs::create_dir_all(dir.join("1_Pooling")).expect("scratch folder");
            for f in [
                "model.safetensors",
                "tokenizer.json",
                "generation_config.json",
            ] {
                let src = test_data(from).join(f);
                if src.is_file() {
                    std::fs::copy(src, dir.join(f)).expect("copy a test model file");
                }
            }
        }
        for (f, bytes) in FILES.iter().zip(&parts) {
            put(&dir.join(f), *bytes);
        }
        dir
    };
    let enc = folder("encoder", "models/gelu-mean");
    let cfg = config::from_file(&enc.join("config.json"));
    let hidden = cfg.as_ref().map_or(48, ModelConfig::hidden_size);
    let _ = Pooling::from_file(&enc.join("1_Pooling/config.json"), hidden);
    let _ = StConfig::read(&enc);
    let dir = match &cfg {
        Ok(ModelConfig::Decoder(_)) => folder("decoder", "decoders/qwen3"),
        _ => enc,
    };
    let _ = model_kind(&dir);
    if let Ok(e) = Embedder::load(&dir) {
        let opts = EncodeOptions::default();
        match e.encode_with(&["a b"], &opts) {
            Ok(v) => assert_eq!(v.dim(), (1, e.dim())),
            Err(err) => assert!(
                e.is_sparse() || matches!(err, Error::InputTooLong { .. }),
                "a loaded embedder fails on a short text: {err}"
            ),
        }
    }
    let _ = Classifier::load(&dir);
    let _ = Reranker::load(&dir);
    if matches!(cfg, Ok(ModelConfig::Decoder(_))) {
        let _ = Generator::load(&dir);
    }
}

/// The test tokenizers: WordPiece (BERT), Unigram (XLM-R), byte-level BPE (Qwen3).
fn tokenizers() -> &'static [Tokenizer] {
    static T: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    T.get_or_init(|| {
        [
            ("models/gelu-mean", 64),
            ("families/xlmr-mean", 64),
            ("decoders/qwen3", 256),
        ]
        .iter()
        .map(|(dir, max)| {
            Tokenizer::from_file(&test_data(dir).join("tokenizer.json"), *max)
                .expect("a test tokenizer loads")
        })
        .collect()
    })
}

/// Arbitrary bytes as text (invalid UTF-8 replaced; NUL bytes separate the texts
/// of a batch) through each way rinfer tokenizes: first byte the tokenizer,
/// second whether to truncate and the limit (`max_seq_length`, as Python sets it).
pub fn tokenizer(data: &[u8]) {
    let mut input = Input(data);
    let all = tokenizers();
    let tok = &all[input.u8() as usize % all.len()];
    let flags = input.u8();
    let truncate = flags & 1 == 1;
    let limit = [64, 1, 2, 3, 4, 5, 8, 256][(flags >> 1) as usize % 8];
    if tok.max_len() != limit && tok.set_max_len(limit).is_err() {
        assert!(limit < 4, "a limit of {limit} refused");
        return;
    }
    let text = String::from_utf8_lossy(input.rest()).into_owned();
    let texts: Vec<&str> = text.split('\0').collect();
    let max = tok.max_len();
    let check = |enc: &crate::tokenizer::Encoded, n: usize| {
        assert_eq!(enc.len(), n);
        assert_eq!(enc.offsets[0], 0);
        assert_eq!(*enc.offsets.last().unwrap(), enc.ids.len());
        assert_eq!(enc.type_ids.len(), enc.ids.len());
        assert!(enc
            .offsets
            .windows(2)
            .all(|w| w[0] <= w[1] && w[1] - w[0] <= max));
        assert!(enc.ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
    };
    match tok.encode(&texts, truncate) {
        Ok(enc) => {
            check(&enc, texts.len());
            for i in 0..enc.len() {
                let _ = tok.decode(enc.ids_of(i), true);
                let _ = tok.decode(enc.ids_of(i), false);
            }
        }
        Err(Error::InputTooLong { index, tokens, .. }) => {
            assert!(!truncate && index < texts.len() && tokens > max);
        }
        Err(e) => panic!("encode failed: {e}"),
    }
    match tok.tokens(&texts, truncate) {
        Ok(toks) => {
            assert_eq!(toks.len(), texts.len());
            for (t, text) in toks.iter().zip(&texts) {
                let chars = text.chars().count();
                for token in t {
                    if let Some((start, stop)) = token.span {
                        assert!(
                            start <= stop && stop <= chars,
                            "span {start}..{stop} of {chars}"
                        );
                    }
                    assert!(tok.id_to_token(token.id).is_some());
                }
            }
        }
        Err(Error::InputTooLong { .. }) => assert!(!truncate),
        Err(e) => panic!("tokens failed: {e}"),
    }
    let plain = tok
        .encode_plain(&texts)
        .expect("encode_plain takes any text");
    assert_eq!(plain.len(), texts.len());
    let pairs: Vec<(&str, &str)> = texts.chunks(2).map(|p| (p[0], p[p.len() - 1])).collect();
    match tok.encode_pairs(&pairs, truncate) {
        Ok(enc) => check(&enc, pairs.len()),
        Err(Error::InputTooLong { .. }) => assert!(!truncate),
        // A limit below the special tokens of a pair.
        Err(Error::InvalidInput(_)) => assert!(truncate && limit < 5),
        Err(e) => panic!("encode_pairs failed: {e}"),
    }
}

/// The models taking token ids: a BERT embedder, a Qwen3 embedder, a SPLADE
/// model, and a Qwen3 generator.
struct IdModels {
    embedders: Vec<Embedder>,
    generator: Generator,
}

fn id_models() -> &'static IdModels {
    static M: OnceLock<IdModels> = OnceLock::new();
    M.get_or_init(|| IdModels {
        embedders: [
            "models/gelu-mean",
            "decoders/qwen3_embedding",
            "st/splade-bert",
        ]
        .iter()
        .map(|d| Embedder::load(test_data(d)).expect("a test model loads"))
        .collect(),
        generator: Generator::load(test_data("decoders/qwen3")).expect("the test generator loads"),
    })
}

fn vocab_size(model: &Model) -> usize {
    match model {
        Model::Encoder(e) => e.config().vocab_size,
        Model::Decoder(d) => d.config().vocab_size,
    }
}

/// Arbitrary token ids (out of the vocabulary, none, more than the model takes)
/// through [`Embedder::encode_ids`], the tokenizer's `decode`, and generation
/// from [`Prompt::Ids`]: an id the model does not have, an empty sequence or a
/// sequence too long must be a typed error; valid ids must embed.
pub fn encode_ids(data: &[u8]) {
    let mut input = Input(data);
    let models = id_models();
    let which = input.u8() as usize % (models.embedders.len() + 1);
    let n = (input.u8() % 6) as usize;
    let mut seqs: Vec<Vec<u32>> = Vec::with_capacity(n);
    let (vocab, max_len) = match models.embedders.get(which) {
        Some(e) => (vocab_size(e.model()), e.max_seq_length()),
        None => (
            models.generator.model().config().vocab_size,
            models.generator.model().config().max_tokens(),
        ),
    };
    for _ in 0..n {
        // Mostly short; now and then past the model's limit.
        let len = match input.u8() {
            255 => max_len + 1 + input.u8() as usize,
            l => (l % 24) as usize,
        };
        let seq = (0..len)
            .map(|_| match input.u16() {
                v if v >= 0xF000 => u32::MAX - (v as u32 & 0xFF),
                v if v >= 0xE000 => vocab as u32 + (v as u32 & 0xF),
                v => v as u32 % vocab as u32,
            })
            .collect();
        seqs.push(seq);
    }
    let bad_id = seqs.iter().flatten().any(|&t| t as usize >= vocab);
    let Some(e) = models.embedders.get(which) else {
        let prompt = seqs.concat();
        let _ = models.generator.tokenizer().decode(&prompt, input.bool());
        let params = SamplingParams {
            max_tokens: 1 + input.u8() as usize % 3,
            ..Default::default()
        };
        let bad = bad_id || prompt.is_empty() || prompt.len() >= max_len;
        match models
            .generator
            .generate(&[Prompt::Ids(prompt)], &[params], |_, _| {})
        {
            Ok(_) => assert!(!bad, "generated from an invalid prompt"),
            Err(err) => assert!(bad, "a valid prompt failed: {err}"),
        }
        return;
    };
    for s in &seqs {
        let _ = e.tokenizer().decode(s, false);
    }
    let opts = EncodeOptions {
        normalize: [None, Some(true), Some(false)][input.u8() as usize % 3],
        batch_size: input.u8() as usize % 4,
        truncate_dim: input.opt(|i| i.u8() as usize),
        ..Default::default()
    };
    let bad = bad_id
        || seqs.iter().any(|s| s.is_empty() || s.len() > max_len)
        || opts.truncate_dim == Some(0)
        || (e.is_sparse() && !seqs.is_empty());
    match e.encode_ids(&seqs, &opts) {
        Ok(v) => {
            assert!(!bad, "embedded invalid ids");
            let dim = opts.truncate_dim.map_or(e.dim(), |d| d.min(e.dim()));
            assert_eq!(v.dim(), (seqs.len(), dim));
            assert!(v.iter().all(|x| x.is_finite()));
        }
        Err(err) => {
            assert!(bad, "valid ids failed: {err}");
            assert!(matches!(
                err,
                Error::InvalidInput(_) | Error::InputTooLong { .. } | Error::Unsupported(_)
            ));
        }
    }
}

/// The conversions and checks of the Python bindings' arguments, and the engine
/// options they become, by the first byte: load keywords (`dtype`,
/// `quality_floor`, `threads`), the batcher's, `timeout_s`, integer token ids,
/// ISA names, sampling keywords (checked, then a short generation), chat messages
/// through a chat template, and `encode`'s keywords.
pub fn python_args(data: &[u8]) {
    let mut input = Input(data);
    match input.u8() % 8 {
        0 => {
            let dtype = input.opt(Input::string);
            let floor = input.opt(Input::f32);
            let threads = input.opt(Input::usize);
            if let Ok((opts, t)) = crate::args::load_options(dtype.as_deref(), floor, threads) {
                assert!(t != Some(0));
                assert_eq!(
                    Some(opts.dtype),
                    dtype
                        .map_or(Ok(Precision::F32), |d| Precision::parse(&d))
                        .ok()
                );
            }
        }
        1 => {
            let _ = crate::args::batcher_config(input.usize(), input.f64(), input.usize());
        }
        2 => {
            let t = input.f64();
            let _ = crate::args::deadline(Some(t));
        }
        3 => {
            let wide = input.bool();
            let values = input.rest();
            let ids = if wide {
                let v: Vec<i64> = values
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                crate::args::token_ids(v.iter().copied(), 0)
                    .map(|ids| (ids, v.iter().all(|&x| u32::try_from(x).is_ok())))
            } else {
                let v: Vec<i32> = values
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                crate::args::token_ids(v.iter().copied(), 0)
                    .map(|ids| (ids, v.iter().all(|&x| x >= 0)))
            };
            if let Ok((_, valid)) = ids {
                assert!(valid);
            }
        }
        4 => {
            let name = input.string();
            if let Ok(isa) = Isa::parse(&name) {
                assert_eq!(isa.name(), name.trim().to_ascii_lowercase());
            }
            if let Ok(p) = Precision::parse(&name) {
                assert_eq!(Precision::parse(p.name()).ok(), Some(p));
            }
        }
        5 => sampling(&mut input),
        6 => {
            let generator = chat_generator();
            let n = input.u8() % 5;
            let messages: Vec<Message> = (0..n)
                .map(|_| Message::new(&input.string(), &input.string()))
                .collect();
            if let Ok(text) = generator.render_chat(&messages) {
                let ids = generator
                    .encode_prompt(&Prompt::Chat(messages))
                    .expect("a rendered chat tokenizes");
                let _ = generator.tokenizer().decode(&ids, false);
                let _ = text;
            }
        }
        _ => {
            let e = &id_models().embedders[0];
            let opts = EncodeOptions {
                normalize: [None, Some(true), Some(false)][input.u8() as usize % 3],
                truncate: input.bool(),
                batch_size: input.usize(),
                prompt_name: input.opt(Input::string),
                prompt: input.opt(Input::string),
                truncate_dim: input.opt(Input::usize),
            };
            let texts: Vec<String> = (0..input.u8() % 4).map(|_| input.string()).collect();
            if let Ok(v) = e.encode_with(&texts, &opts) {
                assert_eq!(v.nrows(), texts.len());
            }
        }
    }
}

fn chat_generator() -> &'static Generator {
    static G: OnceLock<Generator> = OnceLock::new();
    G.get_or_init(|| {
        Generator::load(test_data("decoders/qwen3_chat")).expect("the chat model loads")
    })
}

/// Sampling keywords as `Generator.generate` takes them, with a text prompt,
/// into a continuous batch (checked there against the vocabulary and the
/// context), then at most three steps of generation.
fn sampling(input: &mut Input<'_>) {
    let generator = &id_models().generator;
    let vocab = generator.model().config().vocab_size;
    let mut params = SamplingParams {
        max_tokens: input.usize(),
        temperature: input.f32(),
        top_k: input.usize(),
        top_p: input.f32(),
        min_p: input.f32(),
        repetition_penalty: input.f32(),
        presence_penalty: input.f32(),
        frequency_penalty: input.f32(),
        seed: input.opt(Input::u64),
        ignore_eos: input.bool(),
        logprobs: input.opt(|i| i.u8() as usize),
        ..Default::default()
    };
    for _ in 0..input.u8() % 4 {
        params
            .logit_bias
            .push((input.u32() % (vocab as u32 + 2), input.f32()));
    }
    for _ in 0..input.u8() % 3 {
        params.stop_token_ids.push(input.u32() % (vocab as u32 + 2));
    }
    for _ in 0..input.u8() % 3 {
        params.stop.push(input.string());
    }
    let prompt = input.string();
    let valid = params.validate(vocab).is_ok();
    let Ok(ids) = generator.encode_prompt(&Prompt::Text(prompt)) else {
        return;
    };
    let mut batch = generator.batch();
    match batch.add(generator.model(), ids, params) {
        Ok(_) => assert!(valid, "a batch took parameters `validate` refuses"),
        Err(_) => return,
    }
    for _ in 0..3 {
        if batch.is_empty() {
            break;
        }
        batch
            .step(generator.model(), generator.tokenizer())
            .expect("a step of a valid sequence");
    }
}
