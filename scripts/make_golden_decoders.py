"""Makes the parity goldens of the decoder (causal LM) families.

For each family: a small randomly initialised model built by `transformers` from a
config shaped like the family's real ones (hidden 64, GQA with 4 query and 2 key/value
heads, RMSNorm weights moved away from their identity values, biases non-zero), a
tokenizer of the family's kind trained offline with the `tokenizers` library on an
in-script corpus, and the outputs of transformers (float32, eager attention, one
sequence at a time, no padding) -> tests/data/decoders/<name>/{model files, golden.json}.

Every golden is computed from the folder as saved (reloaded from disk), checked
against an independent PyTorch forward written in this file from the family
formulas (`reference_forward`), and, for the sentence-transformers / CrossEncoder
folders, checked against the library's own `encode` / `predict`.
tests/data/decoders/README.md documents the folders and the golden.json schema.

Run in the bench environment (torch, transformers, sentence-transformers, tokenizers):
    .bench-venv/bin/python scripts/make_golden_decoders.py
The outputs are committed; the libraries are not rinfer dependencies.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import base64
import copy
import json
import math
import pathlib
import platform
import random
import re
import shutil
import sys
import tempfile

import numpy as np
import sentence_transformers
import tokenizers
import torch
import transformers
from safetensors.torch import load_file
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    Gemma3TextModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3ForSequenceClassification,
    Qwen3Model,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "decoders"
SCHEMA = "rinfer-decoder-golden/1"
INIT_STD = 0.15  # larger than the usual 0.02 so that attention is peaked and rope/mask bugs move the outputs
REF_TOL = 2e-5  # independent reference forward vs transformers, relative to the largest magnitude

VERSIONS = {
    "python": platform.python_version(),
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "sentence_transformers": sentence_transformers.__version__,
    "tokenizers": tokenizers.__version__,
}

# ---------------------------------------------------------------------------------------------
# Corpus and texts
# ---------------------------------------------------------------------------------------------

FIXED = [
    "hello",
    "Hello world!",
    "hello there, how are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France?",
    "Paris is the capital of France, and the river Seine crosses the city from east to west.",
    "Berlin is the capital of Germany.",
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "Rust guarantees memory safety without a garbage collector.",
    "A small model runs on the CPU and answers the search query in a few milliseconds.",
    "The search results show relevant passages that answer the query.",
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided.",
    'Note that the answer can only be "yes" or "no".',
    "Given a web search query, retrieve relevant passages that answer the query",
    "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:",
    "<Instruct>: <Query>: <Document>:",
    "task: search result | query: ",
    "title: none | text: ",
    "Café prices rose 12% in 2024; naïve models fail.",
    "numbers 1234567890 and 3.14159",
    "it's, they're, we'll, can't, won't",
]
YES_NO = ["yes", "no", "Yes, it is.", "No, it is not.", "yes or no", "the answer is yes", "the answer is no"]
SUBJECTS = [
    "the cat", "a dog", "my friend", "the teacher", "our team", "the river", "a small bird", "the old man",
    "every student", "the city", "this model", "the engine", "a quiet child", "the market", "her brother",
]  # fmt: skip
VERBS = [
    "sees", "likes", "finds", "builds", "reads", "follows", "crosses", "answers", "carries", "watches",
    "opens", "moves", "tests", "writes", "learns",
]  # fmt: skip
OBJECTS = [
    "the red ball", "a long road", "the blue sky", "an open door", "the green field", "a heavy box",
    "the first page", "a bright star", "the last train", "a warm meal", "the new rules", "a simple answer",
    "the quick fox", "a lazy dog", "the search results",
]  # fmt: skip
ENDINGS = [
    "today.", "at night.", "in the morning.", "after the rain.", "near the station.", "with great care.",
    "before the test.", "every day.", "without a word.", "for the first time.",
]  # fmt: skip


def corpus() -> list[str]:
    rng = random.Random(1234)
    lines = list(FIXED) + YES_NO * 20 + ["yes", "no"] * 40 + ["hello", "Hello world!"] * 40
    for _ in range(320):
        s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(ENDINGS)}"
        lines.append(s[0].upper() + s[1:])
    for _ in range(40):
        lines.append(f"Is it true that {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}? yes")
        lines.append(f"Does {rng.choice(SUBJECTS)} know {rng.choice(OBJECTS)}? no")
    return lines


CORPUS = corpus()

TEXTS = [
    "hello",
    "Hello world!",
    "What is the capital of France?",
    "The quick brown fox jumps over the lazy dog, and the old man watches.",
    "Paris is the capital of France, and the river crosses the city from east to west.",
    "Café prices rose 12% in 2024; naïve models fail.",
]

RERANK_PAIRS = [
    ("What is the capital of China?", "The capital of China is Beijing."),
    ("What is the capital of China?", "Gravity is a force that attracts two bodies towards each other."),
    ("Explain gravity", "Gravity is a force that attracts two bodies towards each other."),
    ("hello", "Paris is the capital of France."),
]
RERANK_DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
RERANK_CUSTOM = ("code", "Given a code search query, retrieve relevant code snippets")
RERANK_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
RERANK_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
RERANK_BODY = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
# Renders exactly RERANK_PREFIX + RERANK_BODY + RERANK_SUFFIX from sentence-transformers' pair messages
# (roles "query" and "document", flat string content) with the instruction taken from an optional
# "system" message (CrossEncoder's prompt), else the model card's default instruction.
RERANK_CHAT_TEMPLATE = (
    "{%- set ns = namespace(instruction='" + RERANK_DEFAULT_INSTRUCTION + "', query='', document='') -%}\n"
    "{%- for message in messages -%}\n"
    "{%- if message['role'] == 'system' -%}{%- set ns.instruction = message['content'] -%}\n"
    "{%- elif message['role'] == 'query' -%}{%- set ns.query = message['content'] -%}\n"
    "{%- elif message['role'] == 'document' -%}{%- set ns.document = message['content'] -%}\n"
    "{%- endif -%}\n"
    "{%- endfor -%}\n"
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    "<Instruct>: {{ ns.instruction }}\n<Query>: {{ ns.query }}\n<Document>: {{ ns.document }}"
    "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>{{ '\\n\\n' }}"
)  # the closing "\n\n" as an expression: transformers' Jinja environment drops a template's final newline

EMBEDDINGGEMMA_PROMPTS = {"query": "task: search result | query: ", "document": "title: none | text: "}
QWEN3_EMBEDDING_PROMPTS = {
    "query": "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:",
    "document": "",
}

# ---------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------

QWEN_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
QWEN_SPECIALS = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True)]
QWEN_SPECIALS += [("<think>", False), ("</think>", False)]  # not special in the real Qwen3 tokenizer either
LLAMA3_SPECIALS = [("<|begin_of_text|>", True), ("<|end_of_text|>", True), ("<|eot_id|>", True)]
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]


def byte_level_bpe(regex: str, nfc: bool, vocab_size: int, specials: list[tuple[str, bool]], ignore_merges: bool):
    """Qwen2 / Llama 3 style: regex split then byte-level BPE; special tokens appended after the BPE vocab."""
    tok = Tokenizer(
        models.BPE(
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
            ignore_merges=ignore_merges,
        )
    )
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in specials])
    return tok


def qwen_tokenizer(append_eos: bool) -> Tokenizer:
    tok = byte_level_bpe(QWEN_REGEX, True, 416, QWEN_SPECIALS, ignore_merges=False)
    if append_eos:  # Qwen3-Embedding: TemplateProcessing appends <|endoftext|> to every sequence
        eos = tok.token_to_id("<|endoftext|>")
        tok.post_processor = processors.TemplateProcessing(
            single="$A:0 <|endoftext|>:0",
            pair="$A:0 <|endoftext|>:0 $B:1 <|endoftext|>:1",
            special_tokens=[("<|endoftext|>", eos)],
        )
    else:
        tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    for word in ("yes", "no"):
        assert tok.token_to_id(word) is not None, f"{word!r} is not a single token"
    return tok


def llama3_tokenizer() -> Tokenizer:
    tok = byte_level_bpe(LLAMA3_REGEX, False, 440, LLAMA3_SPECIALS, ignore_merges=True)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
            processors.TemplateProcessing(
                single="<|begin_of_text|>:0 $A:0",
                pair="<|begin_of_text|>:0 $A:0 <|begin_of_text|>:1 $B:1",
                special_tokens=[("<|begin_of_text|>", bos)],
            ),
        ]
    )
    return tok


def sentencepiece_bpe_pieces() -> tuple[list[str], list[tuple[str, str]]]:
    """Pieces and merges of a SentencePiece-like BPE ("▁" marks a preceding space) trained on the corpus."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>"], show_progress=False)
    # ASCII lines only: accented letters are then outside the vocabulary and go through byte fallback
    # (limit_alphabet would do it too, but it breaks frequency ties in hash order: not reproducible)
    tok.train_from_iterator([line for line in CORPUS if line.isascii()], trainer)
    model = json.loads(tok.to_str())["model"]
    pieces = [p for p, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1]) if p != "<unk>"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return pieces, merges


def sentencepiece_tokenizer(specials: list[str], unk: str, style: str, template: str) -> Tokenizer:
    """Byte-fallback BPE with specials first, then <0x00>..<0xFF>, then the pieces (Llama/Mistral and Gemma layout).

    style "llama": Metaspace pre-tokenizer (prepend "▁" to the first section, no split), as transformers 5's
    LlamaTokenizer builds it. style "gemma": normalizer Replace(" ", "▁") and Split(" ") pre-tokenizer, no
    prefix space, as transformers 5's GemmaTokenizer builds it. (Those classes rebuild these stages from their
    own code and take only the vocabulary, merges and post-processor from tokenizer.json, so the file must agree
    with them for AutoTokenizer and a plain tokenizer.json reader to give the same ids; `tokenize_all` checks it.)
    """
    pieces, merges = sentencepiece_bpe_pieces()
    vocab = {t: i for i, t in enumerate(specials + BYTE_TOKENS + pieces)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    if style == "llama":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tok.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
        )
    else:
        tok.normalizer = normalizers.Replace(" ", "▁")
        tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous", invert=False)
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    parts = template.split()  # e.g. "<bos> $A <eos>"
    single = " ".join(f"{p}:0" for p in parts)
    pair = single + " " + " ".join("$B:1" if p == "$A" else f"{p}:1" for p in parts)
    used = sorted({p for p in parts if p != "$A"})
    tok.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(p, vocab[p]) for p in used]
    )
    return tok


MISTRAL_SPECIALS = ["<unk>", "<s>", "</s>"]
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]


def save_tokenizer(tok: Tokenizer, folder: pathlib.Path, cls: str, extra: dict) -> None:
    """tokenizer.json as built here; tokenizer_config.json naming the transformers class real checkpoints name."""
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    added = {}
    for i, t in sorted(tok.get_added_tokens_decoder().items()):
        added[str(i)] = {
            "content": t.content,
            "lstrip": t.lstrip,
            "normalized": t.normalized,
            "rstrip": t.rstrip,
            "single_word": t.single_word,
            "special": t.special,
        }
    cfg = {
        "added_tokens_decoder": added,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 256,
        "tokenizer_class": cls,
        **extra,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


QWEN_TOKENIZER_CONFIG = {"bos_token": None, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
QWEN_TOKENIZER_CONFIG |= {"unk_token": None, "errors": "replace", "split_special_tokens": False}
LLAMA3_TOKENIZER_CONFIG = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}
MISTRAL_TOKENIZER_CONFIG = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>"}
MISTRAL_TOKENIZER_CONFIG |= {"unk_token": "<unk>", "legacy": False}
GEMMA_TOKENIZER_CONFIG = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}
GEMMA_TOKENIZER_CONFIG |= {"mask_token": "<mask>", "add_bos_token": True, "add_eos_token": False}

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def b64(a) -> str:
    """float32 little-endian bytes, row-major, base64 (tests/common `f32s` decodes it)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().float().cpu().numpy()
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


def f32(x) -> float:
    """A float32 value as the exactly equal Python float (JSON keeps it bit-exact)."""
    return float(np.float32(float(x)))


def perturb(model: torch.nn.Module, gemma: bool, seed: int) -> None:
    """Norm weights away from identity (Llama-style w ~ 1 + N(0, .25), Gemma's stored offset w ~ N(0, .25)),
    biases non-zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                noise = 0.25 * torch.randn(p.shape, generator=g)
                p.copy_(noise if gemma else 1.0 + noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def fresh(folder: pathlib.Path, cls=AutoModel, **kw):
    """A model reloaded from the folder in float32 with eager attention (fresh instance: no rope state)."""
    model = cls.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager", **kw)
    return model.eval()


def tokenize_all(folder: pathlib.Path, texts: list[str]) -> list[list[int]]:
    """Token ids from AutoTokenizer, asserted equal to the raw tokenizer.json's (what a Rust loader sees)."""
    auto = AutoTokenizer.from_pretrained(folder)
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    out = []
    for t in texts:
        ids = auto(t, add_special_tokens=True)["input_ids"]
        assert ids == raw.encode(t, add_special_tokens=True).ids, (folder.name, t)
        out.append(ids)
    return out


def run_base(folder: pathlib.Path, ids: list[int], cls=AutoModel) -> torch.Tensor:
    model = fresh(folder, cls)
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).last_hidden_state[0]


def run_lm(folder: pathlib.Path, ids: list[int]) -> torch.Tensor:
    model = fresh(folder, AutoModelForCausalLM)
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def close(got: torch.Tensor, want: torch.Tensor, tol: float, what: str) -> float:
    got, want = got.double(), want.double()
    err = (got - want).abs().max().item() / max(want.abs().max().item(), 1e-6)
    assert err < tol, f"{what}: relative max error {err:.3g} >= {tol}"
    return err


def hub_style_rope(folder: pathlib.Path, write_null_scaling: bool) -> None:
    """Rewrites transformers 5's `rope_parameters` as the Hub's older `rope_theta` + `rope_scaling` fields."""
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    if rope.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = rope
    elif write_null_scaling:
        cfg["rope_scaling"] = None
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def weight_files(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".safetensors") or p.name.endswith(".json"))


def load_weights(folder: pathlib.Path) -> dict[str, torch.Tensor]:
    index = folder / "model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    )
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update(load_file(str(folder / f)))
    return sd


# ---------------------------------------------------------------------------------------------
# Independent reference forward (from the formulas, not from transformers' modules)
# ---------------------------------------------------------------------------------------------


def rope_frequencies(rope: dict, head_dim: int, max_pos: int, seq_len: int) -> tuple[torch.Tensor, float]:
    """Inverse frequencies (float64) and the factor applied to cos and sin, for a sequence of seq_len tokens."""
    d = head_dim
    kind = rope.get("rope_type", rope.get("type", "default"))
    base = float(rope["rope_theta"])
    if kind == "dynamic" and seq_len > max_pos:  # NTK-aware base, recomputed from the sequence length
        f = rope["factor"]
        base = base * ((f * seq_len / max_pos) - (f - 1)) ** (d / (d - 2))
    inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    scale = 1.0
    if kind == "linear":
        inv = inv / rope["factor"]
    elif kind == "yarn":
        f, omax = rope["factor"], rope["original_max_position_embeddings"]
        fast, slow = rope.get("beta_fast") or 32, rope.get("beta_slow") or 1

        def dim_of(rotations: float) -> float:
            return d * math.log(omax / (rotations * 2 * math.pi)) / (2 * math.log(base))

        low, high = max(math.floor(dim_of(fast)), 0), min(math.ceil(dim_of(slow)), d - 1)
        high = high + 0.001 if low == high else high
        ramp = ((torch.arange(d // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
        inv = (inv / f) * ramp + inv * (1 - ramp)
        scale = rope.get("attention_factor") or (0.1 * math.log(f) + 1.0 if f > 1 else 1.0)
    elif kind == "llama3":
        f, lo, hi = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
        omax = rope["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        smooth = (omax / wavelen - lo) / (hi - lo)
        mid = (1 - smooth) * inv / f + smooth * inv
        inv = torch.where(wavelen < omax / hi, inv, torch.where(wavelen > omax / lo, inv / f, mid))
    else:
        assert kind in ("default", "dynamic"), kind
    return inv, scale


def rotate_half_rope(z: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Non-interleaved ("rotate half") rope: dimension i pairs with i + head_dim / 2."""
    half = z.shape[-1] // 2
    return z * cos + torch.cat([-z[..., half:], z[..., :half]], -1) * sin


def rope_of(cfg: dict, layer_type: str) -> dict:
    if "rope_parameters" in cfg:
        rp = cfg["rope_parameters"]
        return rp.get(layer_type, rp)
    rope = dict(cfg.get("rope_scaling") or {})
    rope["rope_theta"] = cfg.get("rope_theta", 10000.0)
    return rope


def reference_forward(folder: pathlib.Path, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """last_hidden_state [T, H] and logits [T, V] from config.json + safetensors, in float64."""
    cfg = json.loads((folder / "config.json").read_text())
    sd = {k.removeprefix("model."): v.double() for k, v in load_weights(folder).items()}
    gemma = cfg["model_type"] == "gemma3_text"
    hidden, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or hidden // nh
    eps = cfg["rms_norm_eps"]
    n_layers = cfg["num_hidden_layers"]
    t = len(ids)

    def norm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        y = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return y * (1.0 + w) if gemma else y * w

    def lin(x: torch.Tensor, name: str) -> torch.Tensor:
        y = x @ sd[name + ".weight"].T
        return y + sd[name + ".bias"] if name + ".bias" in sd else y

    x = sd["embed_tokens.weight"][torch.tensor(ids)]
    if gemma:  # the scale is a float32 (bfloat16 in bf16 runs) tensor: sqrt(64) = 8 exactly here
        x = x * float(torch.tensor(hidden**0.5, dtype=torch.float32))
    pos = torch.arange(t, dtype=torch.float64)
    q_idx, k_idx = pos[:, None], pos[None, :]
    bidirectional = bool(cfg.get("use_bidirectional_attention"))
    layer_types = cfg.get("layer_types") or ["full_attention"] * n_layers
    window = cfg.get("sliding_window")
    if cfg["model_type"] in ("qwen2", "qwen3") and not cfg.get("use_sliding_window"):
        window = None
    act = torch.nn.functional.silu
    if gemma:

        def act(v: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.gelu(v, approximate="tanh")

    for i in range(n_layers):
        p = f"layers.{i}."
        lt = layer_types[i]
        h = norm(x, sd[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj").view(t, nh, hd).transpose(0, 1)
        k = lin(h, p + "self_attn.k_proj").view(t, nkv, hd).transpose(0, 1)
        v = lin(h, p + "self_attn.v_proj").view(t, nkv, hd).transpose(0, 1)
        if p + "self_attn.q_norm.weight" in sd:  # per head, before rope
            q, k = norm(q, sd[p + "self_attn.q_norm.weight"]), norm(k, sd[p + "self_attn.k_norm.weight"])
        inv, scale = rope_frequencies(rope_of(cfg, lt), hd, cfg["max_position_embeddings"], t)
        ang = pos[:, None] * inv[None, :]
        cos, sin = torch.cat([ang.cos()] * 2, -1) * scale, torch.cat([ang.sin()] * 2, -1) * scale

        q, k = rotate_half_rope(q, cos, sin), rotate_half_rope(k, cos, sin)
        k, v = k.repeat_interleave(nh // nkv, 0), v.repeat_interleave(nh // nkv, 0)  # query head j -> kv j // g
        scaling = cfg["query_pre_attn_scalar"] ** -0.5 if gemma else hd**-0.5
        scores = q @ k.transpose(1, 2) * scaling
        if bidirectional:
            allowed = torch.ones(t, t, dtype=torch.bool)
            if lt == "sliding_attention":
                allowed = (q_idx - k_idx).abs() < window // 2 + 1  # Gemma3TextConfig halves the window
        else:
            allowed = k_idx <= q_idx
            uses_window = lt == "sliding_attention" or (cfg["model_type"] == "mistral" and window)
            if uses_window and window:
                allowed = allowed & (q_idx - k_idx < window)  # the query plus its window - 1 predecessors
        scores = scores.masked_fill(~allowed, float("-inf"))
        o = (scores.softmax(-1) @ v).transpose(0, 1).reshape(t, nh * hd)
        o = lin(o, p + "self_attn.o_proj")
        if gemma:
            x = x + norm(o, sd[p + "post_attention_layernorm.weight"])
            h = norm(x, sd[p + "pre_feedforward_layernorm.weight"])
        else:
            x = x + o
            h = norm(x, sd[p + "post_attention_layernorm.weight"])
        m = lin(act(lin(h, p + "mlp.gate_proj")) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
        x = x + (norm(m, sd[p + "post_feedforward_layernorm.weight"]) if gemma else m)
    x = norm(x, sd["norm.weight"])
    head = sd.get("lm_head.weight", sd["embed_tokens.weight"])
    logits = x @ head.T
    if gemma and cfg.get("final_logit_softcapping"):
        cap = cfg["final_logit_softcapping"]
        logits = torch.tanh(logits / cap) * cap
    return x, logits


# ---------------------------------------------------------------------------------------------
# Goldens
# ---------------------------------------------------------------------------------------------


def describe(folder: pathlib.Path, config_layout: str) -> dict:
    cfg = json.loads((folder / "config.json").read_text())
    weights = load_weights(folder)
    keys = list(weights)
    if "score.weight" in keys:
        lm_head = "none (score.weight)"
    elif "lm_head.weight" in keys:
        lm_head = "lm_head.weight"
    else:
        lm_head = "tied (embed_tokens.weight)" if cfg.get("tie_word_embeddings", True) else "none"
    return {
        "architecture": (cfg.get("architectures") or ["?"])[0],
        "model_type": cfg["model_type"],
        "config_layout": config_layout,
        "weights_dtype": str(next(iter(weights.values())).dtype).removeprefix("torch."),
        "weight_files": [f for f in weight_files(folder) if "safetensors" in f],
        "tensor_prefix": "model." if any(k.startswith("model.") for k in keys) else "",
        "lm_head": lm_head,
        "hidden_size": cfg["hidden_size"],
        "vocab_size": cfg["vocab_size"],
    }


def standard_goldens(folder: pathlib.Path, config_layout: str, lm: bool, base_cls=AutoModel) -> dict:
    """Texts, ids, last_hidden_state of the base model and last-position logits of the causal LM, per text."""
    ids = tokenize_all(folder, TEXTS)
    assert sum(len(i) > 16 for i in ids) >= 2 and max(len(i) for i in ids) <= 50, [len(i) for i in ids]
    g = {"schema": SCHEMA, "name": folder.name, "versions": VERSIONS, "folder": describe(folder, config_layout)}
    g |= {"texts": TEXTS, "input_ids": ids, "seq_lens": [len(i) for i in ids]}
    hs, lg = [], []
    for t, x in zip(TEXTS, ids):
        h = run_base(folder, x, base_cls)
        ref_h, ref_logits = reference_forward(folder, x)
        close(h, ref_h, REF_TOL, f"{folder.name} hidden {t!r}")
        hs.append(b64(h))
        if lm:
            logits = run_lm(folder, x)
            close(logits, ref_logits, REF_TOL, f"{folder.name} logits {t!r}")
            lg.append(b64(logits[-1]))
    g["last_hidden_state"] = hs
    if lm:
        g["logits_last"] = lg
    return g


def write_golden(folder: pathlib.Path, golden: dict) -> None:
    text = json.dumps(golden, indent=1, ensure_ascii=False)
    # lists of numbers (token ids) on one line
    text = re.sub(
        r"\[\s*(-?[\d.e+-]+(?:,\s*-?[\d.e+-]+)*)\s*\]", lambda m: "[" + re.sub(r",\s*", ", ", m[1]) + "]", text
    )
    (folder / "golden.json").write_text(text + "\n")


def decode(s: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype="<f4").copy())


def same_as_memory(model: torch.nn.Module, golden: dict, what: str) -> None:
    """The in-memory base model (before saving and config rewriting) gives the goldens computed from disk.

    Not always bit for bit: tensors loaded from safetensors sit at unaligned mmap offsets, and single-row matmuls
    then take other SIMD paths (a few ulp). A copy per text: dynamic rope keeps state between calls."""
    for x, want in zip(golden["input_ids"], golden["last_hidden_state"]):
        with torch.no_grad():
            h = copy.deepcopy(model).eval()(input_ids=torch.tensor([x])).last_hidden_state[0]
        close(h.reshape(-1), decode(want), 1e-5, f"{what}: memory vs disk ({len(x)} tokens)")


def new_folder(name: str) -> pathlib.Path:
    folder = OUT / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def seeded(cls, config, seed: int, gemma: bool = False):
    torch.manual_seed(seed)
    model = cls(config).eval()
    perturb(model, gemma, seed + 1)
    return model


COMMON = {
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "initializer_range": INIT_STD,
    "dtype": "float32",
    "attn_implementation": "eager",
}

# ---------------------------------------------------------------------------------------------
# Families
# ---------------------------------------------------------------------------------------------


def qwen3_config(vocab: int, eos: int) -> Qwen3Config:
    return Qwen3Config(
        **COMMON,
        vocab_size=vocab,
        num_hidden_layers=2,
        head_dim=32,  # 4 heads x 32 = 128 != hidden 64, as Qwen3 (e.g. 0.6B: 16 x 128 = 2048 vs 1024)
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=True,
        rms_norm_eps=1e-6,
        bos_token_id=eos,
        eos_token_id=eos,
        use_sliding_window=False,
    )


def build_qwen3() -> None:
    tok = qwen_tokenizer(append_eos=False)
    eos = tok.token_to_id("<|endoftext|>")
    model = seeded(Qwen3ForCausalLM, qwen3_config(tok.get_vocab_size(), eos), 30)
    folder = new_folder("qwen3")
    model.save_pretrained(folder, safe_serialization=True)
    save_tokenizer(tok, folder, "Qwen2Tokenizer", QWEN_TOKENIZER_CONFIG)
    hub_style_rope(folder, write_null_scaling=True)
    g = standard_goldens(folder, "hub", lm=True)
    same_as_memory(model.model, g, "qwen3")
    write_golden(folder, g)

    # The same weights rounded to bfloat16 and stored so; goldens from transformers in float32 after loading them
    bf = new_folder("qwen3_bf16")
    model.to(torch.bfloat16).save_pretrained(bf, safe_serialization=True)
    save_tokenizer(tok, bf, "Qwen2Tokenizer", QWEN_TOKENIZER_CONFIG)
    hub_style_rope(bf, write_null_scaling=True)
    assert all(v.dtype == torch.bfloat16 for v in load_weights(bf).values())
    g = standard_goldens(bf, "hub", lm=True)
    g["notes"] = ["weights stored as bfloat16; goldens computed in float32 after exact upcast (dtype=torch.float32)"]
    write_golden(bf, g)


def build_qwen2() -> None:
    tok = qwen_tokenizer(append_eos=False)
    eos = tok.token_to_id("<|endoftext|>")
    config = Qwen2Config(
        **COMMON,
        vocab_size=tok.get_vocab_size(),
        num_hidden_layers=2,
        rope_parameters={
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 32,
            "rope_theta": 10000.0,
        },
        tie_word_embeddings=False,
        rms_norm_eps=1e-6,
        bos_token_id=eos,
        eos_token_id=eos,
        use_sliding_window=False,
    )
    model = seeded(Qwen2ForCausalLM, config, 20)
    folder = new_folder("qwen2")
    model.save_pretrained(folder, safe_serialization=True)
    save_tokenizer(tok, folder, "Qwen2Tokenizer", QWEN_TOKENIZER_CONFIG)
    g = standard_goldens(folder, "transformers5", lm=True)
    same_as_memory(model.model, g, "qwen2")
    write_golden(folder, g)


def llama_config(vocab: int, rope: dict, **kw) -> LlamaConfig:
    tok_bos, tok_eos = kw.pop("bos"), kw.pop("eos")
    return LlamaConfig(
        **(COMMON | kw),
        vocab_size=vocab,
        num_hidden_layers=2,
        head_dim=16,
        rope_parameters=rope,
        rms_norm_eps=1e-5,
        bos_token_id=tok_bos,
        eos_token_id=tok_eos,
        attention_bias=False,
        mlp_bias=False,
    )


def build_llamas() -> None:
    tok = llama3_tokenizer()
    bos, eos = tok.token_to_id("<|begin_of_text|>"), tok.token_to_id("<|end_of_text|>")
    variants = {
        # original_max_position_embeddings 64 (not 16): with head_dim 16 and theta 5e5 the wavelengths are
        # 6.3, 32.4, 167, ... so 64 puts one frequency in each llama3 regime (kept < 16, smoothed, divided > 64)
        "llama3": (
            {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
                "rope_theta": 500000.0,
            },
            {"tie_word_embeddings": True},
            "hub",
        ),
        "llama_linear": ({"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}, {}, "transformers5"),
        # dynamic NTK compares the sequence length with max_position_embeddings (there is no separate
        # original length for it in transformers 5), so the "original" 16 is max_position_embeddings here
        "llama_dynamic": (
            {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0},
            {"max_position_embeddings": 16},
            "transformers5",
        ),
    }
    for seed, (name, (rope, extra, layout)) in enumerate(variants.items()):
        extra = {"tie_word_embeddings": True} | extra
        model = seeded(LlamaForCausalLM, llama_config(tok.get_vocab_size(), rope, bos=bos, eos=eos, **extra), 40 + seed)
        folder = new_folder(name)
        if name == "llama3":
            model.save_pretrained(folder, safe_serialization=True, max_shard_size="100KB")
            assert (folder / "model.safetensors.index.json").exists()
        else:
            model.save_pretrained(folder, safe_serialization=True)
        save_tokenizer(tok, folder, "PreTrainedTokenizerFast", LLAMA3_TOKENIZER_CONFIG)
        if layout == "hub":
            hub_style_rope(folder, write_null_scaling=True)
        g = standard_goldens(folder, layout, lm=True)
        same_as_memory(model.model, g, name)
        if name == "llama_dynamic":
            g["notes"] = dynamic_notes(folder, g)
        write_golden(folder, g)


def dynamic_notes(folder: pathlib.Path, g: dict) -> list[str]:
    """Checks (and records) that transformers' dynamic NTK state depends on what the instance ran before."""
    ids = g["input_ids"]
    long_i = max(range(len(ids)), key=lambda i: len(ids[i]))
    mid_i = next(i for i in range(len(ids)) if 16 < len(ids[i]) < len(ids[long_i]))
    model = fresh(folder)
    with torch.no_grad():
        model(input_ids=torch.tensor([ids[long_i]]))
        after_long = model(input_ids=torch.tensor([ids[mid_i]])).last_hidden_state[0]
    stale = not torch.allclose(after_long.reshape(-1), decode(g["last_hidden_state"][mid_i]), atol=1e-6)
    assert stale, "expected the dynamic rope of a reused instance to keep the longer sequence's frequencies"
    fresh_rule = (
        "goldens use a fresh model instance per text: base' = base * (factor*L/max_pos - (factor-1))^(d/(d-2)) "
        "with L = that text's length when L > max_position_embeddings, else the plain base"
    )
    stateful = (
        f"a reused instance is stateful: after running text {long_i} ({len(ids[long_i])} tokens), text {mid_i} "
        f"({len(ids[mid_i])} tokens) keeps the longer length's frequencies (they are only recomputed on growth, "
        "or reset once a sequence is shorter than max_position_embeddings)"
    )
    batch = "in a padded batch L is max(position_ids) + 1, i.e. the padded length (the longest sequence)"
    return [fresh_rule, stateful, batch]


def build_mistral() -> None:
    tok = sentencepiece_tokenizer(MISTRAL_SPECIALS, "<unk>", "llama", "<s> $A")
    config = MistralConfig(
        **COMMON,
        vocab_size=tok.get_vocab_size(),
        num_hidden_layers=2,
        head_dim=16,
        sliding_window=8,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = seeded(MistralForCausalLM, config, 50)
    folder = new_folder("mistral")
    model.save_pretrained(folder, safe_serialization=True)
    save_tokenizer(tok, folder, "LlamaTokenizer", MISTRAL_TOKENIZER_CONFIG)
    hub_style_rope(folder, write_null_scaling=False)
    g = standard_goldens(folder, "hub", lm=True)
    same_as_memory(model.model, g, "mistral")
    write_golden(folder, g)


def gemma_config(vocab: int, **kw) -> Gemma3TextConfig:
    return Gemma3TextConfig(
        **(COMMON | {"hidden_size": 64} | kw),
        vocab_size=vocab,
        hidden_activation="gelu_pytorch_tanh",
        rms_norm_eps=1e-6,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=True,
        final_logit_softcapping=None,
        attn_logit_softcapping=None,
    )


def build_gemma3() -> None:
    tok = sentencepiece_tokenizer(GEMMA_SPECIALS, "<unk>", "gemma", "<bos> $A")
    config = gemma_config(
        tok.get_vocab_size(),
        num_hidden_layers=3,
        head_dim=24,  # 4 x 24 = 96 != hidden 64, as Gemma 3 (1B: 4 x 256 = 1024 vs 1152)
        query_pre_attn_scalar=32,  # != head_dim: the scores are scaled by 32 ** -0.5, not 24 ** -0.5
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
    )
    model = seeded(Gemma3ForCausalLM, config, 60, gemma=True)
    folder = new_folder("gemma3")
    model.save_pretrained(folder, safe_serialization=True)
    save_tokenizer(tok, folder, "GemmaTokenizer", GEMMA_TOKENIZER_CONFIG)
    g = standard_goldens(folder, "transformers5", lm=True)
    same_as_memory(model.model, g, "gemma3")
    write_golden(folder, g)


def st_goldens(folder: pathlib.Path, prompts: dict, truncate: int | None) -> dict:
    """sentence-transformers' encode of TEXTS, one text at a time, from the saved folder: each a [texts, dim]
    float32 matrix (base64), without prompt, with each named prompt and with truncate_dim."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu", model_kwargs={"attn_implementation": "eager"})
    out = {"st_dim": st.get_embedding_dimension(), "st_prompts": prompts}
    runs = {"st_embeddings": {}} | {f"st_embeddings_{name}": {"prompt_name": name} for name in prompts}
    if truncate:
        runs[f"st_embeddings_truncate_dim_{truncate}"] = {"truncate_dim": truncate}
    for key, kw in runs.items():
        vecs = st.encode(TEXTS, batch_size=1, convert_to_tensor=True, **kw)
        out[key] = b64(vecs)
        batched = st.encode(TEXTS, batch_size=8, convert_to_tensor=True, **kw)
        close(batched, vecs, 1e-4, f"{folder.name} {key}: batched (padded) vs one at a time")
    return out


def build_embeddinggemma() -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    tok = sentencepiece_tokenizer(GEMMA_SPECIALS, "<unk>", "gemma", "<bos> $A <eos>")
    config = gemma_config(
        tok.get_vocab_size(),
        num_hidden_layers=3,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=8,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        use_bidirectional_attention=True,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
    )
    model = seeded(Gemma3TextModel, config, 70, gemma=True)
    folder = new_folder("embeddinggemma")
    with tempfile.TemporaryDirectory() as tmp:
        base = pathlib.Path(tmp)
        model.save_pretrained(base, safe_serialization=True)
        save_tokenizer(tok, base, "GemmaTokenizer", GEMMA_TOKENIZER_CONFIG | {"add_eos_token": True})
        torch.manual_seed(71)
        modules = [
            Transformer(str(base), model_kwargs={"attn_implementation": "eager"}),
            Pooling(64, pooling_mode="mean"),
            Dense(64, 128, bias=False, activation_function=torch.nn.Identity()),
            Dense(128, 64, bias=False, activation_function=torch.nn.Identity()),
            Normalize(),
        ]
        with torch.no_grad():
            for m in modules[2:4]:
                m.linear.weight.normal_(0.0, 0.15)
        st = SentenceTransformer(modules=modules, prompts=EMBEDDINGGEMMA_PROMPTS, similarity_fn_name="cosine")
        st.save(str(folder), create_model_card=False)
    g = standard_goldens(folder, "transformers5", lm=True, base_cls=AutoModel)
    g["folder"]["layout"] = "sentence-transformers (as SentenceTransformer.save writes it)"
    g |= st_goldens(folder, EMBEDDINGGEMMA_PROMPTS, truncate=32)
    check_st_reference(folder, g, "mean")
    write_golden(folder, g)


def legacy_st_files(folder: pathlib.Path) -> None:
    """The Hub's Qwen3-Embedding layout: `sentence_transformers.models.*` module types, the boolean pooling
    flags and the two-key sentence_bert_config.json older sentence-transformers releases write, and a config
    naming Qwen3ForCausalLM over weights saved from the bare Qwen3Model (no "model." prefix, no lm_head)."""
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 256, "do_lower_case": False}, indent=4) + "\n"
    )
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["Qwen3ForCausalLM"]
    (folder / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    modules = json.loads((folder / "modules.json").read_text())
    for m in modules:
        m["type"] = "sentence_transformers.models." + m["type"].rsplit(".", 1)[-1]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode"] == "lasttoken", pooling
    flags = ["cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken"]
    legacy = {"word_embedding_dimension": pooling["embedding_dimension"]}
    legacy |= {f"pooling_mode_{f}": f == "lasttoken" for f in flags}
    legacy["include_prompt"] = pooling.get("include_prompt", True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(legacy, indent=4) + "\n")


def build_qwen3_embedding() -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    tok = qwen_tokenizer(append_eos=True)
    eos = tok.token_to_id("<|endoftext|>")
    model = seeded(Qwen3Model, qwen3_config(tok.get_vocab_size(), eos), 80)
    folder = new_folder("qwen3_embedding")
    with tempfile.TemporaryDirectory() as tmp:
        base = pathlib.Path(tmp)
        model.save_pretrained(base, safe_serialization=True)
        save_tokenizer(tok, base, "Qwen2Tokenizer", QWEN_TOKENIZER_CONFIG | {"padding_side": "left"})
        modules = [
            Transformer(str(base), model_kwargs={"attn_implementation": "eager"}),
            Pooling(64, pooling_mode="lasttoken"),
            Normalize(),
        ]
        st = SentenceTransformer(modules=modules, prompts=QWEN3_EMBEDDING_PROMPTS, similarity_fn_name="cosine")
        st.save(str(folder), create_model_card=False)
    legacy_st_files(folder)
    hub_style_rope(folder, write_null_scaling=True)
    assert AutoTokenizer.from_pretrained(folder).padding_side == "left"
    g = standard_goldens(folder, "hub", lm=True, base_cls=AutoModel)
    g["folder"]["layout"] = "sentence-transformers (Hub Qwen3-Embedding style: legacy module types, boolean pooling)"
    for ids in g["input_ids"]:
        assert ids[-1] == eos, "the post-processor appends <|endoftext|>"
    g |= st_goldens(folder, QWEN3_EMBEDDING_PROMPTS, truncate=None)
    check_st_reference(folder, g, "lasttoken")
    write_golden(folder, g)


def check_st_reference(folder: pathlib.Path, g: dict, pooling: str) -> None:
    """Reference pooling -> Dense* -> Normalize from the module folders, vs sentence-transformers."""
    modules = json.loads((folder / "modules.json").read_text())
    dense = []
    for m in modules:
        if m["type"].endswith("Dense"):
            w = load_file(str(folder / m["path"] / "model.safetensors"))
            dense.append(w["linear.weight"].double())
    for i, ids in enumerate(g["input_ids"]):
        h, _ = reference_forward(folder, ids)
        v = h.mean(0) if pooling == "mean" else h[-1]
        for w in dense:
            v = w @ v
        v = v / v.norm()
        want = decode(g["st_embeddings"]).reshape(len(g["input_ids"]), -1)[i]
        close(want, v, REF_TOL, f"{folder.name} embedding {i}")


def rerank_cases(folder: pathlib.Path, instruction_name: str | None) -> list[dict]:
    instruction = RERANK_CUSTOM[1] if instruction_name else RERANK_DEFAULT_INSTRUCTION
    tok = AutoTokenizer.from_pretrained(folder)
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    yes, no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
    cases = []
    for query, document in RERANK_PAIRS:
        text = RERANK_PREFIX + RERANK_BODY.format(instruction=instruction, query=query, document=document)
        text += RERANK_SUFFIX
        ids = tok(text, add_special_tokens=True)["input_ids"]
        assert ids == raw.encode(text).ids
        logits = run_lm(folder, ids)[-1]
        ref = reference_forward(folder, ids)[1][-1]
        close(logits, ref, REF_TOL, f"{folder.name} rerank logits")
        pair = torch.stack([logits[no], logits[yes]])
        cases.append(
            {
                "query": query,
                "document": document,
                "instruction": instruction,
                "prompt_name": instruction_name,
                "text": text,
                "input_ids": ids,
                "logit_yes": f32(logits[yes]),
                "logit_no": f32(logits[no]),
                "logit_diff": f32(logits[yes] - logits[no]),
                "score": f32(torch.softmax(pair, 0)[1]),
            }
        )
    return cases


def build_rerankers() -> None:
    from sentence_transformers import CrossEncoder

    tok = qwen_tokenizer(append_eos=False)
    eos = tok.token_to_id("<|endoftext|>")
    model = seeded(Qwen3ForCausalLM, qwen3_config(tok.get_vocab_size(), eos), 90)
    folder = new_folder("qwen3_reranker")
    with tempfile.TemporaryDirectory() as tmp:
        base = pathlib.Path(tmp)
        model.save_pretrained(base, safe_serialization=True)
        save_tokenizer(tok, base, "Qwen2Tokenizer", QWEN_TOKENIZER_CONFIG | {"padding_side": "left"})
        (base / "chat_template.jinja").write_text(RERANK_CHAT_TEMPLATE)
        # CrossEncoder detects architectures[0] ending in "ForCausalLM" and builds Transformer(text-generation)
        # + LogitScore(true_token_id=id("yes"), false_token_id=id("no")) itself
        ce = CrossEncoder(str(base), device="cpu", prompts={RERANK_CUSTOM[0]: RERANK_CUSTOM[1]})
        ce.save(str(folder), create_model_card=False)
    g = standard_goldens(folder, "transformers5", lm=True)
    g["folder"]["layout"] = "sentence-transformers CrossEncoder (Transformer text-generation + LogitScore)"
    yes, no = AutoTokenizer.from_pretrained(folder).convert_tokens_to_ids(["yes", "no"])
    cases = rerank_cases(folder, None) + rerank_cases(folder, RERANK_CUSTOM[0])
    ce = CrossEncoder(str(folder), device="cpu", model_kwargs={"attn_implementation": "eager"})
    assert [type(m).__name__ for m in ce] == ["Transformer", "LogitScore"], list(ce)
    for name in (None, RERANK_CUSTOM[0]):
        sel = [c for c in cases if c["prompt_name"] == name]
        qd = [(c["query"], c["document"]) for c in sel]
        scores = ce.predict(qd, batch_size=1, prompt_name=name, convert_to_tensor=True)
        raw = ce.predict(qd, batch_size=1, prompt_name=name, activation_fn=torch.nn.Identity(), convert_to_tensor=True)
        batched = ce.predict(qd, batch_size=8, prompt_name=name, convert_to_tensor=True)
        for c, s, r, b in zip(sel, scores, raw, batched):
            close(r.reshape(1), torch.tensor([c["logit_diff"]]), 1e-5, "CrossEncoder raw vs logit_yes - logit_no")
            close(s.reshape(1), torch.tensor([c["score"]]), 1e-5, "CrossEncoder score vs softmax formula")
            close(b.reshape(1), torch.tensor([c["score"]]), 1e-4, "CrossEncoder batched (left-padded)")
            c["cross_encoder_score"] = f32(s)
            c["cross_encoder_raw"] = f32(r)
    default = [c for c in cases if c["prompt_name"] is None]
    g["pairs"] = [[c["query"], c["document"]] for c in default]
    g["pair_logits"] = [c["cross_encoder_raw"] for c in default]
    g["pair_scores"] = [c["cross_encoder_score"] for c in default]
    g["rerank"] = {
        "prefix": RERANK_PREFIX,
        "body": RERANK_BODY,
        "suffix": RERANK_SUFFIX,
        "default_instruction": RERANK_DEFAULT_INSTRUCTION,
        "prompts": {RERANK_CUSTOM[0]: RERANK_CUSTOM[1]},
        "yes_token_id": yes,
        "no_token_id": no,
        "cases": cases,
    }
    write_golden(folder, g)

    # Seq-cls conversion: Qwen3ForSequenceClassification, num_labels 1, score.weight = lm_head[yes] - lm_head[no]
    config = AutoConfig.from_pretrained(folder)
    config.architectures = ["Qwen3ForSequenceClassification"]
    config.num_labels = 1
    config.pad_token_id = eos
    seq = Qwen3ForSequenceClassification(config).eval()
    lm = fresh(folder, AutoModelForCausalLM)
    missing = seq.model.load_state_dict(lm.model.state_dict())
    assert not missing.missing_keys and not missing.unexpected_keys
    head = lm.lm_head.weight.detach()
    with torch.no_grad():
        seq.score.weight.copy_((head[yes] - head[no]).unsqueeze(0))
    sc = new_folder("qwen3_reranker_seqcls")
    seq.save_pretrained(sc, safe_serialization=True)
    save_tokenizer(tok, sc, "Qwen2Tokenizer", QWEN_TOKENIZER_CONFIG | {"padding_side": "left"})
    gs = standard_goldens(sc, "transformers5", lm=False)
    gs["folder"]["layout"] = "transformers (Qwen3ForSequenceClassification, seq-cls conversion of qwen3_reranker)"
    seq_cases = []
    ce_seq = CrossEncoder(str(sc), device="cpu", model_kwargs={"attn_implementation": "eager"})
    for c in cases:
        m = fresh(sc, AutoModelForSequenceClassification)
        with torch.no_grad():
            logit = m(input_ids=torch.tensor([c["input_ids"]])).logits[0, 0]
        close(logit.reshape(1), torch.tensor([c["logit_diff"]]), 1e-4, "seq-cls logit vs logit_yes - logit_no")
        # The seq-cls model cards' usage: CrossEncoder on (prefix + instruct + query, document + suffix) pairs,
        # which the tokenizer concatenates without separator tokens
        split = c["text"].index("<Document>: ")
        pair = (c["text"][:split], c["text"][split:])
        raw = ce_seq.predict([pair], batch_size=1, activation_fn=torch.nn.Identity(), convert_to_tensor=True)
        close(raw.reshape(1), logit.reshape(1), 1e-5, "seq-cls CrossEncoder on the split pair")
        seq_cases.append({k: c[k] for k in ("query", "document", "instruction", "text", "input_ids")})
        seq_cases[-1] |= {"cross_encoder_pair": list(pair), "logit": f32(logit), "causal_logit_diff": c["logit_diff"]}
        seq_cases[-1]["cross_encoder_raw"] = f32(raw.reshape(-1)[0])
        seq_cases[-1]["cross_encoder_score"] = f32(torch.sigmoid(raw.reshape(-1)[0]))
    default = [c for c in seq_cases if c["instruction"] == RERANK_DEFAULT_INSTRUCTION]
    gs["pairs"] = [c["cross_encoder_pair"] for c in default]
    gs["pair_logits"] = [c["cross_encoder_raw"] for c in default]
    gs["pair_scores"] = [c["cross_encoder_score"] for c in default]
    gs["rerank"] = {"score_weight": "lm_head[yes] - lm_head[no]", "yes_token_id": yes, "no_token_id": no}
    gs["rerank"]["cases"] = seq_cases
    write_golden(sc, gs)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    builders = [
        build_qwen3,
        build_qwen2,
        build_llamas,
        build_mistral,
        build_gemma3,
        build_embeddinggemma,
        build_qwen3_embedding,
        build_rerankers,
    ]
    only = sys.argv[1:]  # optional builder names (e.g. "gemma3"), for iterating on one family
    for build in builders:
        if not only or build.__name__.removeprefix("build_") in only:
            build()
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{OUT}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
