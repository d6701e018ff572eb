"""all-MiniLM-L6-v2 sentence embeddings: rinfer vs PyTorch (sentence-transformers) and
ONNX Runtime (graph optimisations on), same token ids, same machine, one run.

Cases: 1 text of 10 tokens; 32 x 16; 32 x 128; 8 x 256; 64 texts of mixed lengths
(mostly short, a few near 256). Each at 1 and 2 threads. Peers get padded batches
(that is how they run); rinfer gets the same ids ragged. Every engine's output
includes mean pooling and L2 normalisation. Prints sentences/s, tokens/s, median
latency and rinfer / best peer; tokenization is timed alone and end to end.

Reduced precision, same run, same cases: rinfer bf16 and int8, PyTorch bf16
(autocast on CPU) and ONNX Runtime int8 (dynamic quantisation: int8 weights, u8
activations). Their quality is the cosine of each engine's vectors of the 66 parity
texts to PyTorch's f32 ones. Writes bench-results/model_peers.json and PNG plots.

Run through ./benches/peers/model_peers.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import tempfile

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from sentence_transformers import SentenceTransformer
from timing import median_time

CLS, SEP = 101, 102


def make_cases(rng: np.random.Generator) -> list[dict]:
    def seq(n: int) -> list[int]:
        return [CLS] + rng.integers(1996, 29000, n - 2).tolist() + [SEP]

    mixed = np.concatenate(
        [
            rng.integers(8, 33, 44),
            rng.integers(33, 97, 12),
            rng.integers(97, 200, 5),
            rng.integers(230, 257, 3),
        ]
    )
    rng.shuffle(mixed)
    return [
        {"name": "1x10", "ids": [seq(10)]},
        {"name": "32x16", "ids": [seq(16) for _ in range(32)]},
        {"name": "32x128", "ids": [seq(128) for _ in range(32)]},
        {"name": "8x256", "ids": [seq(256) for _ in range(8)]},
        {"name": "64 mixed", "ids": [seq(int(n)) for n in mixed]},
    ]


def padded(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    n = max(map(len, ids))
    x = np.zeros((len(ids), n), dtype=np.int64)
    m = np.zeros_like(x)
    for i, r in enumerate(ids):
        x[i, : len(r)] = r
        m[i, : len(r)] = 1
    return x, m


def export_onnx(st: SentenceTransformer, path: pathlib.Path) -> None:
    bert = st[0].auto_model.eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    # A padded example, so that tracing keeps the attention-mask path.
    x = torch.tensor([[CLS, 2023, 2003, SEP], [CLS, 2023, SEP, 0]])
    mask = (x != 0).long()
    with torch.no_grad():
        torch.onnx.export(
            Encoder(),
            (x, mask, torch.zeros_like(x)),
            str(path),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                k: {0: "batch", 1: "seq"}
                for k in ["input_ids", "attention_mask", "token_type_ids", "last_hidden_state"]
            },
            opset_version=17,
            dynamo=False,
        )


def inputs(x: np.ndarray, m: np.ndarray) -> tuple[dict, dict]:
    """The same padded batch as PyTorch tensors (sentence-transformers) and as an
    ONNX Runtime feed."""
    feats = {
        "input_ids": torch.from_numpy(x),
        "attention_mask": torch.from_numpy(m),
        "token_type_ids": torch.zeros_like(torch.from_numpy(x)),
    }
    return feats, {"input_ids": x, "attention_mask": m, "token_type_ids": np.zeros_like(x)}


def mean_pool_normalize(h: np.ndarray, m: np.ndarray) -> np.ndarray:
    mm = m[..., None].astype(np.float32)
    v = (h * mm).sum(1) / np.clip(mm.sum(1), 1e-9, None)
    return v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)


LOWP_ENGINES = ("rinfer f32", "rinfer bf16", "rinfer int8", "torch bf16", "onnxruntime int8")


def lowp_case_rows(cases, threads, rinfer, st, sess8) -> list[dict]:
    """One row per case: rinfer f32/bf16/int8, PyTorch bf16 autocast, ORT int8."""
    out = []
    for c in cases:
        x_c, m_c = padded(c["ids"])
        feats, feed = inputs(x_c, m_c)

        def torch_bf16(feats=feats):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return st(feats)["sentence_embedding"].float()

        row = {
            "case": c["name"],
            "threads": threads,
            "sentences": len(c["ids"]),
            "tokens": sum(map(len, c["ids"])),
            "rinfer f32": rinfer["f32"][c["name"]],
            "rinfer bf16": rinfer["bf16"][c["name"]],
            "rinfer int8": rinfer["int8"][c["name"]],
            "torch bf16": median_time(torch_bf16, c["reps"]),
            "onnxruntime int8": median_time(
                lambda feed=feed, m_c=m_c: mean_pool_normalize(sess8.run(None, feed)[0], m_c), c["reps"]
            ),
        }
        print(
            f"t={threads} {c['name']:>10}: " + "  ".join(f"{e} {row[e] * 1e3:.2f} ms" for e in LOWP_ENGINES),
            flush=True,
        )
        out.append(row)
    return out


def lowp_quality(st, sess8, texts, vectors) -> dict:
    """Min and mean cosine to PyTorch f32 on the parity texts, per engine."""
    ref = st.encode(texts, convert_to_numpy=True)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = {"torch bf16": st.encode(texts, convert_to_tensor=True).float().numpy()}
    enc = st.tokenizer(texts, truncation=True, max_length=256, padding=True, return_tensors="np")
    feed = {
        "input_ids": enc["input_ids"].astype(np.int64),
        "attention_mask": enc["attention_mask"].astype(np.int64),
        "token_type_ids": np.zeros_like(enc["input_ids"], dtype=np.int64),
    }
    got["onnxruntime int8"] = mean_pool_normalize(sess8.run(None, feed)[0], feed["attention_mask"])
    got.update(vectors)
    out = {}
    for name, v in got.items():
        cos = (v * ref).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(ref, axis=1))
        out[name] = {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}
    return out


def print_lowp(rows: list[dict], quality: dict) -> None:
    print(
        "\n| case | threads | rinfer f32 ms | rinfer bf16 ms | rinfer int8 ms | PyTorch bf16 ms | ORT int8 ms "
        "| bf16 / best reduced peer | bf16 / rinfer f32 | int8 / ORT int8 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        best = min(r["torch bf16"], r["onnxruntime int8"])
        print(
            f"| {r['case']} | {r['threads']} | "
            + " | ".join(f"{r[e] * 1e3:.2f}" for e in LOWP_ENGINES)
            + f" | {best / r['rinfer bf16']:.2f} | {r['rinfer f32'] / r['rinfer bf16']:.2f} "
            f"| {r['onnxruntime int8'] / r['rinfer int8']:.2f} |"
        )
    print("\n| engine | min cosine to PyTorch f32 (66 parity texts) | mean cosine |")
    print("|---|---|---|")
    for name, q in quality.items():
        print(f"| {name} | {q['min_cosine']:.6f} | {q['mean_cosine']:.6f} |")


def plot_lowp(rows: list[dict], path: pathlib.Path, plt) -> None:
    thread_list = sorted({r["threads"] for r in rows})
    fig, axes = plt.subplots(1, len(thread_list), figsize=(8 * len(thread_list), 4.5), squeeze=False)
    for ax, threads in zip(axes[0], thread_list):
        sub = [r for r in rows if r["threads"] == threads]
        xs = np.arange(len(sub))
        w = 0.8 / len(LOWP_ENGINES)
        for i, e in enumerate(LOWP_ENGINES):
            ax.bar(xs + (i - 2) * w, [r["tokens"] / r[e] for r in sub], w, label=e)
        ax.set_xticks(xs, [r["case"] for r in sub], rotation=20, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("tokens/s (median, log)")
        ax.set_title(f"all-MiniLM-L6-v2 reduced precision, {threads} thread(s)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True, help="path of the model_timing example binary")
    ap.add_argument("--model", default="models/all-MiniLM-L6-v2", help="model folder")
    ap.add_argument("--reps", type=int, default=10, help="timed repetitions per figure (median)")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--out", default="bench-results", help="folder for JSON and PNG")
    ap.add_argument(
        "--lowp", action=argparse.BooleanOptionalAction, default=True, help="also bf16/int8 columns (default on)"
    )
    args = ap.parse_args()

    cases = make_cases(np.random.default_rng(7))
    for c in cases:  # tiny cases take microseconds: more repetitions for a stable median
        c["reps"] = args.reps * 20 if sum(map(len, c["ids"])) < 100 else args.reps
    texts = json.loads(pathlib.Path("tests/golden/minilm.json").read_text())["texts"]
    st = SentenceTransformer(args.model, device="cpu")
    work = pathlib.Path(tempfile.mkdtemp())
    onnx_path = work / "minilm.onnx"
    export_onnx(st, onnx_path)
    st.eval()  # exporting can leave modules in training mode (dropout on)
    onnx_int8 = work / "minilm-int8.onnx"
    if args.lowp:
        quantize_dynamic(str(onnx_path), str(onnx_int8), weight_type=QuantType.QInt8)
    cases_path = work / "cases.json"
    cases_path.write_text(json.dumps({"cases": cases, "texts": texts}))

    # Same answers first: the peers and rinfer agree on the mixed case.
    ids = cases[-1]["ids"]
    x, m = padded(ids)
    with torch.inference_mode():
        ref = st(
            {
                "input_ids": torch.from_numpy(x),
                "attention_mask": torch.from_numpy(m),
                "token_type_ids": torch.zeros_like(torch.from_numpy(x)),
            }
        )["sentence_embedding"].numpy()
    print(
        f"torch {torch.__version__}, onnxruntime {ort.__version__}, cases: "
        + ", ".join(f"{c['name']} ({sum(map(len, c['ids']))} tokens)" for c in cases)
    )

    rows: list[dict] = []
    lowp_rows: list[dict] = []
    quality: dict = {}
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        out = sess.run(None, {"input_ids": x, "attention_mask": m, "token_type_ids": np.zeros_like(x)})[0]
        assert np.abs(mean_pool_normalize(out, m) - ref).max() < 1e-4, "ONNX Runtime disagrees with PyTorch"

        env = dict(os.environ, RINFER_NUM_THREADS=str(threads))
        rinfer, vectors = {}, {}
        for dtype in ["f32"] + (["bf16", "int8"] if args.lowp else []):
            vec_path = work / f"vectors-{dtype}.bin"
            res = subprocess.run(
                [args.binary, args.model, str(cases_path), str(args.reps), dtype, str(vec_path)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            rinfer[dtype] = {j["case"]: j["seconds"] for j in map(json.loads, res.splitlines())}
            vectors[f"rinfer {dtype}"] = np.fromfile(vec_path, dtype="<f4").reshape(len(texts), -1)
        if args.lowp:
            sess8 = ort.InferenceSession(str(onnx_int8), so, providers=["CPUExecutionProvider"])
            lowp_rows.extend(lowp_case_rows(cases, threads, rinfer, st, sess8))
            if threads == max(int(t) for t in args.threads.split(",")):
                quality = lowp_quality(st, sess8, texts, vectors)

        for c in cases:
            x_c, m_c = padded(c["ids"])
            feats, feed = inputs(x_c, m_c)
            with torch.inference_mode():
                t_pt = median_time(lambda feats=feats: st(feats)["sentence_embedding"], c["reps"])
                t_ort = median_time(
                    lambda feed=feed, m_c=m_c, sess=sess: mean_pool_normalize(sess.run(None, feed)[0], m_c),
                    c["reps"],
                )
            rows.append(
                {
                    "case": c["name"],
                    "threads": threads,
                    "sentences": len(c["ids"]),
                    "tokens": sum(map(len, c["ids"])),
                    "rinfer": rinfer["f32"][c["name"]],
                    "torch": t_pt,
                    "onnxruntime": t_ort,
                }
            )
        # Tokenization alone and end to end on the parity texts.
        tok = st.tokenizer
        t_tok = median_time(lambda tok=tok: tok(texts, truncation=True, max_length=256, padding=True), args.reps)
        t_e2e = median_time(lambda: st.encode(texts), args.reps)  # its defaults: batches of 32, sorted by length
        ntok = int(st.tokenize(texts)["attention_mask"].sum())
        for name, peer in (("tokenize", t_tok), ("end_to_end", t_e2e)):
            rows.append(
                {
                    "case": f"{name} ({len(texts)} texts)",
                    "threads": threads,
                    "sentences": len(texts),
                    "tokens": ntok,
                    "rinfer": rinfer["f32"][name],
                    "torch": peer,
                    "onnxruntime": None,
                }
            )
        for r in rows[-len(cases) - 2 :]:
            best = min(t for t in (r["torch"], r["onnxruntime"]) if t)
            ort_ms = "-" if r["onnxruntime"] is None else f"{r['onnxruntime'] * 1e3:.2f}"
            print(
                f"t={threads} {r['case']:>24}: rinfer {r['rinfer'] * 1e3:8.2f} ms  torch {r['torch'] * 1e3:8.2f} ms  "
                f"ort {ort_ms} ms  speed-up vs best peer {best / r['rinfer']:.2f}x",
                flush=True,
            )

    print(
        "\n| case | threads | rinfer sent/s | rinfer tok/s | rinfer median ms | PyTorch ms | ONNX Runtime ms "
        "| rinfer / best peer (throughput) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        best = min(t for t in (r["torch"], r["onnxruntime"]) if t)
        ort_ms = "-" if r["onnxruntime"] is None else f"{r['onnxruntime'] * 1e3:.2f}"
        print(
            f"| {r['case']} | {r['threads']} | {r['sentences'] / r['rinfer']:.0f} | {r['tokens'] / r['rinfer']:.0f} "
            f"| {r['rinfer'] * 1e3:.2f} | {r['torch'] * 1e3:.2f} | {ort_ms} | {best / r['rinfer']:.2f} |"
        )

    if args.lowp:
        print_lowp(lowp_rows, quality)

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_peers.json").write_text(
        json.dumps({"f32": rows, "reduced_precision": lowp_rows, "quality": quality}, indent=2)
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thread_list = sorted({r["threads"] for r in rows})
    fig, axes = plt.subplots(1, len(thread_list), figsize=(7 * len(thread_list), 4.5), squeeze=False)
    for ax, threads in zip(axes[0], thread_list):
        sub = [r for r in rows if r["threads"] == threads]
        xs = np.arange(len(sub))
        for i, peer in enumerate(("rinfer", "torch", "onnxruntime")):
            ax.bar(xs + (i - 1) * 0.27, [r["tokens"] / r[peer] if r[peer] else 0 for r in sub], 0.27, label=peer)
        ax.set_xticks(xs, [r["case"] for r in sub], rotation=20, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("tokens/s (median, log)")
        ax.set_title(f"all-MiniLM-L6-v2 f32, {threads} thread(s)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "model_peers.png", dpi=100)
    print(f"plot: {out / 'model_peers.png'}")
    if args.lowp:
        plot_lowp(lowp_rows, out / "model_peers_lowp.png", plt)


if __name__ == "__main__":
    main()
