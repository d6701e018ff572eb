"""rinfer's HTTP server against the in-process engine, a naive FastAPI +
sentence-transformers server and infinity-emb, in one run on this machine: `wrk` (a
light C client) on loopback at concurrency 1, 8 and 64, single short texts per request
and 32-text requests, each point time-bounded. Prints requests/s, texts/s, p50/p99 and
the issue's ratios (rinfer / infinity at each concurrency among them); writes
bench-results/server_bench.json and .png.

infinity-emb runs from its own virtualenv .bench-venv/infinity (layered on
.bench-venv, whose torch and onnxruntime it reuses; see benches/peers/server_peers.sh),
offline, on the same model folder: its torch engine reads the folder as it is, its
optimum engine (ONNX Runtime) an ONNX export of it that this script makes with optimum
once. `--infinity-engine auto` (the default) probes both at the top concurrency and
measures the faster, saying which.

    make bench-server        # or: .venv/bin/python benches/server_bench.py [--seconds 8]
    # a smoke run (every server answers, the table prints; the numbers mean nothing):
    .venv/bin/python benches/server_bench.py --seconds 2 --concurrency 1,64 --quiet-wait-s 0
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
import shutil
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
INFINITY_VENV = ROOT / ".bench-venv/infinity"
TEXT = "query {}: where is the nearest train station?"
MANY_TEXT = "text {}: where is the nearest train station?"
# the request bodies, as (before the input, after it): TEI's /embed for rinfer and the
# naive server, OpenAI's /embeddings for infinity (the model named as it is served)
TEI_BODY = ('{"inputs": ', "}")


def openai_body(model: str) -> tuple[str, str]:
    return (f'{{"model": {json.dumps(model)}, "input": ', "}")


def lua_single(body: tuple[str, str]) -> str:
    """wrk script: one short text a request, a new text each time."""
    head, tail = body
    text = TEXT.replace("{}", "' .. n .. '")
    return f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{head}"{text}"{tail}')
end
"""


def lua_many(body: tuple[str, str], texts: int) -> str:
    """wrk script: the same `texts` short texts in every request."""
    head, tail = body
    text = MANY_TEXT.replace("{}", "' .. i .. '")
    return f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local texts = {{}}
for i = 1, {texts} do texts[i] = '"{text}"' end
wrk.body = '{head}[' .. table.concat(texts, ",") .. ']{tail}'
"""


def check_body(body: tuple[str, str], texts: int) -> str:
    """The body the wrk script sends first (n = 1), or its `texts`-text body."""
    head, tail = body
    if texts == 1:
        return f"{head}{json.dumps(TEXT.format(1))}{tail}"
    return f"{head}{json.dumps([MANY_TEXT.format(i) for i in range(1, texts + 1)])}{tail}"


def check_route(url: str, body: str, texts: int, ref: list[float] | None = None) -> list[float]:
    """POSTs `body` once: it must answer 200 with `texts` vectors, the first close to
    `ref` (cosine >= 0.999) when given. Returns the first vector."""
    req = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        status, out = r.status, json.loads(r.read())
    vecs = [d["embedding"] for d in out["data"]] if isinstance(out, dict) else out
    if status != 200 or len(vecs) != texts:
        raise RuntimeError(f"{url}: status {status}, {len(vecs)} vectors for {texts} texts")
    if ref is not None:
        dot = sum(a * b for a, b in zip(vecs[0], ref, strict=True))
        cos = dot / (sum(a * a for a in vecs[0]) * sum(b * b for b in ref)) ** 0.5
        if cos < 0.999:
            raise RuntimeError(f"{url}: its vector is not rinfer's (cosine {cos:.4f})")
    return vecs[0]


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
    done = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "req_s": rps,
        "texts_s": rps * texts,
        # no latency when no request completed (a point shorter than one round of requests)
        "p50_ms": ms(lat.get("50", "")) if done else float("nan"),
        "p99_ms": ms(lat.get("99", "")) if done else float("nan"),
        "requests": done,
        "errors": int(bad.group(1)) if bad else 0,
        "socket_errors": errs.group(1) if errs else "",
    }


@contextlib.contextmanager
def server(
    cmd: list[str],
    port: int,
    log: pathlib.Path,
    route: str = "/embed",
    ready: str = "/ready",
    cwd: pathlib.Path = ROOT,
    env: dict | None = None,
    start_s: float = 180,
    label: str = "",
):
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
    name = label or " ".join(cmd[:3])
    try:
        end = time.monotonic() + start_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited; see {log}")
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"http://127.0.0.1:{port}{ready}", timeout=1).status == 200:
                    break
            if time.monotonic() > end:
                raise RuntimeError(f"{name} not ready in {start_s:g} s; see {log}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}{route}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


# Starts infinity's CLI (`infinity_emb v2 ...`) with each compute library held to
# BENCH_THREADS threads: torch by set_num_threads (and OMP_NUM_THREADS), ONNX Runtime
# by its session options, which infinity leaves at their default (one thread a core).
# infinity 0.0.78 builds optimum's OptimizationConfig with optimum 1's
# `optimize_with_onnxruntime_only`, named `enable_transformers_specific_optimizations`
# (negated) in optimum 2, the optimum that runs on this torch; without this shim its
# graph optimisation fails and it serves the unoptimised graph.
INFINITY_LAUNCH = """
import os, sys
import onnxruntime as ort
import torch
import infinity_emb.transformer.utils_optimum as utils_optimum
from infinity_emb.cli import cli
from optimum.onnxruntime.configuration import OptimizationConfig

n = int(os.environ["BENCH_THREADS"])
torch.set_num_threads(n)
session_init = ort.InferenceSession.__init__

def init(self, path_or_bytes, sess_options=None, *args, **kwargs):
    so = sess_options or ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = n, 1
    session_init(self, path_or_bytes, so, *args, **kwargs)

class Config(OptimizationConfig):
    def __init__(self, *args, optimize_with_onnxruntime_only=None, **kwargs):
        if optimize_with_onnxruntime_only is not None:
            kwargs.setdefault("enable_transformers_specific_optimizations", not optimize_with_onnxruntime_only)
        super().__init__(*args, **kwargs)

ort.InferenceSession.__init__ = init
utils_optimum.OptimizationConfig = Config
sys.argv[0] = "infinity_emb"
cli()
"""


def infinity_env(threads: int, hf_home: pathlib.Path) -> dict:
    """Offline (no hub, no telemetry), caches under bench-results, `threads` threads."""
    env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.update(DO_NOT_TRACK="1", INFINITY_ANONYMOUS_USAGE_STATS="0", BENCH_THREADS=str(threads))
    env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS")})
    return env


def infinity_onnx_folder(model: pathlib.Path, threads: int) -> pathlib.Path:
    """The model folder as infinity's optimum engine reads it: every file of `model`
    linked, beside a model.onnx (last_hidden_state out; infinity pools) exported from its
    weights by optimum, once (again when the weights are newer). infinity keeps its
    optimised graph in the HF_HOME beside it, cleared with a new export."""
    work = OUT / "infinity"
    folder, hf_home = work / f"{model.name}-onnx", work / "hf"
    onnx = folder / "model.onnx"
    newest = max(p.stat().st_mtime for p in model.iterdir() if p.is_file())
    if onnx.exists() and onnx.stat().st_mtime >= newest:
        return folder
    print(f"  exporting {model.name} to ONNX for infinity's optimum engine", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(hf_home, ignore_errors=True)
    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp, open(OUT / "server_bench.infinity-export.log", "w") as log:
        cmd = [str(INFINITY_VENV / "bin/optimum-cli"), "export", "onnx", "--model", str(model)]
        cmd += ["--task", "feature-extraction", "--library-name", "transformers", tmp]
        subprocess.run(cmd, env=infinity_env(threads, hf_home), stdout=log, stderr=subprocess.STDOUT, check=True)
        shutil.move(pathlib.Path(tmp) / "model.onnx", onnx)
    for entry in model.iterdir():
        if entry.name not in ("model.onnx", "onnx"):
            (folder / entry.name).symlink_to(entry.resolve())
    return folder


def infinity_server(args, engine: str, port: int, name: str, tag: str = ""):
    """infinity_emb v2 serving args.model as `name` with `engine` on the CPU. The
    optimum engine is run from inside its ONNX folder as `.`: infinity 0.0.78 hands
    optimum the path of the .onnx file it found where optimum wants a name in the folder,
    which are the same only then."""
    model = pathlib.Path(args.model).resolve()
    hf_home = OUT / "infinity/hf"
    cwd, model_id = ROOT, str(model)
    if engine == "optimum":
        cwd, model_id = infinity_onnx_folder(model, args.threads), "."
    cmd = [str(INFINITY_VENV / "bin/python"), "-c", INFINITY_LAUNCH, "v2", "--model-id", model_id]
    cmd += ["--served-model-name", name, "--engine", engine, "--device", "cpu", "--pooling-method", pooling(model)]
    cmd += ["--batch-size", str(args.infinity_batch_size), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--log-level", "warning", "--no-permissive-cors"]
    log = OUT / f"server_bench.infinity-{engine}{tag}.log"
    env = infinity_env(args.threads, hf_home)
    return server(cmd, port, log, "/embeddings", "/health", cwd, env, start_s=600, label=f"infinity ({engine})")


def pooling(model: pathlib.Path) -> str:
    """The model's sentence-transformers pooling as infinity names it (its optimum
    engine's `auto` is CLS pooling whatever the model)."""
    cfg = model / "1_Pooling/config.json"
    return "cls" if cfg.exists() and json.loads(cfg.read_text()).get("pooling_mode_cls_token") else "mean"


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
    bad = (f"  non-2xx {r['errors']}" if r.get("errors") else "") + (
        f"  socket errors: {r['socket_errors']}" if r.get("socket_errors") else ""
    )
    bad += "  no request completed (too short a point)" if r.get("requests") == 0 else ""
    return f"{name:34s} {conc!s:>4s} {req} {r['texts_s']:9.0f} {p50} {p99}{bad}"


def ratio(a: float, b: float) -> float:
    """a / b; nan where either side completed nothing."""
    return a / b if a and b else float("nan")


def write_lua(text: str, scripts: list[str]) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(text)
    scripts.append(f.name)
    return f.name


def measure(url: str, concs: list[int], seconds: float, lua: str, lua_n: str | None, many: int):
    """A 2 s warm-up, then each concurrency with single texts, then with `many`."""
    run_wrk(url, 8, 2, lua)
    rows = {c: run_wrk(url, c, seconds, lua) for c in concs}
    return rows, {c: run_wrk(url, c, seconds, lua_n, many) for c in concs} if lua_n else {}


def infinity_version() -> str:
    cmd = [str(INFINITY_VENV / "bin/python"), "-c", "import importlib.metadata as m; print(m.version('infinity-emb'))"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models/all-MiniLM-L6-v2"))
    ap.add_argument("--threads", type=int, default=2, help="compute threads of every system (default 2)")
    ap.add_argument("--seconds", type=float, default=8, help="length of each measured point (default 8)")
    ap.add_argument("--concurrency", default="1,8,64")
    ap.add_argument("--many", type=int, default=32, help="texts per request of the batch rows; 0: none (default 32)")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive FastAPI + sentence-transformers server")
    ap.add_argument("--no-infinity", action="store_true", help="skip infinity-emb")
    ap.add_argument(
        "--infinity-engine",
        choices=("auto", "torch", "optimum"),
        default="auto",
        help="infinity's engine; auto (the default): probe both with single texts at the top concurrency "
        "(for min(--seconds, 5) s each) and measure the faster",
    )
    ap.add_argument("--infinity-batch-size", type=int, default=64, help="infinity's --batch-size (default 64)")
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
    n, hi, lo = args.many, max(concs), min(concs)
    scripts: list[str] = []
    lua = write_lua(lua_single(TEI_BODY), scripts)
    lua_n = write_lua(lua_many(TEI_BODY, n), scripts) if n else None
    try:
        results["quiet"] &= wait_quiet(args.quiet_wait_s)
        print("== in-process engine", flush=True)
        cmd = [str(VENV_PY), __file__, "--inprocess-json", "--model", args.model, "--threads", str(args.threads)]
        cmd += ["--seconds", str(args.seconds), "--concurrency", args.concurrency, "--many", str(n)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results["rows"]["inprocess"] = json.loads(out)

        results["quiet"] &= wait_quiet(args.quiet_wait_s)
        print("== rinfer serve", flush=True)
        rinfer_cmd = [str(VENV_PY), "-m", "rinfer", "--log-level", "WARNING", "serve", "--model", args.model]
        rinfer_cmd += ["--port", "8111", "--threads", str(args.threads)]
        with server(rinfer_cmd, 8111, OUT / "server_bench.rinfer.log") as url:
            ref = check_route(url, check_body(TEI_BODY, 1), 1)
            if n:
                check_route(url, check_body(TEI_BODY, n), n)
            rows, many = measure(url, concs, args.seconds, lua, lua_n, n)
        results["rows"]["rinfer_server"] = rows
        results["rows"][f"rinfer_server_{n}"] = many

        if not args.no_naive and BENCH_PY.exists():
            results["quiet"] &= wait_quiet(args.quiet_wait_s)
            print("== naive FastAPI + sentence-transformers", flush=True)
            naive_cmd = [str(BENCH_PY), str(ROOT / "benches/peers/naive_server.py"), "--model", args.model]
            naive_cmd += ["--port", "8112", "--threads", str(args.threads)]
            with server(naive_cmd, 8112, OUT / "server_bench.naive.log") as url:
                check_route(url, check_body(TEI_BODY, 1), 1, ref)
                if n:
                    check_route(url, check_body(TEI_BODY, n), n)
                rows, many = measure(url, concs, args.seconds, lua, lua_n, n)
            results["rows"]["naive_server"] = rows
            results["rows"][f"naive_server_{n}"] = many

        if not args.no_infinity and not (INFINITY_VENV / "bin/python").exists():
            print(f"  skipping infinity-emb: no {INFINITY_VENV} (benches/peers/server_peers.sh makes it)")
        elif not args.no_infinity:
            name = pathlib.Path(args.model).name
            body = openai_body(name)
            inf_lua = write_lua(lua_single(body), scripts)
            inf_lua_n = write_lua(lua_many(body, n), scripts) if n else None

            def check(url: str) -> None:
                check_route(url, check_body(body, 1), 1, ref)
                if n:
                    check_route(url, check_body(body, n), n)

            engines = ("torch", "optimum") if args.infinity_engine == "auto" else (args.infinity_engine,)
            probe: dict = {}
            probe_s = min(args.seconds, 5)
            failed: dict = {}
            for engine in engines if len(engines) > 1 else ():
                results["quiet"] &= wait_quiet(args.quiet_wait_s)
                print(f"== infinity-emb, {engine} engine: probe, single texts, c={hi}, {probe_s:g} s", flush=True)
                try:
                    with infinity_server(args, engine, 8113, name, "-probe") as url:
                        check(url)
                        run_wrk(url, 8, 2, inf_lua)
                        probe[engine] = run_wrk(url, hi, probe_s, inf_lua)
                except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                    failed[engine] = str(e)
                    print(f"  the {engine} engine failed, left out: {e}", flush=True)
                    continue
                print(f"  {probe[engine]['texts_s']:.0f} texts/s", flush=True)
            if len(engines) > 1 and not probe:
                raise RuntimeError(f"no infinity engine ran: {failed}")
            engine = max(probe, key=lambda e: probe[e]["texts_s"]) if probe else engines[0]
            inf_meta = {"version": infinity_version(), "engine": engine, "batch_size": args.infinity_batch_size}
            results["infinity"] = inf_meta | {"probe": probe, "failed": failed}
            why = {0: "as asked", 1: "the only one that ran"}.get(len(probe), f"the faster in the probe at c={hi}")
            results["quiet"] &= wait_quiet(args.quiet_wait_s)
            version, batch = inf_meta["version"], args.infinity_batch_size
            print(f"== infinity-emb {version}, {engine} engine ({why}), batch size {batch}", flush=True)
            with infinity_server(args, engine, 8113, name) as url:
                check(url)
                rows, many = measure(url, concs, args.seconds, inf_lua, inf_lua_n, n)
            results["rows"]["infinity_server"] = rows
            results["rows"][f"infinity_server_{n}"] = many
    finally:
        for script in scripts:
            os.unlink(script)

    ip = results["rows"]["inprocess"]
    inf_engine = results.get("infinity", {}).get("engine", "")
    labels = {"rinfer_server": "rinfer server", "naive_server": "naive server"}
    labels["infinity_server"] = f"infinity ({inf_engine})"
    print(f"\n{'system':34s} {'c':>4s} {'req/s':>9s} {'texts/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s}")
    print(fmt_row("in-process encode (1 text)", 1, ip["encode1"]))
    print(fmt_row("in-process encode (64 texts)", "-", ip["encode64"]))
    for c in concs:
        print(fmt_row("in-process aencode", c, ip[f"aencode_c{c}"]))
    for name, label in labels.items():
        for c, r in results["rows"].get(name, {}).items():
            print(fmt_row(label, c, r))
    for c in concs if n else []:
        print(fmt_row(f"in-process aencode ({n} texts)", c, ip[f"aencode{n}_c{c}"]))
    for name, label in labels.items() if n else ():
        for c, r in results["rows"].get(f"{name}_{n}", {}).items():
            print(fmt_row(f"{label}, {n} texts", c, r))

    srv = results["rows"]["rinfer_server"]
    ratios = {
        f"server/aencode texts/s at c={hi} (bar >= 0.85)": srv[hi]["texts_s"] / ip[f"aencode_c{hi}"]["texts_s"],
        f"server/encode(64) texts/s at c={hi}": srv[hi]["texts_s"] / ip["encode64"]["texts_s"],
        f"server p50 - engine encode p50 at c={lo}, ms (bar <= 1.0)": srv[lo]["p50_ms"] - ip["encode1"]["p50_ms"],
    }
    if "naive_server" in results["rows"]:
        naive = results["rows"]["naive_server"]
        ratios[f"server/naive texts/s at c={hi} (bar >= 5)"] = ratio(srv[hi]["texts_s"], naive[hi]["texts_s"])
    if "infinity_server" in results["rows"]:
        inf = results["rows"]["infinity_server"]
        ratios[f"server/infinity texts/s at c={hi} (bar >= 2)"] = ratio(srv[hi]["texts_s"], inf[hi]["texts_s"])
    if n:
        srv_n = results["rows"][f"rinfer_server_{n}"]
        ratios[f"server/aencode texts/s, {n} texts a request, c={hi}"] = ratio(
            srv_n[hi]["texts_s"], ip[f"aencode{n}_c{hi}"]["texts_s"]
        )
        for peer in ("naive", "infinity"):
            if f"{peer}_server_{n}" in results["rows"]:
                ratios[f"server/{peer} texts/s, {n} texts a request, c={hi}"] = ratio(
                    srv_n[hi]["texts_s"], results["rows"][f"{peer}_server_{n}"][hi]["texts_s"]
                )
    results["ratios"] = ratios
    if "infinity_server" in results["rows"]:
        # rinfer's texts/s over infinity's, at each concurrency
        over = {"single": {c: ratio(srv[c]["texts_s"], inf[c]["texts_s"]) for c in concs}}
        if n:
            inf_n = results["rows"][f"infinity_server_{n}"]
            over[f"{n} texts"] = {c: ratio(srv_n[c]["texts_s"], inf_n[c]["texts_s"]) for c in concs}
        results["rinfer_over_infinity"] = over
        head = f"rinfer / infinity ({inf_engine}) texts/s"
        print(f"\n{head:34s} " + " ".join(f"{f'c={c}':>7s}" for c in concs))
        for kind, row in over.items():
            bar = f"   (bar >= 2 at c={hi}, single texts)" if kind == "single" else ""
            print(f"  {kind:32s} " + " ".join(f"{row[c]:7.2f}" for c in concs) + bar)
    print()
    for k, v in ratios.items():
        print(f"{k:58s} {v:6.2f}")
    if not results["quiet"]:
        print("warning: a build ran beside part of this run; its numbers are noisy")
    (OUT / "server_bench.json").write_text(json.dumps(results, indent=1))
    if BENCH_PY.exists():
        subprocess.run([str(BENCH_PY), __file__.replace("server_bench.py", "peers/server_plot.py")], check=False)


if __name__ == "__main__":
    sys.exit(main())
