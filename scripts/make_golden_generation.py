"""Makes the greedy-generation goldens of the decoder folders made by make_golden_decoders.py.

For qwen3, qwen2, llama3, mistral and gemma3: 4 prompts (ragged lengths), the 64 new token ids of
transformers' greedy `generate` (one prompt at a time, no padding, EOS ignored), and for prompt 0 the
full-vocabulary logits at the last prompt position and after each of the first 4 generated tokens. Also
makes tests/data/decoders/qwen3_chat/: the qwen3 folder with a Qwen ChatML chat template and
`<|im_end|>` as generation eos, with the rendered chats, their ids and greedy continuations.

Every generated token is checked against the argmax of a full forward without cache over the prefix
(plain argmax decoding, no logits processor at work), and each sequence records the smallest gap
between its top-2 logits over its steps (`min_top2_gap`); a gap under TIE_GAP fails the run.
tests/data/decoders/README.md documents the generation.json schema.

Run in the bench environment after make_golden_decoders.py (the folders must exist):
    .bench-venv/bin/python scripts/make_golden_generation.py
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import base64
import json
import pathlib
import platform
import re
import shutil

import numpy as np
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "decoders"
SCHEMA = "rinfer-decoder-generation/1"
FOLDERS = ["qwen3", "qwen2", "llama3", "mistral", "gemma3"]
NEW_TOKENS = 64
CHAT_NEW_TOKENS = 32
STEP_ROWS = 5  # logits at the last prompt position, then after each of the first 4 generated tokens
TIE_GAP = 1e-5  # top-2 logits closer than this: the argmax is not a reliable golden
PAD_TOKEN_ID = 0  # given to generate (some folders have no pad token); batch 1 without padding never uses it

VERSIONS = {
    "python": platform.python_version(),
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "tokenizers": tokenizers.__version__,
}

# Prompt 0 first: the one whose step logits are recorded; 12 to 17 tokens, so that in mistral and gemma3
# (sliding window 8) its prompt already fills the window. Then ~3, ~10 and ~30 tokens.
PROMPT_TEXTS = [
    "The cat sees the red ball today.",
    "the cat",
    "The cat sees a dog.",
    "The quick brown fox jumps over the lazy dog, and the old man watches.",
]

# Qwen2.5 / Qwen3 ChatML without tools (and without Qwen2.5's default system message or Qwen3's thinking
# handling): `<|im_start|>{role}\n{content}<|im_end|>\n` per message, `<|im_start|>assistant\n` to prompt.
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
CHAT_CASES = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello world!"},
    ],
    [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris is the capital of France."},
        {"role": "user", "content": "And of Germany?"},
    ],
]

# Plain argmax decoding. Passed as the model's own generation_config AND to generate(): generate() fills the
# None fields of a passed GenerationConfig from model.generation_config (the folder's generation_config.json,
# eos_token_id included), so a GenerationConfig(eos_token_id=None) alone would not drop the folder's eos.
GREEDY = {
    "do_sample": False,
    "num_beams": 1,
    "eos_token_id": None,
    "pad_token_id": PAD_TOKEN_ID,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "renormalize_logits": False,
    "remove_invalid_values": False,
    "use_cache": True,
}


def b64(a: torch.Tensor) -> str:
    """float32 little-endian bytes, row-major, base64 (tests/common `f32s` decodes it)."""
    return base64.b64encode(np.ascontiguousarray(a.detach().float().numpy(), dtype="<f4").tobytes()).decode()


def f32(x) -> float:
    return float(np.float32(float(x)))


def load(folder: pathlib.Path):
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    return model.eval()


def tokenize(folder: pathlib.Path, texts: list[str]) -> list[list[int]]:
    """AutoTokenizer ids, asserted equal to a plain tokenizer.json reader's."""
    auto = AutoTokenizer.from_pretrained(folder)
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    out = []
    for t in texts:
        ids = auto(t, add_special_tokens=True)["input_ids"]
        assert ids == raw.encode(t, add_special_tokens=True).ids, (folder.name, t)
        out.append(ids)
    return out


def no_cache_logits(model, ids: list[int]) -> torch.Tensor:
    """Logits at the last position of a full forward over ids, without KV cache."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1]


def greedy(model, ids: list[int], n: int) -> tuple[list[int], float, list[torch.Tensor]]:
    """n new tokens of generate() (batch 1, no padding), checked step by step against the argmax of full
    forwards without cache. Returns the tokens, the smallest top-2 logit gap and the no-cache logits."""
    config = GenerationConfig(**GREEDY, max_new_tokens=n, min_new_tokens=n)
    model.generation_config = config
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            generation_config=config,
            return_dict_in_generate=True,
            output_scores=True,
            output_logits=True,
        )
    seq = out.sequences[0].tolist()
    assert seq[: len(ids)] == ids
    new = seq[len(ids) :]
    assert len(new) == n, (len(new), n)
    gap = float("inf")
    rows = []
    for t, (score, logit) in enumerate(zip(out.scores, out.logits)):
        # no logits processor touched the scores: plain argmax of the raw logits
        assert torch.equal(score, logit), f"step {t}: processed scores differ from the logits"
        ref = no_cache_logits(model, ids + new[:t])
        rows.append(ref)
        top = torch.topk(ref, 2)
        step_gap = (top.values[0] - top.values[1]).item()
        gap = min(gap, step_gap)
        assert int(top.indices[0]) == new[t], f"step {t}: generate {new[t]} != no-cache argmax {int(top.indices[0])}"
        err = (logit[0] - ref).abs().max().item() / ref.abs().max().item()
        assert err < 1e-4, f"step {t}: cached vs no-cache logits differ by {err:.3g} relative"
        assert step_gap >= TIE_GAP, f"step {t}: near-tie (top-2 gap {step_gap:.3g}); pick other prompts"
    return new, gap, rows


def first_index(tokens: list[int], token: int) -> int | None:
    return tokens.index(token) if token in tokens else None


def write_json(path: pathlib.Path, data: dict) -> None:
    text = json.dumps(data, indent=1, ensure_ascii=False)
    # lists of numbers (token ids) on one line
    text = re.sub(
        r"\[\s*(-?[\d.e+-]+(?:,\s*-?[\d.e+-]+)*)\s*\]", lambda m: "[" + re.sub(r",\s*", ", ", m[1]) + "]", text
    )
    path.write_text(text + "\n")


def build(name: str) -> None:
    folder = OUT / name
    prompts = tokenize(folder, PROMPT_TEXTS)
    model = load(folder)
    cfg = json.loads((folder / "generation_config.json").read_text())
    window = json.loads((folder / "config.json").read_text()).get("sliding_window")
    greedy_ids, gaps, step_logits = [], [], None
    for i, ids in enumerate(prompts):
        new, gap, rows = greedy(model, ids, NEW_TOKENS)
        greedy_ids.append(new)
        gaps.append(f32(gap))
        if i == 0:
            step_logits = torch.stack(rows[:STEP_ROWS])
    if name == "mistral":
        assert window == 8 and len(prompts[0]) > window, "prompt 0 must run past the sliding window"
    vocab = step_logits.shape[1]
    assert vocab == model.config.vocab_size
    g = {
        "schema": SCHEMA,
        "name": name,
        "versions": VERSIONS,
        "folder_generation_config": {k: cfg.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")},
        "generate": {
            "max_new_tokens": NEW_TOKENS,
            "min_new_tokens": NEW_TOKENS,
            "do_sample": False,
            "eos_token_id": None,
            "pad_token_id": PAD_TOKEN_ID,
        },
        "prompt_texts": PROMPT_TEXTS,
        "prompts": prompts,
        "greedy": greedy_ids,
        "min_top2_gap": gaps,
        "first_eos_index": [first_index(s, cfg["eos_token_id"]) for s in greedy_ids],
        "step_logits_shape": [STEP_ROWS, vocab],
        "step_logits": b64(step_logits),
    }
    write_json(folder / "generation.json", g)
    print(f"{name}: prompt lens {[len(p) for p in prompts]}, min top-2 gaps {[f'{x:.3g}' for x in gaps]}")


def build_qwen3_chat() -> None:
    src, folder = OUT / "qwen3", OUT / "qwen3_chat"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    for f in sorted(src.iterdir()):
        if f.is_file() and f.name not in ("golden.json", "generation.json"):
            shutil.copyfile(f, folder / f.name)
    tok_cfg = json.loads((folder / "tokenizer_config.json").read_text())
    tok_cfg["chat_template"] = QWEN_CHAT_TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False) + "\n")
    tok = AutoTokenizer.from_pretrained(folder)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    gen_cfg = json.loads((folder / "generation_config.json").read_text())
    gen_cfg["eos_token_id"] = im_end
    (folder / "generation_config.json").write_text(json.dumps(gen_cfg, indent=2) + "\n")
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    model = load(folder)
    cases = []
    for messages in CHAT_CASES:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        want = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        assert text == want + "<|im_start|>assistant\n", repr(text)
        ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        if not isinstance(ids, list):  # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        assert ids == raw.encode(text, add_special_tokens=False).ids == raw.encode(text).ids
        new, gap, _ = greedy(model, ids, CHAT_NEW_TOKENS)
        case = {"messages": messages, "text": text, "input_ids": ids, "greedy": new, "min_top2_gap": f32(gap)}
        case["first_eos_index"] = first_index(new, im_end)
        cases.append(case)
    g = {
        "schema": SCHEMA,
        "name": "qwen3_chat",
        "versions": VERSIONS,
        "chat_template": QWEN_CHAT_TEMPLATE,
        "eos_token_id": im_end,
        "generate": {
            "max_new_tokens": CHAT_NEW_TOKENS,
            "min_new_tokens": CHAT_NEW_TOKENS,
            "do_sample": False,
            "eos_token_id": None,
            "pad_token_id": PAD_TOKEN_ID,
            "add_generation_prompt": True,
        },
        "chat_cases": cases,
    }
    write_json(folder / "generation.json", g)
    print(f"qwen3_chat: lens {[len(c['input_ids']) for c in cases]}, gaps {[c['min_top2_gap'] for c in cases]}")


def main() -> None:
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(1)
    for name in FOLDERS:
        build(name)
    build_qwen3_chat()
    new = [OUT / n / "generation.json" for n in FOLDERS] + [p for p in (OUT / "qwen3_chat").iterdir()]
    print(f"new data: {sum(p.stat().st_size for p in new) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
