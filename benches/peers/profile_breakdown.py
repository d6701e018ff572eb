"""Where the server's event-loop thread spends its time: reads py-spy's raw output
(`py-spy record --format raw --threads`) and prints each category's share of the
main thread's busy samples, and its microseconds per request.

    python benches/peers/profile_breakdown.py PROFILE.txt --rate 250 --seconds 8 --rps 322
"""

from __future__ import annotations

import argparse
import collections
import pathlib

# First rule that matches a frame, walking from the innermost frame outwards.
RULES = [
    ("second tokenisation", ("Embedder.tokenize", "model.tokenize")),
    (
        "disconnect polling",
        ("_until_disconnected", "is_disconnected", "receive_or_disconnect", "listen_for_disconnect"),
    ),
    ("serialisation", ("orjson", "json_response", "render", "jsonable_encoder", "serialize_response")),
    ("batcher hop", ("aencode", "_resolve", "embed_texts", "to_thread", "run_in_executor")),
    ("validation", ("pydantic", "validate", "request_body_to_args", "solve_dependencies", "_get_body", "Request.json")),
    (
        "middleware",
        (
            "middleware/base.py",
            "limit_body",
            "add_request_id",
            "observe",
            "anyio",
            "metrics.py",
            "prometheus",
            "asgi.py",
        ),
    ),
    ("HTTP parsing/protocol", ("h11", "httptools", "uvicorn/protocols", "uvloop", "proxy_headers")),
    ("routing/framework", ("starlette/routing.py", "fastapi/routing.py", "exceptions.py", "applications.py")),
    ("event-loop scheduling", ("base_events.py", "selectors", "events.py", "tasks.py", "futures.py", "runners.py")),
]


def classify(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, keys in RULES:
            if any(k in frame for k in keys):
                return name
    return "other (native/idle/GIL)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("--rate", type=float, default=250, help="py-spy samples per second")
    ap.add_argument("--seconds", type=float, default=8, help="py-spy duration")
    ap.add_argument("--rps", type=float, default=0, help="requests/s served while sampling")
    args = ap.parse_args()
    counts: collections.Counter[str] = collections.Counter()
    for line in pathlib.Path(args.profile).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if "MainThread" not in frames[0]:
            continue
        counts[classify(frames[1:])] += int(n)
    total = sum(counts.values())
    requests = args.rps * args.seconds
    print(f"main thread busy {total / args.rate:.2f} s of {args.seconds:.0f} s ({total} samples)")
    for name, n in counts.most_common():
        per = f"{n / args.rate / requests * 1e6:7.0f} us/request" if requests else ""
        print(f"  {name:28s} {100 * n / total:5.1f} %  {per}")


if __name__ == "__main__":
    main()
