"""Plots bench-results/server_bench.json (from benches/server_bench.py) into
bench-results/server_bench.png: texts/s and p50 latency by concurrency."""

from __future__ import annotations

import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

OUT = pathlib.Path(__file__).resolve().parents[2] / "bench-results"


def main() -> None:
    res = json.loads((OUT / "server_bench.json").read_text())
    ip = res["rows"]["inprocess"]
    concs = sorted(int(c) for c in res["rows"]["rinfer_server"])
    series = {"in-process aencode": [ip[f"aencode_c{c}"] for c in concs]}
    for name in ("rinfer_server", "naive_server"):
        if name in res["rows"]:
            series[name.replace("_", " ")] = [res["rows"][name][str(c)] for c in concs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(series)
    for i, (name, rows) in enumerate(series.items()):
        xs = [j + i * width for j in range(len(concs))]
        a.bar(xs, [r["texts_s"] for r in rows], width, label=name)
        b.bar(xs, [r["p50_ms"] for r in rows], width, label=name)
    a.axhline(ip["encode64"]["texts_s"], color="grey", ls="--", lw=1, label="in-process encode of 64")
    b.axhline(ip["encode1"]["p50_ms"], color="grey", ls="--", lw=1, label="in-process encode of 1")
    for ax, title in ((a, "texts/s (higher is better)"), (b, "p50 latency, ms (log)")):
        ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(concs))], [f"c={c}" for c in concs])
        ax.set_title(title)
    b.set_yscale("log")
    a.legend(fontsize=8)
    fig.suptitle(f"all-MiniLM-L6-v2, single short texts, {res['threads']} threads, {res['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(OUT / "server_bench.png", dpi=110)
    print(f"wrote {OUT / 'server_bench.png'}")


if __name__ == "__main__":
    main()
