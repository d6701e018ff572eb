//! Every committed fuzz input, in the ordinary `cargo test`: the seed corpus of
//! each target (`tests/fuzz/corpus/<target>/`) and every input that once crashed
//! it (`tests/fuzz/regressions/<target>/`), fed to the same
//! `rinfer::fuzzing::<target>` the fuzz target calls (`tests/fuzz/`, nightly,
//! `scripts/test_fuzz.sh`). A panic on any of them fails the test, naming the file.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut files = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        for entry in dir {
            let path = entry.expect("a readable folder").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, body) = rinfer::fuzzing::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a fuzz target of that name");
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no committed input for fuzz target `{target}` (tests/fuzz/corpus/{target}/)"
    );
    let mut failed = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).expect("a readable input");
        if catch_unwind(AssertUnwindSafe(|| body(&bytes))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "fuzz target `{target}` panicked on {} of {} inputs:\n  {}",
        failed.len(),
        files.len(),
        failed.join("\n  ")
    );
}

/// Each body is a fuzz target (a one-line call of it) with a test below.
#[test]
fn every_target_is_fuzzed_and_replayed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let this = std::fs::read_to_string(root.join("tests/fuzz_regressions.rs")).unwrap();
    let manifest = std::fs::read_to_string(root.join("tests/fuzz/Cargo.toml")).unwrap();
    for (name, _) in rinfer::fuzzing::TARGETS {
        let src = root.join(format!("tests/fuzz/fuzz_targets/{name}.rs"));
        let text =
            std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        assert!(text.contains(&format!("rinfer::fuzzing::{name}(data)")));
        assert!(manifest.contains(&format!("name = \"{name}\"")));
        assert!(this.contains(&format!("replay(\"{name}\")")));
    }
}

#[test]
fn safetensors_header() {
    replay("safetensors_header");
}

#[test]
fn model_config() {
    replay("model_config");
}

#[test]
fn tokenizer() {
    replay("tokenizer");
}

#[test]
fn encode_ids() {
    replay("encode_ids");
}

#[test]
fn python_args() {
    replay("python_args");
}

/// Found by the `tokenizer` target (its slowest inputs): tokenizers truncates a
/// pair by building every combination of the two texts' overflowing windows,
/// quadratic in their lengths (1.2 s for two texts of 3,500 tokens, gigabytes for
/// long ones). rinfer truncates pairs itself, in linear time, to the same tokens.
#[test]
fn long_pairs_truncate_in_linear_time_to_the_tokens_tokenizers_keeps() {
    use tokenizers::{TruncationParams, TruncationStrategy};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for dir in [
        "models/reranker",
        "families/xlmr-reranker",
        "decoders/qwen3",
    ] {
        let path = root.join(dir).join("tokenizer.json");
        let ours = rinfer::tokenizer::Tokenizer::from_file(&path, 32).unwrap();
        let mut theirs = tokenizers::Tokenizer::from_file(&path).unwrap();
        theirs.with_padding(None);
        theirs
            .with_truncation(Some(TruncationParams {
                max_length: 32,
                strategy: TruncationStrategy::LongestFirst,
                ..Default::default()
            }))
            .unwrap();
        for (a, b) in [(3, 40), (40, 3), (17, 18), (60, 60), (0, 90), (5, 0)] {
            let a = vec!["the cat sat"; a].join(" ");
            let b = vec!["on a mat, tokenized"; b].join(" ");
            let want = theirs.encode((a.as_str(), b.as_str()), true).unwrap();
            let got = ours.encode_pairs(&[(&a, &b)], true).unwrap();
            assert_eq!(got.ids, want.get_ids(), "{dir}");
            assert_eq!(got.type_ids, want.get_type_ids(), "{dir}");
        }
        let long = vec!["tokenization"; 20_000].join(" ");
        let start = std::time::Instant::now();
        let got = ours.encode_pairs(&[(&long, &long)], true).unwrap();
        assert_eq!(got.ids.len(), 32);
        let took = start.elapsed();
        assert!(took.as_secs() < 20, "{dir}: {took:?} for a long pair");
    }
}

/// Found by the `tokenizer` target: a limit below the special tokens every input
/// gets (`max_seq_length` 1 for BERT's `[CLS] [SEP]`, or below a pair's 3) made
/// tokenizers subtract with overflow (a panic, or no truncation at all in release
/// builds). Now a typed error.
#[test]
fn a_limit_below_the_special_tokens_is_an_error() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/reranker/tokenizer.json");
    let err = rinfer::tokenizer::Tokenizer::from_file(&path, 1).unwrap_err();
    assert!(matches!(err, rinfer::Error::Config { .. }), "{err}");
    let tok = rinfer::tokenizer::Tokenizer::from_file(&path, 2).unwrap();
    assert_eq!(tok.encode(&["a b"], true).unwrap().ids.len(), 2);
    let err = tok.encode_pairs(&[("a", "b")], true).unwrap_err();
    assert!(matches!(err, rinfer::Error::InvalidInput(_)), "{err}");
    assert!(matches!(
        tok.set_max_len(1).unwrap_err(),
        rinfer::Error::InvalidInput(_)
    ));
    assert_eq!(tok.max_len(), 2);
}

/// Found by the `python_args` target: `max_tokens` near `usize::MAX` (Python's
/// `generate(max_tokens=2**64 - 1)`) overflowed `prompt + max_tokens` where a batch
/// sizes a sequence's cache and where the scheduler reserves positions (a panic
/// with overflow checks; without them, a cache smaller than the prompt). It now
/// generates to the model's length.
#[test]
fn max_tokens_near_usize_max_generates_to_the_models_length() {
    use rinfer::engine::{Scheduler, SchedulerLimits};
    use rinfer::{FinishReason, Generator, Prompt, SamplingParams};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/decoders/qwen3");
    let generator = std::sync::Arc::new(Generator::load(dir).unwrap());
    let prompt = generator
        .encode_prompt(&Prompt::Text("Once upon a time".into()))
        .unwrap();
    let context = generator.model().config().max_tokens();
    let params = SamplingParams {
        max_tokens: usize::MAX,
        ignore_eos: true,
        ..Default::default()
    };
    let done = generator
        .generate(
            &[Prompt::Ids(prompt.clone())],
            std::slice::from_ref(&params),
            |_, _| {},
        )
        .unwrap();
    assert_eq!(done[0].finish_reason, FinishReason::Length);
    assert_eq!(prompt.len() + done[0].tokens.len(), context);
    let sched = Scheduler::start(generator, SchedulerLimits::default());
    let mut stream = sched.submit(prompt.clone(), params).unwrap();
    let (mut tokens, mut finish) = (0, None);
    while let Some(event) = stream.next_event() {
        let event = event.unwrap();
        tokens += usize::from(event.token.is_some());
        finish = event.finish.or(finish);
    }
    assert_eq!(finish, Some(FinishReason::Length));
    assert_eq!(prompt.len() + tokens, context);
}
