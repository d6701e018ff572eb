"""Makes the golden outputs the parity tests compare rinfer with.

- all-MiniLM-L6-v2 through sentence-transformers on varied texts: token ids and
  vectors -> tests/golden/minilm.json
- small randomly initialised BERT models of other shapes and activations, saved as
  safetensors with configs and a tiny WordPiece tokenizer, with their outputs from
  transformers (pooling as sentence-transformers does it) -> tests/data/models/*

Run in the bench environment (it has torch, transformers, sentence-transformers):
    .bench-venv/bin/python scripts/make_golden.py
The outputs are committed; the libraries are not rinfer dependencies.
"""

from __future__ import annotations

import base64
import json
import pathlib
import shutil

import numpy as np
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertForSequenceClassification, BertModel

ROOT = pathlib.Path(__file__).resolve().parent.parent
MINILM = ROOT / "models" / "all-MiniLM-L6-v2"
GOLDEN = ROOT / "tests" / "golden"
TINY = ROOT / "tests" / "data" / "models"

LONG = " ".join(f"Sentence number {i} talks about transformers, kernels, caches and throughput." for i in range(40))

TEXTS = [
    "",
    "hello",
    "Hello, world!",
    "...!?",
    "The quick brown fox jumps over the lazy dog.",
    "Café, naïve, résumé, über, señor, façade.",
    "東京は日本の首都です。",
    "北京欢迎你",
    "안녕하세요, 만나서 반갑습니다.",
    "Привет, как дела?",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "I love pizza 🍕🍕 and sushi 🍣!",
    "🤖🚀✨",
    "Mixed: English, français, 日本語, Русский and emoji 😀 in one line.",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\nin text",
    "ALL CAPS SHOUTING TEXT",
    "numbers 1234567890 and 3.14159 and 1e-10",
    "email me at someone@example.com or visit https://example.org/path?q=1",
    "C++ and C# and F# are languages; so is Rust.",
    "a",
    "I",
    "the",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "How do I bake sourdough bread?",
    "Mix flour, water and starter, then let it rise overnight.",
    "The stock market fell sharply on Monday.",
    "Investors sold shares amid fears of a recession.",
    "A man is playing a guitar.",
    "A woman is slicing an onion.",
    "A cheetah is running behind its prey.",
    "The new movie is awesome.",
    "The new movie is so great.",
    "Don't stop believing!",
    "it's, they're, we'll, can't, won't",
    "under_score and hyphen-ated and slash/separated",
    "<html><body>Markup &amp; entities</body></html>",
    '{"json": [1, 2, 3], "key": "value"}',
    "def f(x): return x ** 2  # python code",
    "SELECT * FROM users WHERE id = 42;",
    "Zero-width\u200bspace and non\u00a0breaking space",
    "Combining accents: e\u0301 a\u0300 o\u0308",
    "ﬁ ligature and ｆｕｌｌｗｉｄｔｈ letters",
    "The patient was prescribed 20 mg of atorvastatin daily.",
    "Photosynthesis converts light energy into chemical energy.",
    "The mitochondria is the powerhouse of the cell.",
    "Quantum entanglement links the states of two particles.",
    "Machine learning models need data to learn patterns.",
    "Sentence embeddings map text to dense vectors.",
    "Rust guarantees memory safety without a garbage collector.",
    "Python is popular for data science.",
    "The Eiffel Tower is in Paris.",
    "Mount Everest is the highest mountain on Earth.",
    "Water boils at 100 degrees Celsius at sea level.",
    "She sells sea shells by the sea shore.",
    "To be, or not to be, that is the question.",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
    "short",
    "A somewhat longer sentence that has quite a few more words in it than the others do.",
    LONG,
    LONG + " " + LONG,
    "Final text of the parity set.",
]


def f32_b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


def minilm() -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(MINILM), device="cpu")
    vecs = model.encode(TEXTS, batch_size=16, convert_to_numpy=True, normalize_embeddings=False)
    feats = model.tokenize(TEXTS)
    ids = [
        [int(t) for t, m in zip(row, mask) if m]
        for row, mask in zip(feats["input_ids"].tolist(), feats["attention_mask"].tolist())
    ]
    out = {
        "model": "all-MiniLM-L6-v2",
        "made_by": "sentence-transformers " + __import__("sentence_transformers").__version__,
        "texts": TEXTS,
        "ids": ids,
        "dim": int(vecs.shape[1]),
        "embeddings_f32_b64": f32_b64(vecs),
    }
    GOLDEN.mkdir(parents=True, exist_ok=True)
    (GOLDEN / "minilm.json").write_text(json.dumps(out, ensure_ascii=False, indent=0))
    print(f"minilm: {len(TEXTS)} texts, max tokens {max(map(len, ids))}")


WORDS = [
    "the",
    "a",
    "an",
    "is",
    "are",
    "was",
    "of",
    "and",
    "to",
    "in",
    "on",
    "for",
    "with",
    "at",
    "by",
    "from",
    "that",
    "this",
    "it",
    "as",
    "be",
    "cat",
    "dog",
    "man",
    "woman",
    "fox",
    "city",
    "house",
    "car",
    "tree",
    "water",
    "fire",
    "light",
    "night",
    "day",
    "time",
    "quick",
    "brown",
    "lazy",
    "jumps",
    "over",
    "runs",
    "sits",
    "rust",
    "python",
    "model",
    "text",
    "vector",
    "good",
    "bad",
    "new",
    "old",
    "big",
    "small",
    "hello",
    "world",
    "question",
    "answer",
]


def tiny_tokenizer(path: pathlib.Path) -> Tokenizer:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?;:'\"()-")
    vocab = specials + WORDS + chars + ["##" + c for c in chars]
    vocab = list(dict.fromkeys(vocab))
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.save(str(path))
    return tok


TINY_TEXTS = [
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "a",
    "",
    "Rust model, python text; vector!",
    "unknown words like zebra and xylophone get split into pieces",
    "the cat sits on the mat. the dog runs in the city at night.",
    "ÅÉÎ accented and 東京 unknown",
    " ".join(["time"] * 70),
]
MAX_LEN = 48  # tiny models' max_seq_length: the last text is truncated


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    m = mask.unsqueeze(-1).float()
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(m == 0, -1e9).max(dim=1).values
    if mode == "mean":
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    raise ValueError(mode)


def save_folder(
    d: pathlib.Path,
    model,
    tok_path: pathlib.Path,
    pooling: str | None,
    normalize: bool,
    dtype: torch.dtype = torch.float32,
) -> None:
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    from safetensors.torch import save_file

    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
    model.config.to_json_file(str(d / "config.json"))
    shutil.copy(tok_path, d / "tokenizer.json")
    (d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": MAX_LEN}))
    if pooling is not None:
        mods = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        if normalize:
            mods.append(
                {
                    "idx": 2,
                    "name": "2",
                    "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                }
            )
        (d / "modules.json").write_text(json.dumps(mods, indent=1))
        (d / "1_Pooling").mkdir()
        h = model.config.hidden_size
        (d / "1_Pooling" / "config.json").write_text(
            json.dumps(
                {
                    "word_embedding_dimension": h,
                    "pooling_mode_cls_token": pooling == "cls",
                    "pooling_mode_mean_tokens": pooling == "mean",
                    "pooling_mode_max_tokens": pooling == "max",
                    "pooling_mode_mean_sqrt_len_tokens": False,
                }
            )
        )


def tiny_models() -> None:
    tmp = TINY / "_tokenizer.json"
    TINY.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer(tmp)
    tok.enable_truncation(MAX_LEN)
    vocab = tok.get_vocab_size()
    encs = tok.encode_batch(TINY_TEXTS)
    ids = [e.ids for e in encs]

    def batch(id_lists, type_lists=None):
        n = max(map(len, id_lists))
        t = torch.zeros(len(id_lists), n, dtype=torch.long)
        tt = torch.zeros_like(t)
        mask = torch.zeros_like(t)
        for i, row in enumerate(id_lists):
            t[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
            if type_lists is not None:
                tt[i, : len(row)] = torch.tensor(type_lists[i])
        return t, tt, mask

    specs = [
        # name, hidden, heads, layers, intermediate, act, pooling, normalize, dtype
        ("gelu-mean", 48, 4, 2, 100, "gelu", "mean", True, torch.float32),
        ("gelunew-cls", 64, 8, 3, 130, "gelu_new", "cls", False, torch.float32),
        ("relu-max", 40, 5, 1, 77, "relu", "max", False, torch.float32),
        ("bf16-mean", 48, 4, 2, 100, "gelu", "mean", True, torch.bfloat16),
        ("f16-mean", 48, 2, 2, 90, "gelu", "mean", False, torch.float16),
    ]
    for i, (name, h, heads, layers, inter, act, pooling, normalize, dtype) in enumerate(specs):
        torch.manual_seed(100 + i)
        cfg = BertConfig(
            vocab_size=vocab,
            hidden_size=h,
            num_attention_heads=heads,
            num_hidden_layers=layers,
            intermediate_size=inter,
            hidden_act=act,
            max_position_embeddings=64,
            initializer_range=0.2,
            type_vocab_size=2,
        )
        model = BertModel(cfg, add_pooling_layer=False).eval()
        # The stored dtype is what rinfer reads: compute the golden from the same rounding.
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(dtype).to(torch.float32))
        t, tt, mask = batch(ids)
        with torch.no_grad():
            hidden = model(input_ids=t, token_type_ids=tt, attention_mask=mask).last_hidden_state
            vec = pool(hidden, mask, pooling)
            if normalize:
                vec = torch.nn.functional.normalize(vec, p=2, dim=1)
        d = TINY / name
        save_folder(d, model, tmp, pooling, normalize, dtype)
        (d / "golden.json").write_text(
            json.dumps(
                {
                    "texts": TINY_TEXTS,
                    "ids": ids,
                    "dim": h,
                    "pooling": pooling,
                    "normalize": normalize,
                    "embeddings_f32_b64": f32_b64(vec.numpy()),
                }
            )
        )
        print(f"{name}: vocab {vocab}, hidden {h}, {layers} layers, {act}, {pooling}, {dtype}")

    # Sequence classification: 3 labels, and a one-logit cross-encoder over pairs.
    for j, (name, labels) in enumerate([("classifier", ["negative", "neutral", "positive"]), ("reranker", None)]):
        torch.manual_seed(200 + j)
        n = 3 if labels else 1
        cfg = BertConfig(
            vocab_size=vocab,
            hidden_size=32,
            num_attention_heads=2,
            num_hidden_layers=2,
            intermediate_size=50,
            hidden_act="gelu",
            max_position_embeddings=64,
            initializer_range=0.2,
            num_labels=n,
        )
        if labels:
            cfg.id2label = dict(enumerate(labels))
            cfg.label2id = {v: k for k, v in cfg.id2label.items()}
        model = BertForSequenceClassification(cfg).eval()
        if labels:
            encs_l = tok.encode_batch(TINY_TEXTS)
            query = None
        else:
            query = "which animal jumps over the dog?"
            encs_l = tok.encode_batch([(query, p) for p in TINY_TEXTS])
        id_lists = [e.ids for e in encs_l]
        t, tt, mask = batch(id_lists, [e.type_ids for e in encs_l])
        with torch.no_grad():
            logits = model(input_ids=t, token_type_ids=tt, attention_mask=mask).logits
        d = TINY / name
        save_folder(d, model, tmp, None, False)
        (d / "golden.json").write_text(
            json.dumps(
                {
                    "texts": TINY_TEXTS,
                    "query": query,
                    "ids": id_lists,
                    "type_ids": [e.type_ids for e in encs_l],
                    "labels": labels,
                    "logits": logits.numpy().astype(float).tolist(),
                }
            )
        )
        print(f"{name}: {n} logits")
    tmp.unlink()


if __name__ == "__main__":
    torch.set_num_threads(1)
    minilm()
    tiny_models()
