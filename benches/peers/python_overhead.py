"""The Python boundary's cost, in one run: `Embedder.encode_ids` from Python vs the
pure-Rust timing binary on the same 32 x 16 token ids, and `aencode` with 64
concurrent single-text callers vs one `encode` call on the same 64 texts.

    make python && cargo build --release --example model_timing
    .venv/bin/python benches/peers/python_overhead.py [--reps 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import subprocess
import tempfile

import numpy as np
import rinfer
from timing import median_time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30, help="timed repetitions (median)")
    ap.add_argument("--threads", type=int, default=2, help="compute threads")
    ap.add_argument("--binary", default="target/release/examples/model_timing", help="Rust timing binary")
    args = ap.parse_args()

    model_dir = rinfer.default_model_path()
    rinfer.set_num_threads(args.threads)
    m = rinfer.Embedder.load(model_dir)
    rng = np.random.default_rng(3)
    ids = [[101, *rng.integers(1996, 29000, 14).tolist(), 102] for _ in range(32)]
    arrays = [np.asarray(x, dtype=np.uint32) for x in ids]
    t_py = median_time(lambda: m.encode_ids(arrays, batch_size=1 << 20), args.reps)

    with tempfile.TemporaryDirectory() as d:
        cases = pathlib.Path(d) / "cases.json"
        cases.write_text(json.dumps({"cases": [{"name": "32x16", "ids": ids}], "texts": ["x"]}))
        env = dict(os.environ, RINFER_NUM_THREADS=str(args.threads))
        out = subprocess.run(
            [args.binary, str(model_dir), str(cases), str(args.reps)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    t_rust = next(json.loads(line)["seconds"] for line in out.splitlines() if '"32x16"' in line)

    texts = [f"query number {i}: how do I make the most of sentence {i % 11}?" for i in range(64)]
    t_one = median_time(lambda: m.encode(texts), args.reps)

    async def callers():
        return await asyncio.gather(*(m.aencode(t) for t in texts))

    t_async = median_time(lambda: asyncio.run(callers()), args.reps)
    stats = m.batcher_stats()

    print(f"threads {args.threads}, median of {args.reps}")
    print("| measure | rinfer from Python | reference | ratio |")
    print("|---|---|---|---|")
    print(
        f"| encode_ids 32 x 16 tokens | {t_py * 1e3:.2f} ms | pure Rust {t_rust * 1e3:.2f} ms "
        f"| Python/Rust time {t_py / t_rust:.3f} |"
    )
    print(
        f"| 64 concurrent aencode (1 text each) | {64 / t_async:.0f} texts/s | one encode of 64: "
        f"{64 / t_one:.0f} texts/s | {t_one / t_async:.2f} of its throughput |"
    )
    print(f"batcher: {stats}")


if __name__ == "__main__":
    main()
