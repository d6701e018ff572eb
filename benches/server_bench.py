"""rinfer's HTTP server against the in-process engine and a naive FastAPI +
sentence-transformers server, in one run on this machine: `wrk` (a light C client)
on loopback at concurrency 1, 8 and 64, single short texts per request, each point
time-bounded. Prints requests/s, texts/s, p50/p99 and the issue's ratios; writes
bench-results/server_bench.json and .png.

    make bench-server        # or: .venv/bin/python benches/server_bench.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
VENV_PY = ROOT / ".venv/bin/python"
BENCH_PY = ROOT / ".bench-venv/bin/python"
OUT = ROOT / "bench-results"
TEXT = "query {}: where is the nearest train station?"
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"inputs": "query ' .. n .. ': where is the nearest train station?"}')
end
"""
LUA_MANY = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local texts = {}
for i = 1, %d do texts[i] = '"text ' .. i .. ': where is the nearest train station?"' end
wrk.body = '{"inputs": [' .. table.concat(texts, ",") .. ']}'
"""


def cpu_name() -> str:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def builds_running() -> list[str]:
    found = []
    for comm in pathlib.Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            name = comm.read_text().strip()
            if name in ("cargo", "rustc", "maturin"):
                found.append(name)
    return found


def cpu_busy(interval: float = 1.0) -> float:
    """Share of all CPUs busy over `interval` seconds (from /proc/stat)."""

    def snap() -> tuple[int, int]:
        f = [int(x) for x in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(f), f[3] + f[4]  # total, idle + iowait

    t0, i0 = snap()
    time.sleep(interval)
    t1, i1 = snap()
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def wait_quiet(limit_s: float) -> bool:
    """Waits (up to limit_s) until no compiler runs beside us and the CPUs are idle
    (under 10 % busy for two seconds in a row); False if that never happened."""
    end = time.monotonic() + limit_s
    calm = 0
    while calm < 2:
        busy = cpu_busy()
        calm = calm + 1 if busy < 0.10 and not builds_running() else 0
        if calm < 2 and time.monotonic() > end:
            print(f"  warning: not quiet ({100 * busy:.0f} % busy, builds: {builds_running()})", flush=True)
            return False
    return True


def ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)$", value)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def run_wrk(url: str, conc: int, seconds: float, lua: str, texts: int = 1) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conc}", f"-d{seconds:g}s", "--timeout", "30s", "--latency", "-s", lua, url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.MULTILINE))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    return {
        "req_s": rps,
        "texts_s": rps * texts,
        "p50_ms": ms(lat.get("50", "")),
        "p99_ms": ms(lat.get("99", "")),
        "errors": int(bad.group(1)) if bad else 0,
        "socket_errors": errs.group(1) if errs else "",
    }


@contextlib.contextmanager
def server(cmd: list[str], port: int, log: pathlib.Path):
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[:3]} exited; see {log}")
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1).status == 200:
                    break
            if time.monotonic() > end:
                raise RuntimeError(f"{cmd[:3]} not ready in 180 s; see {log}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/embed"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def inprocess(model: str, threads: int, seconds: float, concs: list[int], many: int) -> dict:
    """The engine in this process: `encode` of one text, `encode` of 64, `aencode` with
    C concurrent callers of one text (and of `many` texts), each point time-bounded."""
    import rinfer

    m = rinfer.Embedder.load(model, threads=threads)
    for i in range(50):
        m.encode(TEXT.format(i))
    out: dict = {}
    lat: list[float] = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        t = time.perf_counter()
        m.encode(TEXT.format(i))
        lat.append(time.perf_counter() - t)
        i += 1
    q = statistics.quantiles(lat, n=100)
    out["encode1"] = {"req_s": len(lat) / seconds, "texts_s": len(lat) / seconds, "p50_ms": q[49] * 1e3}
    out["encode1"]["p99_ms"] = q[98] * 1e3
    batch = [TEXT.format(i) for i in range(64)]
    m.encode(batch)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds / 2:
        m.encode(batch)
        n += 1
    out["encode64"] = {"texts_s": 64 * n / (time.perf_counter() - t0)}

    async def load(conc: int, texts: list[str] | None = None) -> dict:
        lat: list[float] = []
        stop = time.perf_counter() + seconds
        counter = iter(range(10**9))

        async def caller() -> None:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                await m.aencode(texts if texts else TEXT.format(next(counter)))
                lat.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(conc)))
        wall = time.perf_counter() - t0
        q = statistics.quantiles(lat, n=100)
        return {"req_s": len(lat) / wall, "texts_s": len(lat) / wall, "p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3}

    for c in concs:
        out[f"aencode_c{c}"] = asyncio.run(load(c))
    if many:
        texts = [TEXT.format(i) for i in range(many)]
        for c in concs:
            r = asyncio.run(load(c, texts))
            r["texts_s"] = r["req_s"] * many
            out[f"aencode{many}_c{c}"] = r
    return out


def fmt_row(name: str, conc, r: dict) -> str:
    p50 = f"{r['p50_ms']:8.2f}" if "p50_ms" in r else f"{'':8s}"
    p99 = f"{r['p99_ms']:8.2f}" if "p99_ms" in r else f"{'':8s}"
    req = f"{r['req_s']:9.0f}" if "req_s" in r else f"{'':9s}"
    return f"{name:34s} {conc!s:>4s} {req} {r['texts_s']:9.0f} {p50} {p99}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models/all-MiniLM-L6-v2"))
    ap.add_argument("--threads", type=int, default=2, help="compute threads of every system (default 2)")
    ap.add_argument("--seconds", type=float, default=8, help="length of each measured point (default 8)")
    ap.add_argument("--concurrency", default="1,8,64")
    ap.add_argument("--many", type=int, default=32, help="texts per request of the batch rows; 0: none (default 32)")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive FastAPI + sentence-transformers server")
    ap.add_argument("--quiet-wait-s", type=float, default=300, help="wait this long for running builds to end")
    ap.add_argument("--inprocess-json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    concs = [int(c) for c in args.concurrency.split(",")]
    if args.inprocess_json:
        print(json.dumps(inprocess(args.model, args.threads, args.seconds, concs, args.many)))
        return

    OUT.mkdir(exist_ok=True)
    results: dict = {"cpu": cpu_name(), "threads": args.threads, "seconds": args.seconds, "quiet": True, "rows": {}}
    print(f"CPU: {results['cpu']}, {os.cpu_count()} CPUs, {args.threads} compute threads, {args.seconds:g} s a point")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA)
        lua = f.name
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA_MANY % args.many)
        lua_many = f.name

    results["quiet"] &= wait_quiet(args.quiet_wait_s)
    print("== in-process engine", flush=True)
    cmd = [str(VENV_PY), __file__, "--inprocess-json", "--model", args.model, "--threads", str(args.threads)]
    cmd += ["--seconds", str(args.seconds), "--concurrency", args.concurrency, "--many", str(args.many)]
    results["rows"]["inprocess"] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)

    results["quiet"] &= wait_quiet(args.quiet_wait_s)
    print("== rinfer serve", flush=True)
    rinfer_cmd = [str(VENV_PY), "-m", "rinfer", "--log-level", "WARNING", "serve", "--model", args.model]
    rinfer_cmd += ["--port", "8111", "--threads", str(args.threads)]
    rows: dict = {}
    with server(rinfer_cmd, 8111, OUT / "server_bench.rinfer.log") as url:
        run_wrk(url, 8, 2, lua)  # warm-up
        for c in concs:
            rows[c] = run_wrk(url, c, args.seconds, lua)
        many = {c: run_wrk(url, c, args.seconds, lua_many, args.many) for c in concs} if args.many else {}
    results["rows"]["rinfer_server"] = rows
    results["rows"][f"rinfer_server_{args.many}"] = many

    if not args.no_naive and BENCH_PY.exists():
        results["quiet"] &= wait_quiet(args.quiet_wait_s)
        print("== naive FastAPI + sentence-transformers", flush=True)
        naive_cmd = [str(BENCH_PY), str(ROOT / "benches/peers/naive_server.py"), "--model", args.model]
        naive_cmd += ["--port", "8112", "--threads", str(args.threads)]
        rows = {}
        with server(naive_cmd, 8112, OUT / "server_bench.naive.log") as url:
            run_wrk(url, 8, 2, lua)
            for c in concs:
                rows[c] = run_wrk(url, c, args.seconds, lua)
            many = {c: run_wrk(url, c, args.seconds, lua_many, args.many) for c in concs} if args.many else {}
        results["rows"]["naive_server"] = rows
        results["rows"][f"naive_server_{args.many}"] = many

    ip = results["rows"]["inprocess"]
    print(f"\n{'system':34s} {'c':>4s} {'req/s':>9s} {'texts/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s}")
    print(fmt_row("in-process encode (1 text)", 1, ip["encode1"]))
    print(fmt_row("in-process encode (64 texts)", "-", ip["encode64"]))
    for c in concs:
        print(fmt_row("in-process aencode", c, ip[f"aencode_c{c}"]))
    for name in ("rinfer_server", "naive_server"):
        for c, r in results["rows"].get(name, {}).items():
            bad = (f"  non-2xx {r['errors']}" if r["errors"] else "") + (
                f"  socket errors: {r['socket_errors']}" if r["socket_errors"] else ""
            )
            print(fmt_row(name.replace("_", " "), c, r) + bad)
    n = args.many
    for c in concs if n else []:
        print(fmt_row(f"in-process aencode ({n} texts)", c, ip[f"aencode{n}_c{c}"]))
    for name in (f"rinfer_server_{n}", f"naive_server_{n}") if n else []:
        for c, r in results["rows"].get(name, {}).items():
            bad = (f"  non-2xx {r['errors']}" if r["errors"] else "") + (
                f"  socket errors: {r['socket_errors']}" if r["socket_errors"] else ""
            )
            print(fmt_row(name.replace("_server_", " server (") + " texts)", c, r) + bad)

    srv = results["rows"]["rinfer_server"]
    hi, lo = max(concs), min(concs)
    ratios = {
        f"server/aencode texts/s at c={hi} (bar >= 0.85)": srv[hi]["texts_s"] / ip[f"aencode_c{hi}"]["texts_s"],
        f"server/encode(64) texts/s at c={hi}": srv[hi]["texts_s"] / ip["encode64"]["texts_s"],
        f"server p50 - engine encode p50 at c={lo}, ms (bar <= 1.0)": srv[lo]["p50_ms"] - ip["encode1"]["p50_ms"],
    }
    if "naive_server" in results["rows"]:
        naive = results["rows"]["naive_server"]
        ratios[f"server/naive texts/s at c={hi} (bar >= 5)"] = srv[hi]["texts_s"] / naive[hi]["texts_s"]
    if n:
        ratios[f"server/aencode texts/s, {n} texts a request, c={hi}"] = (
            results["rows"][f"rinfer_server_{n}"][hi]["texts_s"] / ip[f"aencode{n}_c{hi}"]["texts_s"]
        )
        if f"naive_server_{n}" in results["rows"]:
            ratios[f"server/naive texts/s, {n} texts a request, c={hi}"] = (
                results["rows"][f"rinfer_server_{n}"][hi]["texts_s"]
                / results["rows"][f"naive_server_{n}"][hi]["texts_s"]
            )
    results["ratios"] = ratios
    print()
    for k, v in ratios.items():
        print(f"{k:58s} {v:6.2f}")
    if not results["quiet"]:
        print("warning: a build ran beside part of this run; its numbers are noisy")
    (OUT / "server_bench.json").write_text(json.dumps(results, indent=1))
    if BENCH_PY.exists():
        subprocess.run([str(BENCH_PY), __file__.replace("server_bench.py", "peers/server_plot.py")], check=False)
    os.unlink(lua)
    os.unlink(lua_many)


if __name__ == "__main__":
    sys.exit(main())
