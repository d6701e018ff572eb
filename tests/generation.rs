//! Text generation on the tiny decoder folders of `tests/data/decoders`: greedy
//! tokens equal transformers' `generate` (goldens of
//! `scripts/make_golden_generation.py`), alone and inside a continuous batch that
//! sequences join and leave; logits at every cached decode step within 1e-4 of a
//! full recompute without cache; chunked prefill changes nothing; seeded sampling
//! is reproducible across runs and batch compositions; stop strings never reach
//! the output; incremental detokenisation equals a full decode. The KV cache's
//! block pool: sequences spanning many blocks decode as a full recompute does,
//! blocks go back when sequences finish or are cancelled, the scheduler admits a
//! sequence only when its blocks fit (a larger one runs alone), and a bf16 cache
//! keeps every decode step's logits within a stated tolerance of the f32 cache.

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
        let mut cache = model.new_cache(all.len()).unwrap();
        let h = model.config().hidden_size;
        let mut fed = 0;
        for end in prompt.len()..all.len() {
            let new = &all[fed..end];
            let hidden = model
                .forward_cached(new, &[0, new.len()], &mut [&mut cache])
                .unwrap();
            fed = end;
            let got = model.lm_logits(&hidden[(new.len() - 1) * h..], 1).unwrap();
            let want = recomputed_logits(model, &all[..end]);
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
            let mut cache = model.new_cache(all.len()).unwrap();
            let mut fed = 0;
            for (step, w) in want.chunks_exact(vocab).enumerate() {
                let end = prompts[0].len() + step;
                let new = &all[fed..end];
                let hidden = model
                    .forward_cached(new, &[0, new.len()], &mut [&mut cache])
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
    let mut batch = Batch::new(g.eos_token_ids().to_vec(), g.kv_pool(64).unwrap());
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
    // A pool made for another model's shape is refused.
    let other = Generator::load(data().join("llama3")).unwrap();
    let mut wrong = g.batch_in(other.kv_pool(64).unwrap());
    let err = wrong
        .add(model, prompts_of(&g)[0].clone(), greedy(4))
        .unwrap_err();
    assert!(err.to_string().contains("KV pool"), "{err}");
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

/// The next-token logits of `ids` by a full forward pass without a cache.
fn recomputed_logits(model: &rinfer::models::Decoder, ids: &[u32]) -> Vec<f32> {
    let h = model.config().hidden_size;
    let full = model
        .forward(&TokenBatch {
            ids,
            type_ids: None,
            offsets: &[0, ids.len()],
        })
        .unwrap();
    model.lm_logits(&full[(ids.len() - 1) * h..], 1).unwrap()
}

fn pool_counts(pool: &rinfer::models::kv_cache::KvPool) -> (usize, usize, usize) {
    let s = pool.stats();
    (s.blocks_total, s.blocks_in_use, s.blocks_reserved)
}

/// Feeds `all` to a fresh cache of `dtype`, the prompt (`all[..prompt]`) in one
/// call then one token a step; the logits after each call.
fn stepped_logits(
    g: &Generator,
    all: &[u32],
    prompt: usize,
    dtype: rinfer::models::kv_cache::KvDtype,
) -> Vec<Vec<f32>> {
    use rinfer::models::kv_cache::KvPool;
    let model = g.model();
    let h = model.config().hidden_size;
    let mut cache = model.new_cache_with(all.len(), dtype).unwrap();
    let mut fed = 0;
    let mut out = Vec::new();
    for end in prompt..all.len() {
        let new = &all[fed..end];
        let hidden = model
            .forward_cached(new, &[0, new.len()], &mut [&mut cache])
            .unwrap();
        fed = end;
        // Blocks are taken as positions arrive, never ahead.
        assert_eq!(cache.len(), end);
        assert_eq!(cache.blocks(), KvPool::blocks_for(end));
        out.push(model.lm_logits(&hidden[(new.len() - 1) * h..], 1).unwrap());
    }
    out
}

#[test]
fn sequences_spanning_many_blocks_decode_as_a_full_recompute() {
    // Mistral and Gemma 3 have 8-position sliding windows, which cross block edges.
    for name in ["qwen3", "mistral", "gemma3"] {
        let g = Generator::load(data().join(name)).unwrap();
        let model = g.model();
        let prompt = &prompts_of(&g)[0];
        let out = g
            .generate(&[Prompt::Ids(prompt.clone())], &[greedy(140)], |_, _| {})
            .unwrap();
        let all: Vec<u32> = prompt.iter().chain(&out[0].tokens).copied().collect();
        assert!(
            all.len() >= 8 * rinfer::models::kv_cache::BLOCK_LEN,
            "{}",
            all.len()
        );
        let stepped = stepped_logits(&g, &all, prompt.len(), Default::default());
        for (k, got) in stepped.iter().enumerate() {
            let end = prompt.len() + k;
            let want = recomputed_logits(model, &all[..end]);
            common::assert_close(got, &want, 1e-4, &format!("{name}: logits at {end}"));
            assert_eq!(
                rinfer::generate::sampler::argmax(got),
                all[end],
                "{name}: token at {end}"
            );
        }
    }
}

#[test]
fn a_shared_pool_gives_blocks_back_when_sequences_finish_or_are_cancelled() {
    use rinfer::models::kv_cache::{KvPool, BLOCK_LEN};
    use std::collections::HashMap;
    let g = Generator::load(data().join("llama3")).unwrap();
    let model = g.model();
    let gold = golden(&data().join("llama3").join("generation.json"));
    let prompts = id_lists(&gold["prompts"]);
    let want = id_lists(&gold["greedy"]);
    let n = want[0].len();
    let needs: Vec<usize> = prompts
        .iter()
        .map(|p| KvPool::blocks_for(p.len() + n))
        .collect();
    // A pool exactly as large as the sequences' reservations, one to cancel included.
    let long = prompts.iter().max_by_key(|p| p.len()).unwrap().clone();
    let extra = KvPool::blocks_for((long.len() + 200).min(model.config().max_tokens()));
    let pool = g
        .kv_pool((needs.iter().sum::<usize>() + extra) * BLOCK_LEN)
        .unwrap();
    let total = pool.stats().blocks_total;
    assert_eq!(pool_counts(&pool), (total, 0, 0));
    let chunk = 5;
    let mut batch = g.batch_in(pool.clone());
    batch.prefill_chunk = chunk;
    // id -> (prompt length, tokens generated, still running)
    let mut seqs: HashMap<u64, (usize, usize, bool)> = HashMap::new();
    let mut ids = Vec::new();
    for p in &prompts {
        let id = batch.add(model, p.clone(), greedy(n)).unwrap();
        seqs.insert(id, (p.len(), 0, true));
        ids.push(id);
    }
    let doomed = batch.add(model, long.clone(), greedy(200)).unwrap();
    seqs.insert(doomed, (long.len(), 0, true));
    assert_eq!(
        pool_counts(&pool),
        (total, 0, total),
        "every block reserved, none taken yet"
    );
    let mut got = vec![Vec::new(); prompts.len()];
    let mut steps = 0;
    // Blocks the running sequences' caches hold after `steps` steps: a prompt is
    // fed `chunk` tokens a step, then each step adds the previous token.
    let held = |seqs: &HashMap<u64, (usize, usize, bool)>, steps: usize| -> usize {
        seqs.values()
            .filter(|s| s.2)
            .map(|&(p, gen, _)| {
                let len = if gen == 0 {
                    p.min(chunk * steps)
                } else {
                    p + gen - 1
                };
                KvPool::blocks_for(len)
            })
            .sum()
    };
    while !batch.is_empty() {
        for e in batch.step(model, g.tokenizer()).unwrap() {
            let s = seqs.get_mut(&e.seq).unwrap();
            s.1 += usize::from(e.token.is_some());
            s.2 = e.finish.is_none();
            if let Some(i) = ids.iter().position(|&x| x == e.seq) {
                got[i].extend(e.token);
            }
        }
        steps += 1;
        let (_, in_use, reserved) = pool_counts(&pool);
        assert_eq!(
            in_use,
            held(&seqs, steps),
            "blocks in use after step {steps}"
        );
        assert!(reserved <= total);
        if steps == 30 {
            // Cancelled mid-generation: its blocks, taken and reserved, come back.
            let (p, gen, _) = seqs[&doomed];
            assert!(p + gen - 1 > 2 * BLOCK_LEN, "it holds several blocks");
            assert!(batch.cancel(doomed));
            seqs.get_mut(&doomed).unwrap().2 = false;
            let after = pool_counts(&pool);
            assert_eq!(after.1, held(&seqs, steps), "its blocks are back");
            assert_eq!(after.2, reserved - extra, "its reservation is released");
        }
    }
    assert_eq!(
        got, want,
        "greedy tokens from a shared pool equal transformers'"
    );
    assert_eq!(
        pool_counts(&pool),
        (total, 0, 0),
        "every block back, none added"
    );
}

#[test]
fn the_scheduler_admits_a_sequence_only_when_its_blocks_fit() {
    use rinfer::engine::{Scheduler, SchedulerLimits};
    use rinfer::models::kv_cache::KvPool;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;
    let g = Arc::new(Generator::load(data().join("qwen3")).unwrap());
    let prompts = prompts_of(&g);
    let alone = |p: &Vec<u32>, n| {
        g.generate(&[Prompt::Ids(p.clone())], &[greedy(n)], |_, _| {})
            .unwrap()
            .remove(0)
            .tokens
    };
    // A budget of 10 blocks: the first sequence reserves all of them.
    let budget = 160;
    let (a_prompt, b_prompt) = (&prompts[1], &prompts[0]);
    let a_n = budget - a_prompt.len();
    let sched = Scheduler::start(
        g.clone(),
        SchedulerLimits {
            max_batch_tokens: budget,
            max_waiting: 4,
            prefill_chunk: 16,
        },
    );
    let pool = sched.kv_pool();
    assert_eq!(pool_counts(pool), (10, 0, 0));
    let mut a = sched.submit(a_prompt.clone(), greedy(a_n)).unwrap();
    let mut a_tokens: Vec<u32> = a.next_event().unwrap().unwrap().token.into_iter().collect();
    let b_need = KvPool::blocks_for(b_prompt.len() + 8);
    let mut b = sched.submit(b_prompt.clone(), greedy(8)).unwrap();
    let first_b = b.next_event().unwrap().unwrap();
    // B's first token came after every one of A's: A had finished (and given its
    // blocks back) before B joined.
    assert!(
        sched.stats().generated.load(Relaxed) > a_n,
        "the second sequence ran beside one that reserved the whole pool"
    );
    assert!(pool.stats().blocks_reserved <= b_need);
    while let Some(e) = a.next_event() {
        a_tokens.extend(e.unwrap().token);
    }
    let mut b_tokens: Vec<u32> = first_b.token.into_iter().collect();
    while let Some(e) = b.next_event() {
        b_tokens.extend(e.unwrap().token);
    }
    assert_eq!(a_tokens, alone(a_prompt, a_n));
    assert_eq!(b_tokens, alone(b_prompt, 8));
    assert_eq!(
        pool_counts(pool),
        (10, 0, 0),
        "finished sequences gave their blocks back"
    );
    // Two small ones share the pool at once.
    let before = sched.stats().steps.load(Relaxed);
    let mut c = sched.submit(b_prompt.clone(), greedy(30)).unwrap();
    let mut d = sched.submit(a_prompt.clone(), greedy(30)).unwrap();
    let (mut nc, mut nd) = (0, 0);
    while let Some(e) = c.next_event() {
        nc += usize::from(e.unwrap().token.is_some());
    }
    while let Some(e) = d.next_event() {
        nd += usize::from(e.unwrap().token.is_some());
    }
    assert_eq!((nc, nd), (30, 30));
    assert!(
        sched.stats().steps.load(Relaxed) - before < 55,
        "they decoded together"
    );
    // One larger than the whole pool still runs, alone, the pool growing for it
    // and shrinking back after.
    let big_n = 220 - a_prompt.len();
    let mut big = sched.submit(a_prompt.clone(), greedy(big_n)).unwrap();
    big.next_event().unwrap().unwrap();
    let grown = pool.stats().blocks_total;
    let mut big_tokens = 1;
    while let Some(e) = big.next_event() {
        big_tokens += usize::from(e.unwrap().token.is_some());
    }
    assert_eq!(big_tokens, big_n);
    assert_eq!(grown, KvPool::blocks_for(220));
    assert_eq!(pool_counts(pool), (10, 0, 0));
    // A caller that leaves mid-generation: its blocks come back.
    let mut e = sched.submit(a_prompt.clone(), greedy(100)).unwrap();
    for _ in 0..30 {
        e.next_event().unwrap().unwrap();
    }
    assert!(pool.stats().blocks_in_use >= 2);
    drop(e);
    let t = std::time::Instant::now();
    while sched.stats().active.load(Relaxed) > 0 {
        assert!(
            t.elapsed().as_secs() < 10,
            "a dropped stream's sequence keeps running"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(
        pool_counts(pool),
        (10, 0, 0),
        "a cancelled sequence gave its blocks back"
    );
}

/// Bound on |bf16-cache logit - f32-cache logit| at any decode step, as a
/// fraction of that step's largest |logit|. Measured on the five tiny models, 64
/// steps from each of three prompts (x86-64): worst 1.13e-2 (Qwen2; 0.042 in
/// absolute terms), mean 1.4e-3 (Gemma 3) to 4.5e-3 (Qwen2).
const BF16_CACHE_TOL: f32 = 2e-2;

/// Bound on the cosine between a step's bf16-cache and f32-cache logits; measured
/// worst 0.99993 (Qwen2).
const BF16_CACHE_MIN_COSINE: f32 = 0.9998;

#[test]
fn a_bf16_cache_keeps_logits_close_to_the_f32_cache() {
    use rinfer::generate::sampler::argmax;
    use rinfer::models::kv_cache::KvDtype;
    let mut worst = 0f32;
    let mut compared = 0;
    for name in MODELS {
        let g = Generator::load(data().join(name)).unwrap();
        for prompt in prompts_of(&g) {
            let out = g
                .generate(&[Prompt::Ids(prompt.clone())], &[greedy(64)], |_, _| {})
                .unwrap();
            let all: Vec<u32> = prompt.iter().chain(&out[0].tokens).copied().collect();
            let exact = stepped_logits(&g, &all, prompt.len(), KvDtype::F32);
            let narrow = stepped_logits(&g, &all, prompt.len(), KvDtype::Bf16);
            for (step, (want, got)) in exact.iter().zip(&narrow).enumerate() {
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
                let diff = want
                    .iter()
                    .zip(got)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                let rel = diff / scale;
                worst = worst.max(rel);
                assert!(
                    rel <= BF16_CACHE_TOL,
                    "{name}: step {step}: bf16-cache logits off by {diff} (max |logit| {scale})"
                );
                let norm = |x: &[f32]| x.iter().map(|v| v * v).sum::<f32>().sqrt();
                let cos = want.iter().zip(got).map(|(a, b)| a * b).sum::<f32>()
                    / (norm(want) * norm(got));
                assert!(
                    cos >= BF16_CACHE_MIN_COSINE,
                    "{name}: step {step}: cosine {cos} to the f32-cache logits"
                );
                // Where f32's top-2 margin is wider than twice the difference, the
                // greedy token is the same.
                let mut sorted = want.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                if sorted[0] - sorted[1] > 2.0 * diff {
                    assert_eq!(
                        argmax(got),
                        argmax(want),
                        "{name}: greedy token at step {step}"
                    );
                    compared += 1;
                }
            }
        }
    }
    eprintln!("bf16 KV cache: worst logit difference {worst:.2e} of the largest |logit|; {compared} greedy tokens compared");
    assert!(
        compared > 500,
        "too few steps with a clear greedy margin: {compared}"
    );
    // Through the generator: a bf16 cache generates, and its pool stores bf16.
    let g = Generator::load(data().join("gemma3"))
        .unwrap()
        .with_kv_cache_dtype(KvDtype::Bf16);
    let batch = g.batch();
    assert_eq!(batch.pool().dtype(), KvDtype::Bf16);
    let out = g
        .generate(
            &[Prompt::Ids(prompts_of(&g)[0].clone())],
            &[greedy(20)],
            |_, _| {},
        )
        .unwrap();
    assert_eq!(out[0].tokens.len(), 20);
}
