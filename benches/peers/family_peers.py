"""Base-size encoders of three families: rinfer vs PyTorch (transformers, SDPA
attention) and ONNX Runtime (where the export works), same token ids, same
machine, one run, f32.

Models are random-weight XLM-RoBERTa-base, MPNet-base and ModernBERT-base shapes
(12 or 22 layers, hidden 768; the vocabulary is cut to 30k rows, which changes no
matrix product). Cases: 32 x 128 tokens, 8 x 512, 64 texts of mixed lengths (8 to
512), and for ModernBERT 4 x 2048 (local attention: cost near linear past its
128-token window). Peers get padded batches with an attention mask (how they
run); rinfer gets the same ids ragged. Every engine's output is mean-pooled.
Prints median latency per engine and rinfer / best peer; writes
bench-results/family_peers.json and a PNG plot.

Run through ./benches/peers/family_peers.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile

import numpy as np
import torch
from timing import median_time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from make_golden import tiny_tokenizer

VOCAB = 30_000


def build(family: str, d: pathlib.Path):
    """Saves a random base-shape model of `family` into `d`; returns it."""
    from transformers import (
        ModernBertConfig,
        ModernBertModel,
        MPNetConfig,
        MPNetModel,
        XLMRobertaConfig,
        XLMRobertaModel,
    )

    torch.manual_seed(0)
    if family == "xlm-roberta":
        cfg = XLMRobertaConfig(vocab_size=VOCAB, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1)
        model = XLMRobertaModel(cfg, add_pooling_layer=False)
    elif family == "mpnet":
        model = MPNetModel(MPNetConfig(vocab_size=VOCAB, max_position_embeddings=514), add_pooling_layer=False)
    else:
        cfg = ModernBertConfig(
            vocab_size=VOCAB, pad_token_id=1, bos_token_id=0, eos_token_id=2, cls_token_id=0, sep_token_id=2
        )
        model = ModernBertModel(cfg)
    model.eval().save_pretrained(d, safe_serialization=True)
    tiny_tokenizer(d / "tokenizer.json")
    return model


def make_cases(family: str, rng: np.random.Generator) -> list[dict]:
    def seq(n: int) -> list[int]:
        return [0] + rng.integers(5, VOCAB, n - 2).tolist() + [2]

    mixed = np.concatenate([rng.integers(8, 65, 40), rng.integers(65, 257, 16), rng.integers(257, 513, 8)])
    rng.shuffle(mixed)
    cases = [
        {"name": "32x128", "ids": [seq(128) for _ in range(32)], "reps": 3},
        {"name": "8x512", "ids": [seq(512) for _ in range(8)], "reps": 3},
        # Padded to 512 the peers run 32k token slots: one timed run after a warm-up.
        {"name": "64 mixed", "ids": [seq(int(n)) for n in mixed], "reps": 1},
    ]
    if family == "modernbert":
        cases.append({"name": "4x2048", "ids": [seq(2048) for _ in range(4)], "reps": 1})
    return cases


def padded(ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(map(len, ids))
    x = torch.ones(len(ids), n, dtype=torch.long)
    m = torch.zeros_like(x)
    for i, r in enumerate(ids):
        x[i, : len(r)] = torch.tensor(r)
        m[i, : len(r)] = 1
    return x, m


def torch_runner(model, ids):
    x, m = padded(ids)

    def run():
        with torch.inference_mode():
            h = model(input_ids=x, attention_mask=m).last_hidden_state
            mm = m[..., None].float()
            return ((h * mm).sum(1) / mm.sum(1)).numpy()

    return run


def export_onnx(model, path: pathlib.Path) -> bool:
    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    x = torch.tensor([[0, 10, 11, 2], [0, 10, 2, 1]])
    try:
        with torch.no_grad():
            torch.onnx.export(
                Enc(),
                (x, (x != 1).long()),
                str(path),
                input_names=["input_ids", "attention_mask"],
                output_names=["h"],
                dynamic_axes={k: {0: "b", 1: "s"} for k in ["input_ids", "attention_mask", "h"]},
                opset_version=17,
                dynamo=False,
            )
        return True
    except Exception as e:  # noqa: BLE001 - an export that fails is reported, not fatal
        print(f"  ONNX export failed ({type(e).__name__}: {str(e)[:120]}); no ONNX Runtime column")
        return False


def ort_runner(sess, ids):
    x, m = padded(ids)
    feed = {"input_ids": x.numpy(), "attention_mask": m.numpy()}

    def run():
        h = sess.run(None, feed)[0]
        mm = feed["attention_mask"][..., None].astype(np.float32)
        return (h * mm).sum(1) / mm.sum(1)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True, help="path of the model_timing example binary")
    ap.add_argument("--threads", type=int, default=2, help="threads of every engine")
    ap.add_argument("--families", default="xlm-roberta,mpnet,modernbert", help="comma-separated")
    ap.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=True, help="ONNX Runtime column")
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
    print(f"CPU: {cpu}; {args.threads} threads; torch {torch.__version__}")
    rows = []
    for family in args.families.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            d = pathlib.Path(tmp) / family
            model = build(family, d)
            if family != "modernbert":
                model.config._attn_implementation = "sdpa"
            cases = make_cases(family, np.random.default_rng(1))
            spec = pathlib.Path(tmp) / "cases.json"
            spec.write_text(json.dumps({"cases": cases, "texts": ["warm up"]}))
            env = dict(os.environ, RINFER_NUM_THREADS=str(args.threads))
            out = subprocess.run(
                [args.binary, str(d), str(spec), "5"], env=env, check=True, capture_output=True, text=True
            ).stdout
            rin = {j["case"]: j["seconds"] for j in map(json.loads, out.splitlines())}
            sess = None
            if args.onnx:
                import onnxruntime as ort

                onnx_path = pathlib.Path(tmp) / "model.onnx"
                if export_onnx(model, onnx_path):
                    so = ort.SessionOptions()
                    so.intra_op_num_threads = args.threads
                    so.inter_op_num_threads = 1
                    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
            for case in cases:
                row = {"family": family, "case": case["name"], "rinfer": rin[case["name"]]}
                row["torch"] = median_time(torch_runner(model, case["ids"]), case["reps"])
                if sess is not None:
                    row["onnxruntime"] = median_time(ort_runner(sess, case["ids"]), case["reps"])
                peers = [row[k] for k in ("torch", "onnxruntime") if k in row]
                row["speedup_vs_best_peer"] = min(peers) / row["rinfer"]
                row["speedup_vs_torch"] = row["torch"] / row["rinfer"]
                rows.append(row)
                ortxt = f"{row['onnxruntime'] * 1e3:9.1f}" if "onnxruntime" in row else "      n/a"
                print(
                    f"{family:12s} {case['name']:9s} rinfer {row['rinfer'] * 1e3:9.1f} ms  torch "
                    f"{row['torch'] * 1e3:9.1f} ms  ort {ortxt} ms  rinfer/best peer "
                    f"{row['speedup_vs_best_peer']:.2f}x  rinfer/torch {row['speedup_vs_torch']:.2f}x",
                    flush=True,
                )
    out = pathlib.Path(args.out)
    out.mkdir(exist_ok=True)
    (out / "family_peers.json").write_text(json.dumps({"cpu": cpu, "threads": args.threads, "rows": rows}, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(10, 4))
        labels = [f"{r['family']}\n{r['case']}" for r in rows]
        xs = np.arange(len(rows))
        for k, (eng, off) in enumerate([("rinfer", -0.27), ("torch", 0.0), ("onnxruntime", 0.27)]):
            ax.bar(xs + off, [r.get(eng, 0) * 1e3 for r in rows], 0.27, label=eng)
        ax.set_xticks(xs, labels, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("median ms (log)")
        ax.set_title(f"Base-size encoders, f32, {args.threads} threads, {cpu}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "family_peers.png", dpi=110)
        print(f"wrote {out / 'family_peers.json'} and {out / 'family_peers.png'}")
    except ImportError:
        print(f"wrote {out / 'family_peers.json'} (no matplotlib: no plot)")


if __name__ == "__main__":
    main()
