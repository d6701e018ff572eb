"""A bounded load test of a running rinfer server on loopback: N concurrent clients
send single-text /embed requests for a fixed count; prints requests/s, latency
percentiles and how many engine batches served them (from /metrics).

    .venv/bin/python -m rinfer serve &            # or make serve
    .venv/bin/python benches/server_load.py --url http://127.0.0.1:8000 --clients 64 --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time

import httpx


def batches(text: str) -> float:
    m = re.search(r"^rinfer_batcher_batches_total (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else float("nan")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL (loopback only)")
    ap.add_argument("--clients", type=int, default=64, help="concurrent clients")
    ap.add_argument("--requests", type=int, default=2000, help="requests in all (the test stops after them)")
    args = ap.parse_args()
    if not re.match(r"^http://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$", args.url):
        raise SystemExit("load tests target loopback addresses only")

    latencies: list[float] = []
    errors = 0
    counter = iter(range(args.requests))
    async with httpx.AsyncClient(base_url=args.url, timeout=30) as c:
        before = batches((await c.get("/metrics")).text)

        async def client() -> None:
            nonlocal errors
            for i in counter:
                t = time.perf_counter()
                r = await c.post("/embed", json={"inputs": f"query {i}: where is the nearest train station?"})
                latencies.append(time.perf_counter() - t)
                errors += r.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(args.clients)))
        wall = time.perf_counter() - start
        after = batches((await c.get("/metrics")).text)
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{args.requests} requests, {args.clients} clients: {args.requests / wall:.0f} req/s, "
        f"p50 {q[49] * 1e3:.1f} ms, p99 {q[98] * 1e3:.1f} ms, errors {errors}, "
        f"engine batches {after - before:.0f} ({args.requests / max(after - before, 1):.1f} requests/batch)"
    )


if __name__ == "__main__":
    asyncio.run(main())
