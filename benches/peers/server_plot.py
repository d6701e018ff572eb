"""Plots bench-results/server_bench.json (from benches/server_bench.py) into
bench-results/server_bench.png: texts/s and p50 latency by concurrency, with rinfer's
texts/s over infinity's above each concurrency when infinity ran."""

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
    engine = res.get("infinity", {}).get("engine", "")
    labels = {"rinfer_server": "rinfer server", "naive_server": "naive server"}
    labels["infinity_server"] = f"infinity ({engine})"
    for name, label in labels.items():
        if name in res["rows"]:
            series[label] = [res["rows"][name][str(c)] for c in concs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(series)
    for i, (name, rows) in enumerate(series.items()):
        xs = [j + i * width for j in range(len(concs))]
        a.bar(xs, [r["texts_s"] for r in rows], width, label=name)
        b.bar(xs, [r["p50_ms"] for r in rows], width, label=name)
    a.axhline(ip["encode64"]["texts_s"], color="grey", ls="--", lw=1, label="in-process encode of 64")
    over = res.get("rinfer_over_infinity", {}).get("single", {})
    for j, c in enumerate(concs):
        if over.get(str(c), float("nan")) == over.get(str(c)):  # there and not nan
            top = max(rows[j]["texts_s"] for rows in series.values())
            x = j + width * (len(series) - 1) / 2
            a.annotate(f"rinfer/infinity {over[str(c)]:.2f}x", (x, top), ha="center", va="bottom", fontsize=7)
    b.axhline(ip["encode1"]["p50_ms"], color="grey", ls="--", lw=1, label="in-process encode of 1")
    for ax, title in ((a, "texts/s (higher is better)"), (b, "p50 latency, ms (log)")):
        ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(concs))], [f"c={c}" for c in concs])
        ax.set_title(title)
    b.set_yscale("log")
    # under the panels, clear of the bars and of the ratios above them
    fig.legend(*a.get_legend_handles_labels(), loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.suptitle(f"all-MiniLM-L6-v2, single short texts, {res['threads']} threads, {res['cpu']}", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(OUT / "server_bench.png", dpi=110)
    print(f"wrote {OUT / 'server_bench.png'}")


if __name__ == "__main__":
    main()
