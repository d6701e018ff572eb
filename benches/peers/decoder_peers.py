"""A Qwen3-Embedding-0.6B-shaped decoder: rinfer vs PyTorch (transformers, SDPA
attention), same token ids, same machine, one run.

The model has Qwen3-Embedding-0.6B's shape (28 layers, hidden 1024, 16 query and
8 key/value heads of width 128, MLP 3072, q/k norms, tied embeddings) with random
weights; the vocabulary is cut to 32k rows, which changes no matrix product.
Pooling is the last token, then L2 normalisation, as Qwen3-Embedding's
sentence-transformers modules do. Cases: 32 x 128 tokens, 8 x 512, and 64 texts of
mixed lengths (8 to 256). PyTorch gets padded batches with an attention mask (left
padding, so the last position is the last token, as sentence-transformers runs
Qwen3-Embedding); rinfer gets the same ids ragged. Prints median latency per engine
and the ratio PyTorch / rinfer per precision rinfer runs (f32; bf16 and int8 where
the CPU has kernels for them, with their cosine to the f32 vectors); writes
bench-results/decoder_peers.json and a PNG plot.

Run through ./benches/peers/decoder_peers.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import tempfile

import numpy as np
import torch
from timing import median_time

VOCAB = 32_000


def build(d: pathlib.Path):
    """Saves a random Qwen3-Embedding-0.6B-shaped model folder into `d`; returns it."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=VOCAB,
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    )
    model = Qwen3Model(cfg).eval()
    model.save_pretrained(d, safe_serialization=True)
    vocab = {f"t{i}": i for i in range(VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(d / "tokenizer.json"))
    (d / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]
        )
    )
    (d / "1_Pooling").mkdir()
    (d / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 1024, "pooling_mode_lasttoken": True})
    )
    (d / "2_Normalize").mkdir()
    return model


def make_cases(rng: np.random.Generator) -> list[dict]:
    def seq(n: int) -> list[int]:
        return rng.integers(1, VOCAB, n).tolist()

    mixed = np.concatenate([rng.integers(8, 65, 40), rng.integers(65, 161, 16), rng.integers(161, 257, 8)])
    rng.shuffle(mixed)
    return [
        {"name": "32x128", "ids": [seq(128) for _ in range(32)], "reps": 2},
        {"name": "8x512", "ids": [seq(512) for _ in range(8)], "reps": 2},
        {"name": "64 mixed", "ids": [seq(int(n)) for n in mixed], "reps": 2},
    ]


def torch_runner(model, ids):
    n = max(map(len, ids))
    x = torch.zeros(len(ids), n, dtype=torch.long)
    m = torch.zeros_like(x)
    for i, r in enumerate(ids):
        x[i, n - len(r) :] = torch.tensor(r)
        m[i, n - len(r) :] = 1

    def run():
        with torch.inference_mode():
            h = model(input_ids=x, attention_mask=m).last_hidden_state[:, -1]
            return torch.nn.functional.normalize(h, dim=-1).numpy()

    return run


def rinfer_times(binary: str, d: pathlib.Path, spec: pathlib.Path, dtype: str, threads: int, vec_out: pathlib.Path):
    env = dict(os.environ, RINFER_NUM_THREADS=str(threads))
    cmd = [binary, str(d), str(spec), "2", dtype, str(vec_out)]
    res = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        print(f"  rinfer {dtype}: not run ({res.stderr.strip()[:200]})")
        return None
    return {j["case"]: j["seconds"] for j in map(json.loads, res.stdout.splitlines()) if "case" in j}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True, help="path of the model_timing example binary")
    ap.add_argument("--threads", type=int, default=2, help="threads of every engine")
    ap.add_argument("--dtypes", default="f32,bf16,int8", help="rinfer precisions, comma-separated")
    ap.add_argument("--out", default="bench-results", help="folder for JSON and PNG")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"CPU: {cpu}; {args.threads} threads; torch {torch.__version__}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp) / "qwen3-0.6b-shape"
        model = build(d)
        model.config._attn_implementation = "sdpa"
        cases = make_cases(np.random.default_rng(1))
        probe = [c["ids"][i] for c in cases for i in range(2)]
        spec = pathlib.Path(tmp) / "cases.json"
        spec.write_text(json.dumps({"cases": cases, "texts": [" ".join(f"t{i}" for i in p) for p in probe]}))
        rin, vecs = {}, {}
        for dtype in args.dtypes.split(","):
            out = pathlib.Path(tmp) / f"vec-{dtype}.f32"
            t = rinfer_times(args.binary, d, spec, dtype, args.threads, out)
            if t is not None:
                rin[dtype] = t
                vecs[dtype] = np.fromfile(out, dtype="<f4").reshape(len(probe), -1)
            print(f"  rinfer {dtype} done", flush=True)
        want = torch_runner(model, probe)()
        quality = {}
        for dtype, v in vecs.items():
            cos = (v * want).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(want, axis=1)
            quality[dtype] = float(cos.min())
            print(f"  rinfer {dtype}: min cosine to PyTorch f32 over {len(probe)} texts {quality[dtype]:.6f}")
        for case in cases:
            row = {"case": case["name"], "tokens": sum(map(len, case["ids"]))}
            row["torch"] = median_time(torch_runner(model, case["ids"]), case["reps"])
            for dtype, t in rin.items():
                row[f"rinfer_{dtype}"] = t[case["name"]]
                row[f"speedup_{dtype}"] = row["torch"] / t[case["name"]]
            rows.append(row)
            cols = "  ".join(
                f"rinfer {dt} {row[f'rinfer_{dt}'] * 1e3:8.0f} ms ({row[f'speedup_{dt}']:.2f}x)" for dt in rin
            )
            print(f"{case['name']:9s} torch {row['torch'] * 1e3:8.0f} ms  {cols}", flush=True)
    out = pathlib.Path(args.out)
    out.mkdir(exist_ok=True)
    result = {"cpu": cpu, "threads": args.threads, "quality_min_cosine": quality, "rows": rows}
    (out / "decoder_peers.json").write_text(json.dumps(result, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4))
        engines = ["torch"] + [f"rinfer_{dt}" for dt in rin]
        xs = np.arange(len(rows))
        w = 0.8 / len(engines)
        for k, eng in enumerate(engines):
            ax.bar(xs + (k - (len(engines) - 1) / 2) * w, [r[eng] * 1e3 for r in rows], w, label=eng)
        ax.set_xticks(xs, [r["case"] for r in rows])
        ax.set_ylabel("median ms")
        ax.set_title(f"Qwen3-0.6B-shaped embedder, {args.threads} threads, {cpu}", fontsize=9)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "decoder_peers.png", dpi=110)
        print(f"wrote {out / 'decoder_peers.json'} and {out / 'decoder_peers.png'}")
    except ImportError:
        print(f"wrote {out / 'decoder_peers.json'} (no matplotlib: no plot)")


if __name__ == "__main__":
    main()
