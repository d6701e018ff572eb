"""Embeds a text through a running rinfer server (a container, a pod behind a port-forward).

    python3 deploy/smoke_test.py http://127.0.0.1:8000 [--timeout 180] [--dim 384]

Waits for /health and /ready, then checks POST /embed (TEI) and POST /v1/embeddings
(OpenAI): one vector of the expected size, L2-normalised, the same from both routes.
Standard library only, so it runs anywhere python3 does. Exits non-zero on failure."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.error
import urllib.request


def call(url: str, body: dict | None = None, timeout: float = 30.0) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def wait_ready(base: str, deadline: float) -> None:
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            health, _ = call(base + "/health", timeout=5)
            ready, _ = call(base + "/ready", timeout=5)
            if health == 200 and ready == 200:
                return
            last = f"/health {health}, /ready {ready}"
        except (OSError, ValueError) as e:  # not listening yet
            last = repr(e)
        time.sleep(1)
    sys.exit(f"smoke: {base} not ready in time ({last})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base_url")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for /ready")
    ap.add_argument("--dim", type=int, default=384, help="expected vector size (all-MiniLM-L6-v2: 384)")
    args = ap.parse_args()
    base = args.base_url.rstrip("/")
    text = "The cat sits on the mat."
    wait_ready(base, time.monotonic() + args.timeout)

    status, tei = call(base + "/embed", {"inputs": text})
    if status != 200 or not isinstance(tei, list) or len(tei) != 1 or len(tei[0]) != args.dim:
        sys.exit(f"smoke: POST /embed answered {status}: {str(tei)[:300]}")
    status, oai = call(base + "/v1/embeddings", {"input": [text]})
    if status != 200 or not isinstance(oai, dict):
        sys.exit(f"smoke: POST /v1/embeddings answered {status}: {str(oai)[:300]}")
    vec = oai["data"][0]["embedding"]
    norm = math.sqrt(sum(x * x for x in vec))
    diff = max(abs(a - b) for a, b in zip(vec, tei[0]))
    if len(vec) != args.dim or abs(norm - 1.0) > 1e-3 or diff > 1e-5:
        sys.exit(f"smoke: /v1/embeddings dim {len(vec)}, norm {norm:.6f}, max diff to /embed {diff:.2e}")
    print(
        f"smoke: {base}: /health and /ready 200, one {args.dim}-d vector (norm {norm:.6f}) from /embed and /v1/embeddings"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
