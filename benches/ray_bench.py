"""Ray Serve 2 replicas x 1 thread against one rinfer process x 2 threads, same load:
concurrency 1 (latency: Ray's overhead per request), 64 concurrent single-text clients,
8 concurrent 32-text clients, driven by wrk (Debian package) on loopback. Prints a table with the ratios, writes
bench-results/ray_bench.json and, with matplotlib (this interpreter's, else .bench-venv's),
bench-results/ray_bench.png. `make bench-ray` runs it in the Ray virtualenv
(target/ray-venv) with PYTHONPATH=python; BENCH_S sets the seconds of each point (10)."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from server_bench import cpu_name, lua_many, lua_single, openai_body, run_wrk, write_lua

MODEL_NAME = "all-MiniLM-L6-v2"
DUR = float(os.environ.get("BENCH_S", "10"))
ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "bench-results"
BENCH_PY = ROOT / ".bench-venv/bin/python"
CASES = (("c1_single", "c = 1, 1 text"), ("c64_single", "c = 64, 1 text"), ("c8_batch32", "c = 8, 32 texts"))
SYSTEMS = (
    ("process_1x2", "1 process x 2 threads"),
    ("ray_2x1_haproxy", "Ray Serve 2 x 1, HAProxy ingress"),
    ("ray_2x1_proxy", "Ray Serve 2 x 1, Python proxy"),
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(url: str, conc: int, batch: int, seconds: float, scripts: list[str]) -> dict:
    """`conc` wrk connections (a light C client, so the client does not take the CPU the
    servers need) posting OpenAI embedding requests of `batch` short texts."""
    body = openai_body(MODEL_NAME)
    lua = write_lua(lua_single(body) if batch == 1 else lua_many(body, batch), scripts)
    r = run_wrk(url, conc, seconds, lua, batch)
    return {
        "texts_per_s": r["texts_s"],
        "req_per_s": r["req_s"],
        "p50_ms": r["p50_ms"],
        "p99_ms": r["p99_ms"],
        "errors": r["errors"],
        "socket_errors": r["socket_errors"],
    }


def run_all(base: str) -> dict:
    url = f"{base}/v1/embeddings"
    scripts: list[str] = []
    try:
        load(url, 8, 1, 2, scripts)  # warm-up
        return {
            "c1_single": load(url, 1, 1, DUR / 2, scripts),
            "c64_single": load(url, 64, 1, DUR, scripts),
            "c8_batch32": load(url, 8, 32, DUR, scripts),
        }
    finally:
        for f in scripts:
            os.unlink(f)


def table(out: dict) -> str:
    lines = [
        (
            f"CPU: {out['cpu']}, {out['cores']} cores, {DUR:g} s a point (c = 1: half), "
            f"load average {out['load_start']:.2f} at the start"
        ),
        "",
        "| system | case | texts/s | requests/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, name in SYSTEMS:
        for case, label in CASES:
            r = out[key][case]
            lines.append(
                f"| {name} | {label} | {r['texts_per_s']:.1f} | {r['req_per_s']:.1f} | "
                f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |"
            )
    lines += ["", "| Ray ingress | texts/s vs 1 process, c = 64 x 1 | c = 8 x 32 | overhead per request, c = 1 p50 |"]
    lines.append("|---|---|---|---|")
    for key, name in SYSTEMS[1:]:
        sm = out["summary"][key]
        lines.append(
            f"| {name.split(', ')[1]} | {sm['throughput_ratio_c64_single']:.2f} | "
            f"{sm['throughput_ratio_c8_batch32']:.2f} | {sm['overhead_ms_per_request_c1_p50']:+.2f} ms |"
        )
    lines.append("(bar: Ray 2 x 1 >= 0.80 of one process's throughput)")
    return "\n".join(lines) + "\n"


def plot(json_path: pathlib.Path, png: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = json.loads(json_path.read_text())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(CASES))
    w = 0.27
    for i, (key, name) in enumerate(SYSTEMS):
        tps = [out[key][c]["texts_per_s"] for c, _ in CASES]
        p50 = [out[key][c]["p50_ms"] for c, _ in CASES]
        p99 = [out[key][c]["p99_ms"] for c, _ in CASES]
        at = x + (i - 1) * w
        axes[0].bar(at, tps, w, label=name)
        axes[1].bar(at, p50, w, label=f"{name}, p50")
        axes[1].scatter(at, p99, marker="_", s=200, color="black", label="p99" if i == 0 else None)
    for ax, title in ((axes[0], "texts/s (higher is better)"), (axes[1], "latency ms (log)")):
        ax.set_xticks(x, [label for _, label in CASES])
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    ha, px = out["summary"]["ray_2x1_haproxy"], out["summary"]["ray_2x1_proxy"]
    fig.suptitle(
        f"rinfer on Ray Serve (2 x 1 thread) vs one process (2 threads), {out['cpu']}, {out['cores']} cores\n"
        f"throughput vs the process at c=64 x 1 / c=8 x 32: HAProxy ingress {ha['throughput_ratio_c64_single']:.2f} / "
        f"{ha['throughput_ratio_c8_batch32']:.2f}, Python proxy {px['throughput_ratio_c64_single']:.2f} / "
        f"{px['throughput_ratio_c8_batch32']:.2f}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def write_plot(json_path: pathlib.Path, png: pathlib.Path) -> str:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if not BENCH_PY.exists():
            return "no plot: matplotlib is in neither this interpreter nor .bench-venv"
        cmd = [str(BENCH_PY), __file__, "--plot", str(json_path)]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
        if done.returncode:
            return f"no plot: {done.stderr.strip().splitlines()[-1:]}"
        return f"plot: {png}"
    plot(json_path, png)
    return f"plot: {png}"


def ray_part(model: str, dest: pathlib.Path) -> None:
    """The Ray half, in a process of its own (Ray reads its ingress mode from the
    environment at import): a local cluster, 2 replicas x 1 thread, the same load."""
    import ray
    from ray import serve
    from rinfer.serve_ray import build_app

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=tempfile.mkdtemp(prefix="ray-"),
        logging_level="ERROR",
        log_to_driver=False,
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"model": model, "threads": 1, "replicas": 2}), name="rinfer", route_prefix="/")
    try:
        dest.write_text(json.dumps(run_all(f"http://127.0.0.1:{port}")))
    finally:
        serve.shutdown()
        ray.shutdown()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plot", metavar="JSON", help="only draw the plot of a saved result")
    ap.add_argument("--ray-part", metavar="JSON", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plot:
        plot(pathlib.Path(args.plot), pathlib.Path(args.plot).with_suffix(".png"))
        return
    import rinfer

    model = str(rinfer.default_model_path())
    if args.ray_part:
        ray_part(model, pathlib.Path(args.ray_part))
        return
    out = {"cpu": cpu_name(), "cores": os.cpu_count(), "load_start": os.getloadavg()[0], "seconds_per_point": DUR}
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rinfer.server", "--model", model, "--threads", "2", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.2)
        out["process_1x2"] = run_all(base)
    finally:
        proc.terminate()
        proc.wait()
    p = out["process_1x2"]
    out["summary"] = {}
    for key, haproxy in (("ray_2x1_haproxy", "1"), ("ray_2x1_proxy", "0")):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            part = pathlib.Path(f.name)
        env = {**os.environ, "RAY_SERVE_ENABLE_HA_PROXY": haproxy, "RAY_USAGE_STATS_ENABLED": "0"}
        subprocess.run([sys.executable, __file__, "--ray-part", str(part)], env=env, check=True, timeout=900)
        r = out[key] = json.loads(part.read_text())
        part.unlink()
        out["summary"][key] = {
            "throughput_ratio_c64_single": r["c64_single"]["texts_per_s"] / p["c64_single"]["texts_per_s"],
            "throughput_ratio_c8_batch32": r["c8_batch32"]["texts_per_s"] / p["c8_batch32"]["texts_per_s"],
            "overhead_ms_per_request_c1_p50": r["c1_single"]["p50_ms"] - p["c1_single"]["p50_ms"],
        }
    out["loadavg_1min_at_end"] = os.getloadavg()[0]
    OUT.mkdir(exist_ok=True)
    path = OUT / "ray_bench.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(table(out))
    print(f"wrote {path}; {write_plot(path, path.with_suffix('.png'))}")


if __name__ == "__main__":
    main()
