"""Reference forward passes, in PyTorch, of the encoder families that transformers
runs only with remote code, and their parity goldens.

- NomicBERT follows nomic-ai/contrastors
  `src/contrastors/models/huggingface/modeling_hf_nomic_bert.py` (the Hub's
  nomic-bert-2048 remote code): post-LN (`norm1`, `norm2`), fused `Wqkv`, rotary
  over `rotary_emb_fraction` of the head (rotate-half or interleaved), gated MLP
  `fc2(fc11(x) * silu(fc12(x)))`.
- GTE "new" follows Alibaba-NLP/new-impl `modeling.py`: post-LN (`attn_ln`,
  `mlp_ln`), fused `qkv_proj` with bias, rotary with static NTK scaling
  (`rope_scaling: {type: ntk}`), GLU `down_proj(act(gate) * up)` with
  `[up | gate] = up_gate_proj(x)`; CLS pooling; `NewForSequenceClassification`
  = `classifier(tanh(pooler.dense(h_0)))`.
- JinaBERT v2 follows jinaai/jina-bert-implementation `modeling_bert.py` (as
  text-embeddings-inference's `jina.rs` and candle's `jina_bert.rs` reimplement it):
  BERT post-LN with symmetric ALiBi and `mlp.wo(gelu(a) * b)`, `[a | b] =
  mlp.gated_layers(x)`, then `mlp.layernorm`.

Each model is small, randomly initialised, written with the family's tensor names
and config keys, run on a right-padded batch of mixed lengths, and pooled as
sentence-transformers pools -> tests/data/families/<name>/.

Run in the bench environment (torch, tokenizers, safetensors):
    .bench-venv/bin/python scripts/reference_families.py
The outputs are committed; the libraries are not rinfer dependencies.
"""

from __future__ import annotations

import json
import math
import pathlib
import shutil

import torch
import torch.nn.functional as F
from make_golden import TINY_TEXTS, WORDS, f32_b64, tiny_tokenizer
from make_golden_families import padded, pool, st_modules, unigram_tokenizer
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "families"
MAX_LEN = 96
INPUTS = TINY_TEXTS + [" ".join(WORDS[:40]), "A cheetah is running behind its prey."]


def rotary(x: torch.Tensor, dims: int, base: float, interleaved: bool, ntk: float | None) -> torch.Tensor:
    """x: [B, heads, L, dh]; rotates the first `dims` of each head, positions 0..L-1."""
    if ntk:
        inv = 1.0 / ((base * ntk) ** (torch.arange(0, dims, 2, dtype=torch.float32) / dims))
        inv = inv / ntk ** (2 / dims)
    else:
        inv = 1.0 / (base ** (torch.arange(0, dims, 2, dtype=torch.float32) / dims))
    t = torch.arange(x.shape[2], dtype=torch.float32)
    freqs = torch.outer(t, inv)
    xr, rest = x[..., :dims], x[..., dims:]
    if interleaved:
        cos, sin = freqs.cos().repeat_interleave(2, -1), freqs.sin().repeat_interleave(2, -1)
        x1, x2 = xr[..., ::2], xr[..., 1::2]
        rot = torch.stack((-x2, x1), dim=-1).flatten(-2)
    else:
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        x1, x2 = xr.chunk(2, dim=-1)
        rot = torch.cat((-x2, x1), dim=-1)
    return torch.cat((xr * cos + rot * sin, rest), dim=-1)


def alibi_slopes(n: int) -> list[float]:
    def pow2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n).is_integer():
        return pow2(n)
    closest = 2 ** math.floor(math.log2(n))
    return pow2(closest) + pow2(2 * closest)[0::2][: n - closest]


def attention(q, k, v, mask, alibi: torch.Tensor | None = None):
    """q, k, v: [B, heads, L, dh]; mask [B, L] of 0/1."""
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    s = s + (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    if alibi is not None:
        s = s + alibi
    return torch.softmax(s, dim=-1) @ v


class Params:
    """Random tensors under their checkpoint names."""

    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.t: dict[str, torch.Tensor] = {}

    def w(self, name: str, *shape: int, scale: float = 0.2) -> torch.Tensor:
        self.t[name] = torch.randn(*shape, generator=self.g) * scale
        return self.t[name]

    def norm(self, name: str, h: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.t[name + ".weight"] = 1 + torch.randn(h, generator=self.g) * 0.1
        self.t[name + ".bias"] = torch.randn(h, generator=self.g) * 0.1
        return self.t[name + ".weight"], self.t[name + ".bias"]


def ln(x, p: tuple[torch.Tensor, torch.Tensor], eps: float):
    return F.layer_norm(x, (x.shape[-1],), p[0], p[1], eps)


def heads(x: torch.Tensor, n: int) -> torch.Tensor:
    b, length, h = x.shape
    return x.view(b, length, n, h // n).transpose(1, 2)


def merge(x: torch.Tensor) -> torch.Tensor:
    b, n, length, dh = x.shape
    return x.transpose(1, 2).reshape(b, length, n * dh)


def nomic(p: Params, cfg: dict, ids, mask):
    h, n, inter = cfg["n_embd"], cfg["n_head"], cfg["n_inner"]
    eps, dims = cfg["layer_norm_epsilon"], int(h // n * cfg["rotary_emb_fraction"])
    word = p.w("embeddings.word_embeddings.weight", cfg["vocab_size"], h)
    tt = p.w("embeddings.token_type_embeddings.weight", cfg["type_vocab_size"], h)
    x = ln(word[ids] + tt[torch.zeros_like(ids)], p.norm("emb_ln", h), eps)
    for i in range(cfg["n_layer"]):
        pre = f"encoder.layers.{i}."
        qkv = x @ p.w(pre + "attn.Wqkv.weight", 3 * h, h).T
        q, k, v = (heads(t, n) for t in qkv.split(h, dim=-1))
        q = rotary(q, dims, cfg["rotary_emb_base"], cfg["rotary_emb_interleaved"], None)
        k = rotary(k, dims, cfg["rotary_emb_base"], cfg["rotary_emb_interleaved"], None)
        a = merge(attention(q, k, v, mask)) @ p.w(pre + "attn.out_proj.weight", h, h).T
        x = ln(a + x, p.norm(pre + "norm1", h), eps)
        y = x @ p.w(pre + "mlp.fc11.weight", inter, h).T
        gate = x @ p.w(pre + "mlp.fc12.weight", inter, h).T
        y = (y * F.silu(gate)) @ p.w(pre + "mlp.fc2.weight", h, inter).T
        x = ln(y + x, p.norm(pre + "norm2", h), eps)
    return x


def gte(p: Params, cfg: dict, ids, mask, prefix: str = ""):
    h, n, inter, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"], cfg["layer_norm_eps"]
    ntk = (cfg.get("rope_scaling") or {}).get("factor")
    word = p.w(prefix + "embeddings.word_embeddings.weight", cfg["vocab_size"], h)
    x = word[ids]
    if cfg["type_vocab_size"] > 0:
        x = x + p.w(prefix + "embeddings.token_type_embeddings.weight", cfg["type_vocab_size"], h)[0]
    x = ln(x, p.norm(prefix + "embeddings.LayerNorm", h), eps)
    for i in range(cfg["num_hidden_layers"]):
        pre = f"{prefix}encoder.layer.{i}."
        qkv = x @ p.w(pre + "attention.qkv_proj.weight", 3 * h, h).T + p.w(pre + "attention.qkv_proj.bias", 3 * h)
        q, k, v = (heads(t, n) for t in qkv.split(h, dim=-1))
        q, k = (rotary(t, h // n, cfg["rope_theta"], False, ntk) for t in (q, k))
        a = merge(attention(q, k, v, mask))
        a = a @ p.w(pre + "attention.o_proj.weight", h, h).T + p.w(pre + "attention.o_proj.bias", h)
        x = ln(x + a, p.norm(pre + "attn_ln", h), eps)
        up, gate = (x @ p.w(pre + "mlp.up_gate_proj.weight", 2 * inter, h).T).split(inter, dim=-1)
        y = (F.gelu(gate) * up) @ p.w(pre + "mlp.down_proj.weight", h, inter).T + p.w(pre + "mlp.down_proj.bias", h)
        x = ln(x + y, p.norm(pre + "mlp_ln", h), eps)
    return x


def jina(p: Params, cfg: dict, ids, mask):
    h, n, inter, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"], cfg["layer_norm_eps"]
    word = p.w("embeddings.word_embeddings.weight", cfg["vocab_size"], h)
    tt = p.w("embeddings.token_type_embeddings.weight", cfg["type_vocab_size"], h)
    x = ln(word[ids] + tt[0], p.norm("embeddings.LayerNorm", h), eps)
    length = ids.shape[1]
    pos = torch.arange(length)
    dist = (pos[None, :] - pos[:, None]).abs().float()
    alibi = -torch.tensor(alibi_slopes(n))[:, None, None] * dist[None]
    for i in range(cfg["num_hidden_layers"]):
        pre = f"encoder.layer.{i}."

        def lin(name: str, out: int, inp: int, pre: str = pre):
            w, b = p.w(pre + name + ".weight", out, inp), p.w(pre + name + ".bias", out)
            return lambda t: t @ w.T + b

        q, k, v = (heads(lin(f"attention.self.{m}", h, h)(x), n) for m in ("query", "key", "value"))
        a = lin("attention.output.dense", h, h)(merge(attention(q, k, v, mask, alibi[None])))
        x = ln(a + x, p.norm(pre + "attention.output.LayerNorm", h), eps)
        hg = x @ p.w(pre + "mlp.gated_layers.weight", 2 * inter, h).T
        gated, non_gated = hg[..., :inter], hg[..., inter:]
        y = lin("mlp.wo", h, inter)(F.gelu(gated) * non_gated)
        x = ln(y + x, p.norm(pre + "mlp.layernorm", h), eps)
    return x


def write(name: str, p: Params, cfg: dict, tok, encs, golden: dict, modes: list[str] | None, normalize: bool) -> None:
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in p.t.items()}, str(d / "model.safetensors"), metadata={"format": "pt"})
    (d / "config.json").write_text(json.dumps(cfg, indent=1))
    tok.save(str(d / "tokenizer.json"))
    (d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": MAX_LEN}))
    if modes:
        h = cfg.get("hidden_size") or cfg["n_embd"]
        st_modules(d, h, modes, normalize, legacy=False)
    golden |= {"texts": INPUTS, "ids": [e.ids for e in encs]}
    (d / "golden.json").write_text(json.dumps(golden, ensure_ascii=False))
    print(f"{name}: {cfg.get('model_type')}, {len(p.t)} tensors, max tokens {max(len(e.ids) for e in encs)}")


def embed_golden(hidden, mask, modes: list[str], normalize: bool) -> dict:
    vec = torch.cat([pool(hidden, mask, m) for m in modes], dim=-1)
    if normalize:
        vec = F.normalize(vec, p=2, dim=1)
    return {"kind": "embedder", "dim": vec.shape[1], "normalize": normalize, "embeddings_f32_b64": f32_b64(vec.numpy())}


def main() -> None:
    torch.set_num_threads(1)
    tmp = OUT / "_wordpiece.json"
    OUT.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer(tmp)
    tmp.unlink()
    tok.enable_truncation(MAX_LEN)
    encs = tok.encode_batch(INPUTS)
    ids, mask = padded(encs, 0)
    tok.no_truncation()
    vocab = tok.get_vocab_size()

    # NomicBERT: swiglu, rotary over half of each head, interleaved pairs, no biases.
    ncfg = {
        "model_type": "nomic_bert",
        "architectures": ["NomicBertModel"],
        "vocab_size": vocab,
        "n_embd": 48,
        "n_layer": 2,
        "n_head": 4,
        "n_inner": 256,
        "activation_function": "swiglu",
        "rotary_emb_fraction": 0.5,
        "rotary_emb_base": 1000,
        "rotary_emb_interleaved": True,
        "rotary_scaling_factor": None,
        "max_trained_positions": 2048,
        "n_positions": 512,
        "qkv_proj_bias": False,
        "mlp_fc1_bias": False,
        "mlp_fc2_bias": False,
        "prenorm": False,
        "layer_norm_epsilon": 1e-12,
        "type_vocab_size": 2,
    }
    p = Params(21)
    with torch.no_grad():
        hid = nomic(p, ncfg, ids, mask)
    write("nomic-mean", p, ncfg, tok, encs, embed_golden(hid, mask, ["mean"], True), ["mean"], True)

    # GTE new: NTK-scaled rotary, no token types, CLS pooling; and its reranker.
    gcfg = {
        "model_type": "new",
        "architectures": ["NewModel"],
        "vocab_size": vocab,
        "hidden_size": 40,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 57,
        "hidden_act": "gelu",
        "max_position_embeddings": 512,
        "type_vocab_size": 0,
        "layer_norm_eps": 1e-12,
        "layer_norm_type": "layer_norm",
        "position_embedding_type": "rope",
        "rope_theta": 500000.0,
        "rope_scaling": {"type": "ntk", "factor": 2.0},
        "pack_qkv": True,
    }
    p = Params(22)
    with torch.no_grad():
        hid = gte(p, gcfg, ids, mask)
    write("gte-cls", p, gcfg, tok, encs, embed_golden(hid, mask, ["cls"], True), ["cls"], True)
    # The multilingual reranker's shape: XLM-R's Unigram tokenizer (pairs keep
    # token type 0) and one token type.
    uni = unigram_tokenizer()
    rcfg = dict(
        gcfg,
        architectures=["NewForSequenceClassification"],
        type_vocab_size=1,
        rope_scaling=None,
        rope_theta=10000.0,
        num_labels=1,
        id2label={"0": "LABEL_0"},
        vocab_size=uni.get_vocab_size(),
    )
    query = "which animal jumps over the dog?"
    uni.enable_truncation(MAX_LEN)
    pair_encs = uni.encode_batch([(query, t) for t in INPUTS])
    uni.no_truncation()
    pids, pmask = padded(pair_encs, 1)
    p = Params(23)
    with torch.no_grad():
        hid = gte(p, rcfg, pids, pmask, prefix="new.")
        pooled = torch.tanh(hid[:, 0] @ p.w("new.pooler.dense.weight", 40, 40).T + p.w("new.pooler.dense.bias", 40))
        logits = pooled @ p.w("classifier.weight", 1, 40).T + p.w("classifier.bias", 1)
    golden = {"kind": "reranker", "query": query, "labels": ["LABEL_0"], "logits": logits.double().tolist()}
    write("gte-reranker", p, rcfg, uni, pair_encs, golden, None, False)

    # JinaBERT v2: ALiBi with 6 heads (not a power of two), GeGLU, mean pooling.
    jcfg = {
        "model_type": "bert",
        "architectures": ["JinaBertModel"],
        "position_embedding_type": "alibi",
        "feed_forward_type": "geglu",
        "vocab_size": vocab,
        "hidden_size": 42,
        "num_hidden_layers": 2,
        "num_attention_heads": 6,
        "intermediate_size": 59,
        "hidden_act": "gelu",
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
    }
    p = Params(24)
    with torch.no_grad():
        hid = jina(p, jcfg, ids, mask)
    write("jina-mean", p, jcfg, tok, encs, embed_golden(hid, mask, ["mean"], True), ["mean"], True)


if __name__ == "__main__":
    main()
