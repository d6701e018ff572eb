"""rinfer's f32 GEMM beside numpy (OpenBLAS) and PyTorch, in one run on one machine.

Shapes: M = 4096 tokens times the (K, N) of all-MiniLM-L6-v2's projections, at 1 and
2 threads. Each figure is the median of REPS timed runs after warm-up. Prints a table
with the ratios rinfer/peer, writes bench-results/gemm_peers.json and a PNG plot.

Run through ./benches/peers/gemm_peers.sh (it builds rinfer's timing binary and the
bench virtualenv).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits
from timing import median_time

SHAPES = [(384, 1152), (384, 384), (384, 1536), (1536, 384)]


def rinfer_gflops(binary: str, m: int, k: int, n: int, threads: int, reps: int) -> float:
    out = subprocess.run(
        [binary, str(m), str(k), str(n), str(threads), str(reps)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)["gflops"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True, help="path of the gemm_timing example binary")
    ap.add_argument("--m", type=int, default=4096, help="rows (tokens); default 4096")
    ap.add_argument("--reps", type=int, default=15, help="timed repetitions per figure")
    ap.add_argument("--out", default="bench-results", help="folder for JSON and PNG")
    args = ap.parse_args()

    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    print(
        "numpy BLAS:",
        ", ".join(f"{i['internal_api']} {i.get('version')} ({i.get('architecture')})" for i in blas),
    )
    print("torch:", torch.__version__, "| OPENBLAS_CORETYPE:", os.environ.get("OPENBLAS_CORETYPE", "(unset)"))
    rows = []
    m = args.m
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for k, n in SHAPES:
            flops = 2.0 * m * k * n
            a = np.random.default_rng(0).standard_normal((m, k), dtype=np.float32)
            b = np.random.default_rng(1).standard_normal((k, n), dtype=np.float32)
            with threadpool_limits(limits=threads, user_api="blas"):
                t_np = median_time(lambda a=a, b=b: a @ b, args.reps, warmup=3)
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            with torch.inference_mode():
                t_pt = median_time(lambda ta=ta, tb=tb: torch.matmul(ta, tb), args.reps, warmup=3)
            r = rinfer_gflops(args.binary, m, k, n, threads, args.reps)
            row = {
                "shape": f"{m}x{k}x{n}",
                "threads": threads,
                "rinfer": r,
                "numpy": flops / t_np / 1e9,
                "torch": flops / t_pt / 1e9,
            }
            rows.append(row)
            print(
                f"{row['shape']:>15} t={threads}  rinfer {r:7.1f}  numpy {row['numpy']:7.1f}  "
                f"torch {row['torch']:7.1f} GFLOP/s   rinfer/numpy {r / row['numpy']:.2f}  "
                f"rinfer/torch {r / row['torch']:.2f}",
                flush=True,
            )
    print("\n| shape | threads | rinfer GFLOP/s | numpy (OpenBLAS) | PyTorch | rinfer/numpy | rinfer/torch |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['shape']} | {r['threads']} | {r['rinfer']:.1f} | {r['numpy']:.1f} | {r['torch']:.1f} "
            f"| {r['rinfer'] / r['numpy']:.2f} | {r['rinfer'] / r['torch']:.2f} |"
        )
    one = {r["shape"]: r["rinfer"] for r in rows if r["threads"] == 1}
    print(
        "\nrinfer 2-thread / 1-thread: "
        + ", ".join(f"{r['shape']} {r['rinfer'] / one[r['shape']]:.2f}x" for r in rows if r["threads"] == 2)
    )

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gemm_peers.json").write_text(json.dumps(rows, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
        for ax, threads in zip(axes, (1, 2)):
            sub = [r for r in rows if r["threads"] == threads]
            x = np.arange(len(sub))
            for i, peer in enumerate(("rinfer", "numpy", "torch")):
                ax.bar(x + (i - 1) * 0.27, [r[peer] for r in sub], 0.27, label=peer)
            ax.set_xticks(x, [r["shape"] for r in sub], rotation=15)
            ax.set_title(f"f32 GEMM, {threads} thread(s)")
            ax.set_ylabel("GFLOP/s (median)")
            ax.legend()
        fig.tight_layout()
        fig.savefig(out / "gemm_peers.png", dpi=100)
        print(f"plot: {out / 'gemm_peers.png'}")
    except ImportError:
        print("matplotlib not installed: no plot")


if __name__ == "__main__":
    main()
