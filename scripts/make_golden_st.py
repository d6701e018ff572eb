"""Goldens of the sentence-transformers modules around an encoder, made by
sentence-transformers itself (6.x) and saved in its own folder format:

- `splade-bert` and `splade-distilbert`: SparseEncoder models (a masked-LM
  transformer and SpladePooling: max with relu; sum with log1p_relu), their sparse
  vectors as indices and values, also with top_k (max_active_dims).
- `st-dense-prompts`: a small BERT, Pooling (mean, include_prompt=False), Dense
  (tanh, to 20 dims), Dense (identity, to 16 dims, no bias), Normalize; prompts
  {"query", "doc"} with "query" the default. Outputs with the default prompt, with
  each named prompt, with a literal prompt, without prompt, and with Matryoshka
  truncation (truncate_dim 8, then normalize_embeddings), token embeddings
  (output_value="token_embeddings", with the "doc" prompt: one [tokens x 32]
  matrix per text), and with max_seq_length set to 8 -> tests/data/st/*.

Run in the bench environment:
    .bench-venv/bin/python scripts/make_golden_st.py
"""

from __future__ import annotations

import json
import pathlib
import shutil

import torch
from make_golden import TINY_TEXTS, f32_b64, tiny_tokenizer
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertModel,
    DistilBertConfig,
    DistilBertForMaskedLM,
    PreTrainedTokenizerFast,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "st"
TEXTS = [t for t in TINY_TEXTS if t] + ["what is the capital of france?"]


def wordpiece(d: pathlib.Path) -> PreTrainedTokenizerFast:
    """The tiny WordPiece tokenizer as a transformers tokenizer (max 48 tokens)."""
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = d.parent / "_tok.json"
    tiny_tokenizer(tmp)
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(tmp),
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        model_max_length=48,
    )
    tmp.unlink()
    return tok


def base_model(d: pathlib.Path) -> None:
    """A small BERT with a WordPiece tokenizer, saved as transformers saves it."""
    tok = wordpiece(d)
    torch.manual_seed(31)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_attention_heads=4,
        num_hidden_layers=2,
        intermediate_size=50,
        max_position_embeddings=64,
        initializer_range=0.2,
    )
    BertModel(cfg, add_pooling_layer=False).save_pretrained(d)
    tok.save_pretrained(d)


def splade(name: str, mlm, strategy: str, activation: str) -> None:
    """A SparseEncoder (masked-LM transformer + SpladePooling) and its sparse vectors."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Transformer as BaseTransformer
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    base = OUT / f"_{name}"
    tok = wordpiece(base)
    mlm.save_pretrained(base)
    tok.save_pretrained(base)
    tr = BaseTransformer(str(base), transformer_task="fill-mask", max_seq_length=48)
    pooling = SpladePooling(pooling_strategy=strategy, activation_function=activation)
    model = SparseEncoder(modules=[tr, pooling], device="cpu")
    d = OUT / name
    model.save(str(d))
    shutil.rmtree(base)
    (d / "README.md").unlink(missing_ok=True)  # a generated model card, not test data
    model = SparseEncoder(str(d), device="cpu")

    def sparse(**kw):
        out = model.encode(TEXTS, convert_to_tensor=True, **kw).to_dense()
        rows = []
        for r in out:
            idx = torch.nonzero(r > 0).flatten()
            rows.append({"indices": idx.tolist(), "values": r[idx].double().tolist()})
        return rows

    golden = {"texts": TEXTS, "vocab": tok.vocab_size, "sparse": sparse(), "top5": sparse(max_active_dims=5)}
    (d / "golden.json").write_text(json.dumps(golden))
    print(f"{name}: {sorted(p.name for p in d.iterdir())}")


def main() -> None:
    torch.set_num_threads(1)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    base = OUT / "_base"
    base_model(base)
    torch.manual_seed(32)
    tr = Transformer(str(base), max_seq_length=48)
    pool = Pooling(32, pooling_mode="mean", include_prompt=False)
    dense1 = Dense(32, 20, activation_function=torch.nn.Tanh())
    dense2 = Dense(20, 16, bias=False, activation_function=torch.nn.Identity())
    model = SentenceTransformer(
        modules=[tr, pool, dense1, dense2, Normalize()],
        prompts={"query": "query: ", "doc": "passage: "},
        default_prompt_name="query",
        device="cpu",
    )
    d = OUT / "st-dense-prompts"
    model.save(str(d))
    shutil.rmtree(base)
    (d / "README.md").unlink(missing_ok=True)  # a generated model card, not test data
    model = SentenceTransformer(str(d), device="cpu")

    def enc(**kw):
        return f32_b64(model.encode(TEXTS, convert_to_numpy=True, **kw))

    golden = {
        "texts": TEXTS,
        "dim": 16,
        "default_prompt": enc(),
        "query": enc(prompt_name="query"),
        "doc": enc(prompt_name="doc"),
        "literal": enc(prompt="Represent this sentence: "),
        "no_prompt": enc(prompt=""),
        "truncated_8": enc(prompt_name="doc", truncate_dim=8),
        "truncated_8_normalized": enc(prompt_name="doc", truncate_dim=8, normalize_embeddings=True),
        "tokens_doc": [
            {"shape": list(t.shape), "b64": f32_b64(t.numpy())}
            for t in model.encode(TEXTS, output_value="token_embeddings", prompt_name="doc")
        ],
        "made_by": "sentence-transformers " + __import__("sentence_transformers").__version__,
    }
    model.max_seq_length = 8
    golden["max_seq_length_8"] = enc()
    (d / "golden.json").write_text(json.dumps(golden))
    print("st-dense-prompts:", sorted(p.name for p in d.iterdir()))

    vocab = wordpiece(OUT / "_v").vocab_size
    torch.manual_seed(33)
    bcfg = BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_attention_heads=4,
        num_hidden_layers=2,
        intermediate_size=50,
        max_position_embeddings=64,
        initializer_range=0.2,
    )
    splade("splade-bert", BertForMaskedLM(bcfg).eval(), "max", "relu")
    torch.manual_seed(34)
    dcfg = DistilBertConfig(
        vocab_size=vocab,
        dim=30,
        n_heads=5,
        n_layers=2,
        hidden_dim=53,
        max_position_embeddings=64,
        initializer_range=0.2,
    )
    splade("splade-distilbert", DistilBertForMaskedLM(dcfg).eval(), "sum", "log1p_relu")


if __name__ == "__main__":
    main()
