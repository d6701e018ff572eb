"""Ray Serve 2 replicas x 1 thread against one rinfer process x 2 threads, same load:
concurrency 1 (latency: Ray's overhead per request), 64 concurrent single-text clients,
8 concurrent 32-text clients. Run in the Ray venv with PYTHONPATH=python."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
DUR = float(os.environ.get("BENCH_S", "10"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(base, conc, batch, seconds, texts):
    lat: list[float] = []
    n_texts = 0
    errors = 0
    end = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=conc)) as c:

        async def client(k):
            nonlocal n_texts, errors
            i = k
            while time.perf_counter() < end:
                inp = [texts[(i + j) % len(texts)] for j in range(batch)]
                t = time.perf_counter()
                r = await c.post("/v1/embeddings", json={"model": MODEL_NAME, "input": inp if batch > 1 else inp[0]})
                if r.status_code == 200:
                    lat.append(time.perf_counter() - t)
                    n_texts += batch
                else:
                    errors += 1
                i += conc

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(conc)))
        took = time.perf_counter() - t0
    a = np.array(lat) * 1000
    return {
        "texts_per_s": n_texts / took,
        "req_per_s": len(lat) / took,
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "errors": errors,
    }


async def warm(base):
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        for _ in range(20):
            await c.post("/v1/embeddings", json={"model": MODEL_NAME, "input": "warm up"})


def run_all(base, texts):
    asyncio.run(warm(base))
    return {
        "c1_single": asyncio.run(load(base, 1, 1, DUR / 2, texts)),
        "c64_single": asyncio.run(load(base, 64, 1, DUR, texts)),
        "c8_batch32": asyncio.run(load(base, 8, 32, DUR, texts)),
    }


def main():
    import rinfer

    model = str(rinfer.default_model_path())
    texts = [f"benchmark sentence {i} about topic {i % 17} with some words" for i in range(512)]
    out = {}
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
                if httpx.get(f"{base}/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        out["process_1x2"] = run_all(base, texts)
    finally:
        proc.terminate()
        proc.wait()
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
        out["ray_2x1"] = run_all(f"http://127.0.0.1:{port}", texts)
    finally:
        serve.shutdown()
        ray.shutdown()
    p, r = out["process_1x2"], out["ray_2x1"]
    out["summary"] = {
        "throughput_ratio_c64_single": r["c64_single"]["texts_per_s"] / p["c64_single"]["texts_per_s"],
        "throughput_ratio_c8_batch32": r["c8_batch32"]["texts_per_s"] / p["c8_batch32"]["texts_per_s"],
        "ray_overhead_ms_per_request_c1_p50": r["c1_single"]["p50_ms"] - p["c1_single"]["p50_ms"],
        "loadavg_1min_at_end": os.getloadavg()[0],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
