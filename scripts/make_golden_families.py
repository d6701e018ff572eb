"""Makes the parity goldens of the encoder families other than BERT.

For each family: a small randomly initialised model built by `transformers` from
that family's configuration with sizes shrunk (odd intermediate sizes, head widths
that are not powers of two), a tokenizer of the family's kind trained offline with
the `tokenizers` library (Unigram as XLM-RoBERTa, byte-level BPE as RoBERTa,
WordPiece as DistilBERT), sentence-transformers folder files in the formats of
different releases (2.x boolean pooling flags, 6.x `pooling_mode`), and the outputs
of transformers on a padded batch of mixed lengths, pooled as sentence-transformers
pools -> tests/data/families/<name>/{model files, golden.json}.

Run in the bench environment (torch, transformers, tokenizers):
    .bench-venv/bin/python scripts/make_golden_families.py
The outputs are committed; the libraries are not rinfer dependencies.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import torch
from make_golden import TEXTS, TINY_TEXTS, WORDS, f32_b64, tiny_tokenizer
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertModel,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    ModernBertModel,
    MPNetConfig,
    MPNetForSequenceClassification,
    MPNetModel,
    RobertaConfig,
    RobertaModel,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
    XLMRobertaModel,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "families"
MAX_LEN = 48
CORPUS = TEXTS[:-3] + [" ".join(WORDS)] * 4 + TINY_TEXTS
INPUTS = TINY_TEXTS + ["Привет, как дела?", "東京は日本の首都です。", "A cheetah is running behind its prey."]
RSPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4: pad 1, as XLM-R


def unigram_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=RSPECIALS, unk_token="<unk>")
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return tok


def bpe_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=RSPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    return tok


def mpnet_tokenizer() -> Tokenizer:
    """WordPiece with MPNet's specials: <s> 0, <pad> 1, </s> 2, pairs <s> a </s></s> b </s>."""
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?;:'\"()-")
    vocab = list(dict.fromkeys(specials + WORDS + chars + ["##" + c for c in chars]))
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return tok


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """sentence-transformers' Pooling on right-padded batches."""
    m = mask.unsqueeze(-1).float()
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(m == 0, float("-inf")).max(dim=1).values
    if mode == "mean":
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if mode == "mean_sqrt_len_tokens":
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9).sqrt()
    if mode == "weightedmean":
        w = m * torch.arange(1, hidden.shape[1] + 1, dtype=torch.float32).view(1, -1, 1)
        return (hidden * w).sum(1) / w.sum(1).clamp(min=1e-9)
    if mode == "lasttoken":
        last = mask.sum(1) - 1
        return hidden[torch.arange(hidden.shape[0]), last]
    raise ValueError(mode)


def padded(encs, pad_id: int):
    n = max(len(e.ids) for e in encs)
    ids = torch.full((len(encs), n), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        mask[i, : len(e.ids)] = 1
    return ids, mask


def save(d: pathlib.Path, model, tok: Tokenizer, dtype=torch.float32, max_len: int = MAX_LEN) -> None:
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
    model.config.to_json_file(str(d / "config.json"))
    tok.save(str(d / "tokenizer.json"))
    (d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_len}))


def st_modules(d: pathlib.Path, hidden: int, modes: list[str], normalize: bool, legacy: bool) -> None:
    mods = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        mods.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (d / "modules.json").write_text(json.dumps(mods, indent=1))
    (d / "1_Pooling").mkdir()
    if legacy:  # sentence-transformers 2.x-5.x
        flags = {
            "pooling_mode_cls_token": "cls",
            "pooling_mode_mean_tokens": "mean",
            "pooling_mode_max_tokens": "max",
            "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
            "pooling_mode_weightedmean_tokens": "weightedmean",
            "pooling_mode_lasttoken": "lasttoken",
        }
        cfg = {"word_embedding_dimension": hidden} | {k: v in modes for k, v in flags.items()}
    else:  # sentence-transformers 6.x
        cfg = {
            "embedding_dimension": hidden,
            "pooling_mode": modes[0] if len(modes) == 1 else modes,
            "include_prompt": True,
        }
    (d / "1_Pooling" / "config.json").write_text(json.dumps(cfg))


def embedder(name, model, tok, pad_id, modes, normalize, legacy, dtype=torch.float32, max_len=MAX_LEN, extra=None):
    # The stored dtype is what rinfer reads: compute the golden from the same rounding.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    tok.enable_truncation(max_len)
    texts = INPUTS + (extra or [])
    encs = tok.encode_batch(texts)
    ids, mask = padded(encs, pad_id)
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        vec = torch.cat([pool(hidden, mask, m) for m in modes], dim=-1)
        if normalize:
            vec = torch.nn.functional.normalize(vec, p=2, dim=1)
    tok.no_truncation()
    d = OUT / name
    save(d, model, tok, dtype, max_len)
    h = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.dim
    st_modules(d, h, modes, normalize, legacy)
    golden = {
        "kind": "embedder",
        "texts": texts,
        "ids": [e.ids for e in encs],
        "dim": vec.shape[1],
        "normalize": normalize,
        "embeddings_f32_b64": f32_b64(vec.numpy()),
    }
    (d / "golden.json").write_text(json.dumps(golden, ensure_ascii=False))
    print(f"{name}: {type(model).__name__}, modes {modes}, {dtype}, max tokens {max(len(e.ids) for e in encs)}")


def classifier(name, model, tok, pad_id, query: str | None, max_len=MAX_LEN):
    tok.enable_truncation(max_len)
    encs = tok.encode_batch([(query, t) for t in INPUTS] if query else INPUTS)
    ids, mask = padded(encs, pad_id)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    tok.no_truncation()
    d = OUT / name
    save(d, model, tok, max_len=max_len)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    golden = {
        "kind": "reranker" if query else "classifier",
        "texts": INPUTS,
        "query": query,
        "ids": [e.ids for e in encs],
        "labels": labels,
        "logits": logits.numpy().astype(float).tolist(),
    }
    (d / "golden.json").write_text(json.dumps(golden, ensure_ascii=False))
    print(f"{name}: {type(model).__name__}, {len(labels)} logits")


def main() -> None:
    torch.set_num_threads(1)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    uni, bpe = unigram_tokenizer(), bpe_tokenizer()
    tmp = OUT / "_wordpiece.json"
    wp = tiny_tokenizer(tmp)
    tmp.unlink()

    # XLM-RoBERTa: Unigram, positions from pad + 1, 6.x pooling config, 3 heads of 12.
    torch.manual_seed(1)
    xcfg = {
        "vocab_size": uni.get_vocab_size(),
        "hidden_size": 36,
        "num_attention_heads": 3,
        "num_hidden_layers": 2,
        "intermediate_size": 71,
        "max_position_embeddings": MAX_LEN + 2,
        "type_vocab_size": 1,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "initializer_range": 0.2,
    }
    embedder(
        "xlmr-mean",
        XLMRobertaModel(XLMRobertaConfig(**xcfg), add_pooling_layer=False).eval(),
        uni,
        1,
        ["mean"],
        True,
        legacy=False,
    )
    # The same family stored in bf16, with two pooling modes concatenated (6.x list form).
    torch.manual_seed(2)
    embedder(
        "xlmr-bf16-cls-max",
        XLMRobertaModel(XLMRobertaConfig(**xcfg), add_pooling_layer=False).eval(),
        uni,
        1,
        ["cls", "max"],
        False,
        legacy=False,
        dtype=torch.bfloat16,
    )
    # RoBERTa: byte-level BPE, gelu_new, legacy pooling flags, weighted mean.
    torch.manual_seed(3)
    rcfg = dict(
        xcfg,
        vocab_size=bpe.get_vocab_size(),
        hidden_size=40,
        num_attention_heads=4,
        intermediate_size=67,
        hidden_act="gelu_new",
        num_hidden_layers=3,
    )
    embedder(
        "roberta-weightedmean",
        RobertaModel(RobertaConfig(**rcfg), add_pooling_layer=False).eval(),
        bpe,
        1,
        ["weightedmean"],
        True,
        legacy=True,
    )
    # XLM-R cross-encoder (bge-reranker's shape): pairs <s> q </s></s> p </s>.
    torch.manual_seed(4)
    rr = XLMRobertaForSequenceClassification(XLMRobertaConfig(**xcfg, num_labels=1)).eval()
    classifier("xlmr-reranker", rr, uni, 1, "which animal jumps over the dog?")
    # DistilBERT: WordPiece, no token types, relu, mean_sqrt_len + max via legacy flags.
    torch.manual_seed(5)
    dcfg = {
        "vocab_size": wp.get_vocab_size(),
        "dim": 30,
        "n_heads": 5,
        "n_layers": 2,
        "hidden_dim": 53,
        "max_position_embeddings": MAX_LEN + 16,
        "activation": "relu",
        "initializer_range": 0.2,
        "pad_token_id": 0,
    }
    embedder(
        "distilbert-sqrt-max",
        DistilBertModel(DistilBertConfig(**dcfg)).eval(),
        wp,
        0,
        ["max", "mean_sqrt_len_tokens"],
        False,
        legacy=True,
    )
    torch.manual_seed(6)
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    dc = DistilBertConfig(
        **dict(dcfg, activation="gelu"), num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    classifier("distilbert-classifier", DistilBertForSequenceClassification(dc).eval(), wp, 0, None)

    # MPNet: relative-position buckets need inputs past the exact range (8) and the
    # logarithmic one (up to 128): a 240-token text, max_seq_length 256.
    mp = mpnet_tokenizer()
    torch.manual_seed(7)
    mcfg = {
        "vocab_size": mp.get_vocab_size(),
        "hidden_size": 36,
        "num_attention_heads": 3,
        "num_hidden_layers": 2,
        "intermediate_size": 61,
        "max_position_embeddings": 258,
        "initializer_range": 0.2,
        "pad_token_id": 1,
    }
    long_text = " ".join(WORDS * 5)[:1100]
    embedder(
        "mpnet-mean",
        MPNetModel(MPNetConfig(**mcfg), add_pooling_layer=False).eval(),
        mp,
        1,
        ["mean"],
        True,
        legacy=False,
        max_len=256,
        extra=[long_text, " ".join(WORDS[:20])],
    )
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    d = torch.arange(-600, 601)
    buckets = MPNetEncoder.relative_position_bucket(d, num_buckets=32, max_distance=128)
    (OUT / "mpnet-mean" / "buckets.json").write_text(json.dumps({"from": -600, "buckets": buckets.tolist()}))
    torch.manual_seed(8)
    mc = MPNetForSequenceClassification(MPNetConfig(**mcfg, num_labels=1)).eval()
    classifier("mpnet-reranker", mc, mp, 1, "which animal jumps over the dog?", max_len=256)

    # ModernBERT: pre-LN, GeGLU, rotary with global/local bases, a local window
    # (local_attention 8: |i - j| <= 4) far shorter than the inputs, global every
    # 3rd layer; byte-level BPE. f32 and bf16 weights; a mean-pooling classifier.
    modern = {
        "vocab_size": bpe.get_vocab_size(),
        "hidden_size": 48,
        "num_attention_heads": 3,
        "num_hidden_layers": 4,
        "intermediate_size": 37,
        "max_position_embeddings": 128,
        "local_attention": 8,
        "global_attn_every_n_layers": 3,
        "global_rope_theta": 160000.0,
        "local_rope_theta": 10000.0,
        "initializer_range": 0.2,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "cls_token_id": 0,
        "sep_token_id": 2,
        "attn_implementation": "eager",
    }
    torch.manual_seed(9)
    embedder(
        "modernbert-mean", ModernBertModel(ModernBertConfig(**modern)).eval(), bpe, 1, ["mean"], True, legacy=False
    )
    torch.manual_seed(10)
    embedder(
        "modernbert-bf16-cls",
        ModernBertModel(ModernBertConfig(**modern)).eval(),
        bpe,
        1,
        ["cls"],
        False,
        legacy=False,
        dtype=torch.bfloat16,
    )
    torch.manual_seed(11)
    labels = {0: "no", 1: "yes"}
    mc = ModernBertConfig(
        **modern, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}, classifier_pooling="mean"
    )
    classifier("modernbert-classifier", ModernBertForSequenceClassification(mc).eval(), bpe, 1, None)


if __name__ == "__main__":
    main()
