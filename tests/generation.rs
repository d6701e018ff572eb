//! Text generation on the tiny decoder folders of `tests/data/decoders`: greedy
//! tokens equal transformers' `generate` (goldens of
//! `scripts/make_golden_generation.py`), alone and inside a continuous batch that
//! sequences join and leave; logits at every cached decode step within 1e-4 of a
//! full recompute without cache; chunked prefill changes nothing; seeded sampling
//! is reproducible across runs and batch compositions; stop strings never reach
//! the output; incremental detokenisation equals a full decode.

mod common;

use std::path::PathBuf;

use common::{f32s, golden, id_lists, root};
use rinfer::generate::{Batch, Detokenizer};
use rinfer::models::TokenBatch;
use rinfer::{FinishReason, Generator, Prompt, SamplingParams};

fn data() -> PathBuf {
    root().join("tests/data/decoders")
}

const MODELS: [&str; 5] = ["qwen3", "qwen2", "llama3", "mistral", "gemma3"];

fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams {
        max_tokens,
        ignore_eos: true,
        ..Default::default()
    }
}

fn prompts_of(g: &rinfer::Generator) -> Vec<Vec<u32>> {
    let texts = [
        "The cat",
        "A model that runs on every CPU is",
        "Rust and Python: one engine, many services, and the numbers to show it",
    ];
    texts
        .iter()
        .map(|t| g.encode_prompt(&Prompt::Text(t.to_string())).unwrap())
        .collect()
}

#[test]
fn cached_decode_logits_match_a_full_recompute() {
    for name in MODELS {
        let g = Generator::load(data().join(name)).unwrap();
        let model = g.model();
        let prompt = &prompts_of(&g)[1];
        let out = g
            .generate(&[Prompt::Ids(prompt.clone())], &[greedy(24)], |_, _| {})
            .unwrap();
        let all: Vec<u32> = prompt.iter().chain(&out[0].tokens).copied().collect();
        // Step by step with the cache, compare each step's logits with a full pass.
        let mut cache = model.new_cache(all.len());
        let h = model.config().hidden_size;
        let mut fed = 0;
        for end in prompt.len()..all.len() {
            let new = &all[fed..end];
            let hidden = model
                .forward_cached(new, &[0, new.len()], std::slice::from_mut(&mut cache))
                .unwrap();
            fed = end;
            let got = model.lm_logits(&hidden[(new.len() - 1) * h..], 1).unwrap();
            let full = model
                .forward(&TokenBatch {
                    ids: &all[..end],
                    type_ids: None,
                    offsets: &[0, end],
                })
                .unwrap();
            let want = model.lm_logits(&full[(end - 1) * h..], 1).unwrap();
            common::assert_close(&got, &want, 1e-4, &format!("{name}: logits at {end}"));
            assert_eq!(
                rinfer::generate::sampler::argmax(&got),
                all[end],
                "{name}: greedy token at {end}"
            );
        }
    }
}

#[test]
fn greedy_generation_matches_transformers() {
    let mut seen = 0;
    for name in MODELS {
        let path = data().join(name).join("generation.json");
        if !path.is_file() {
            continue;
        }
        let gold = golden(&path);
        let g = Generator::load(data().join(name)).unwrap();
        let prompts = id_lists(&gold["prompts"]);
        let want = id_lists(&gold["greedy"]);
        let n = want[0].len();
        // Alone.
        for (p, w) in prompts.iter().zip(&want) {
            let out = g
                .generate(&[Prompt::Ids(p.clone())], &[greedy(n)], |_, _| {})
                .unwrap();
            assert_eq!(&out[0].tokens, w, "{name}: greedy tokens of {p:?}");
            assert_eq!(out[0].finish_reason, FinishReason::Length);
        }
        // Together, sequences joining while others decode and leaving early.
        let model = g.model();
        let mut batch = g.batch();
        batch.prefill_chunk = 7;
        let mut got: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
        let mut ids = Vec::new();
        let mut steps = 0;
        loop {
            if ids.len() < prompts.len() && steps % 5 == 0 {
                let i = ids.len();
                // The last one stops early: a sequence leaving mid-batch.
                let max = if i == prompts.len() - 1 { n / 2 } else { n };
                ids.push(batch.add(model, prompts[i].clone(), greedy(max)).unwrap());
            }
            if batch.is_empty() && ids.len() == prompts.len() {
                break;
            }
            for e in batch.step(model, g.tokenizer()).unwrap() {
                let i = ids.iter().position(|&x| x == e.seq).unwrap();
                got[i].extend(e.token);
            }
            steps += 1;
        }
        for (i, w) in want.iter().enumerate() {
            let expect = if i == prompts.len() - 1 {
                &w[..n / 2]
            } else {
                &w[..]
            };
            assert_eq!(got[i], expect, "{name}: sequence {i} in a continuous batch");
        }
        if let Some(rows) = gold.get("step_logits") {
            let greedy0 = &want[0];
            let want = f32s(rows);
            let vocab = model.config().vocab_size;
            let h = model.config().hidden_size;
            let all: Vec<u32> = prompts[0].iter().chain(greedy0).copied().collect();
            let mut cache = model.new_cache(all.len());
            let mut fed = 0;
            for (step, w) in want.chunks_exact(vocab).enumerate() {
                let end = prompts[0].len() + step;
                let new = &all[fed..end];
                let hidden = model
                    .forward_cached(new, &[0, new.len()], std::slice::from_mut(&mut cache))
                    .unwrap();
                fed = end;
                let got = model.lm_logits(&hidden[(new.len() - 1) * h..], 1).unwrap();
                common::assert_close(&got, w, 1e-4, &format!("{name}: step {step} logits"));
            }
        }
        seen += 1;
    }
    assert!(
        seen >= 4,
        "generation goldens missing under {}",
        data().display()
    );
}

#[test]
fn chunked_prefill_and_batching_change_nothing() {
    let g = Generator::load(data().join("mistral")).unwrap();
    let prompts = prompts_of(&g);
    let alone: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            g.generate(&[Prompt::Ids(p.clone())], &[greedy(20)], |_, _| {})
                .unwrap()
                .remove(0)
                .tokens
        })
        .collect();
    for chunk in [1, 3, 1000] {
        let model = g.model();
        let mut batch = g.batch();
        batch.prefill_chunk = chunk;
        let ids: Vec<u64> = prompts
            .iter()
            .map(|p| batch.add(model, p.clone(), greedy(20)).unwrap())
            .collect();
        let mut got = vec![Vec::new(); prompts.len()];
        while !batch.is_empty() {
            for e in batch.step(model, g.tokenizer()).unwrap() {
                got[ids.iter().position(|&x| x == e.seq).unwrap()].extend(e.token);
            }
        }
        assert_eq!(got, alone, "prefill chunk {chunk}");
    }
}

#[test]
fn seeded_sampling_is_reproducible_across_batch_compositions() {
    let g = Generator::load(data().join("qwen3")).unwrap();
    let prompts = prompts_of(&g);
    let params = |seed| SamplingParams {
        max_tokens: 16,
        temperature: 0.9,
        top_k: 50,
        top_p: 0.95,
        min_p: 0.01,
        repetition_penalty: 1.1,
        presence_penalty: 0.2,
        frequency_penalty: 0.1,
        seed: Some(seed),
        ignore_eos: true,
        ..Default::default()
    };
    let alone = g
        .generate(&[Prompt::Ids(prompts[0].clone())], &[params(7)], |_, _| {})
        .unwrap()
        .remove(0);
    let again = g
        .generate(&[Prompt::Ids(prompts[0].clone())], &[params(7)], |_, _| {})
        .unwrap()
        .remove(0);
    assert_eq!(alone.tokens, again.tokens, "same seed, same tokens");
    let mixed = g
        .generate(
            &[
                Prompt::Ids(prompts[1].clone()),
                Prompt::Ids(prompts[0].clone()),
                Prompt::Ids(prompts[2].clone()),
            ],
            &[params(1), params(7), params(3)],
            |_, _| {},
        )
        .unwrap();
    assert_eq!(mixed[1].tokens, alone.tokens, "same seed inside a batch");
    let other = g
        .generate(&[Prompt::Ids(prompts[0].clone())], &[params(8)], |_, _| {})
        .unwrap()
        .remove(0);
    assert_ne!(other.tokens, alone.tokens, "another seed, other tokens");
}

#[test]
fn stop_strings_end_the_text_and_never_appear() {
    let g = Generator::load(data().join("qwen3")).unwrap();
    let prompt = Prompt::Ids(prompts_of(&g)[2].clone());
    let free = g
        .generate(std::slice::from_ref(&prompt), &[greedy(40)], |_, _| {})
        .unwrap()
        .remove(0);
    // A stop string taken from the middle of the free text (crossing tokens).
    let chars: Vec<char> = free.text.chars().collect();
    assert!(chars.len() > 12, "free text too short: {:?}", free.text);
    let stop: String = chars[8..11].iter().collect();
    let params = SamplingParams {
        stop: vec![stop.clone()],
        ..greedy(40)
    };
    let mut streamed = String::new();
    let out = g
        .generate(&[prompt], &[params], |_, e| streamed.push_str(&e.text))
        .unwrap()
        .remove(0);
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert!(
        !out.text.contains(&stop),
        "{:?} contains {stop:?}",
        out.text
    );
    let at = free.text.find(&stop).unwrap();
    assert_eq!(out.text, free.text[..at], "text cut at the stop string");
    assert_eq!(streamed, out.text, "streamed deltas add up to the text");
}

#[test]
fn streamed_text_equals_a_full_decode() {
    for name in ["qwen3", "mistral", "gemma3"] {
        let g = Generator::load(data().join(name)).unwrap();
        let tok = g.tokenizer();
        let vocab = g.model().config().vocab_size as u64;
        let mut state = 0x1234_5678u64 ^ vocab;
        for round in 0..20 {
            let ids: Vec<u32> = (0..40)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 33) % vocab) as u32
                })
                .collect();
            let mut d = Detokenizer::new();
            let mut text = String::new();
            for &id in &ids {
                text.push_str(&d.push(tok, id).unwrap());
            }
            text.push_str(&d.finish(tok).unwrap());
            assert_eq!(
                text,
                tok.decode(&ids, true).unwrap(),
                "{name}: round {round}"
            );
        }
    }
}

#[test]
fn bad_requests_are_refused_and_cancel_frees() {
    let g = Generator::load(data().join("qwen3")).unwrap();
    let model = g.model();
    let mut batch = Batch::new(g.eos_token_ids().to_vec());
    let p = prompts_of(&g)[0].clone();
    for bad in [
        SamplingParams {
            max_tokens: 0,
            ..Default::default()
        },
        SamplingParams {
            temperature: -1.0,
            ..Default::default()
        },
        SamplingParams {
            top_p: 0.0,
            ..Default::default()
        },
        SamplingParams {
            logit_bias: vec![(1 << 30, 1.0)],
            ..Default::default()
        },
    ] {
        assert!(batch.add(model, p.clone(), bad).is_err());
    }
    assert!(batch.add(model, vec![], greedy(4)).is_err());
    let long = vec![1u32; model.config().max_tokens()];
    assert!(batch.add(model, long, greedy(4)).is_err());
    let id = batch.add(model, p, greedy(100)).unwrap();
    batch.step(model, g.tokenizer()).unwrap();
    assert!(batch.reserved_positions() > 0);
    assert!(batch.cancel(id));
    assert!(batch.is_empty());
    assert_eq!(batch.reserved_positions(), 0);
    let err = Generator::load(root().join("tests/data/families/xlmr-mean")).unwrap_err();
    assert!(err.to_string().contains("encoder"), "{err}");
}

#[test]
fn chat_templates_render_as_transformers_and_stop_at_eos() {
    let dir = data().join("qwen3_chat");
    let gold = golden(&dir.join("generation.json"));
    let g = Generator::load(&dir).unwrap();
    for case in gold["chat_cases"].as_array().unwrap() {
        let messages: Vec<rinfer::Message> = case["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                rinfer::Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap())
            })
            .collect();
        assert_eq!(
            g.render_chat(&messages).unwrap(),
            case["text"].as_str().unwrap()
        );
        let prompt = Prompt::Chat(messages);
        let ids: Vec<u32> = case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(g.encode_prompt(&prompt).unwrap(), ids);
        let want: Vec<u32> = case["greedy"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let params = SamplingParams {
            max_tokens: want.len(),
            ..Default::default()
        };
        let out = g
            .generate(&[prompt], &[params], |_, _| {})
            .unwrap()
            .remove(0);
        match case["first_eos_index"].as_u64() {
            Some(i) => {
                assert_eq!(
                    out.tokens,
                    want[..=i as usize],
                    "stops at the end-of-sequence token"
                );
                assert_eq!(out.finish_reason, FinishReason::Stop);
            }
            None => {
                assert_eq!(out.tokens, want);
                assert_eq!(out.finish_reason, FinishReason::Length);
            }
        }
    }
}

#[test]
fn the_shared_scheduler_batches_callers_and_frees_the_ones_that_leave() {
    use rinfer::engine::{Scheduler, SchedulerLimits};
    use std::sync::Arc;
    let g = Arc::new(Generator::load(data().join("llama3")).unwrap());
    let gold = golden(&data().join("llama3").join("generation.json"));
    let prompts = id_lists(&gold["prompts"]);
    let want = id_lists(&gold["greedy"]);
    let sched = Arc::new(Scheduler::start(g.clone(), SchedulerLimits::default()));
    let handles: Vec<_> = prompts
        .iter()
        .cloned()
        .map(|p| {
            let sched = sched.clone();
            std::thread::spawn(move || {
                let mut s = sched.submit(p, greedy(64)).unwrap();
                let mut tokens = Vec::new();
                while let Some(e) = s.next_event() {
                    tokens.extend(e.unwrap().token);
                }
                tokens
            })
        })
        .collect();
    let got: Vec<Vec<u32>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        got, want,
        "concurrent callers sharing the batch get transformers' tokens"
    );
    assert!(
        sched
            .stats()
            .steps
            .load(std::sync::atomic::Ordering::Relaxed)
            < 4 * 64
    );
    // A caller that leaves: its sequence ends and frees its cache.
    let mut s = sched.submit(prompts[0].clone(), greedy(1000)).unwrap();
    s.next_event().unwrap().unwrap();
    drop(s);
    let t = std::time::Instant::now();
    while sched
        .stats()
        .active
        .load(std::sync::atomic::Ordering::Relaxed)
        > 0
    {
        assert!(
            t.elapsed().as_secs() < 10,
            "a dropped stream's sequence keeps running"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        sched
            .stats()
            .reserved
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // Past the waiting queue: refused at once.
    let tight = Scheduler::start(
        g.clone(),
        SchedulerLimits {
            max_batch_tokens: 1,
            max_waiting: 0,
            prefill_chunk: 16,
        },
    );
    let mut first = tight.submit(prompts[0].clone(), greedy(200)).unwrap();
    first.next_event().unwrap().unwrap();
    let mut second = tight.submit(prompts[1].clone(), greedy(4)).unwrap();
    let err = second.next_event().unwrap().unwrap_err();
    assert!(matches!(err, rinfer::Error::Overloaded { .. }), "{err}");
}
