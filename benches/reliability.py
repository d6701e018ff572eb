"""Load and faults of `rinfer serve`, in one bounded run on loopback (127.0.0.1, free
ports), three bars:

(a) overload: the peak throughput at concurrencies within the admission queue
    (--max-queue), then 4 x that capacity of clients for --overload-seconds. Every
    answer must be 200, or 429/503 with Retry-After (a client told so waits it out, as
    the header asks), every accepted request answered (the server's own counters agree
    with the client's), and the 200s per second during the overload >= 90 % of the peak.
(b) soak: --soak-seconds of mixed traffic on a two-model server (the embedder and the
    reranker of tests/data/models/reranker): short and long texts, /v1/embeddings,
    rerank, background jobs (one in five cancelled), clients that hang up mid-body or
    while their request is queued, and requests whose X-Request-Timeout is too short
    to be met. The server's RSS (/proc/PID/status) must grow < 5 % from the level after
    the warm-up to the end; its open descriptors (/proc/PID/fd), counted with no client
    connected after the warm-up and at the end, must be equal; no answer other than the
    ones the traffic asks for (503 only for the short deadlines, nothing for hang-ups).
(c) kill -9 of a server in the middle of a --job-texts job (distinct texts), then a
    restart on the same SQLite job store: the job completes, and its result has one
    row per text, each the in-process rinfer.Embedder vector of its own text (max abs
    difference <= 1e-5, and its nearest reference is its own text's), stored exactly
    once in the store.

Writes reliability.json (figures and series), reliability.md (the table) and
reliability.png (RSS and descriptors over the soak, throughput over the overload)
to --out, prints the table with PASS/FAIL per bar, the CPU and core count, and exits
1 if a bar fails. The plot needs matplotlib: this interpreter's, else .bench-venv's.

    .venv/bin/python benches/reliability.py                       # about 13 minutes
    .venv/bin/python benches/reliability.py --overload-seconds 10 --soak-seconds 60 --job-texts 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import random
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH_PY = ROOT / ".bench-venv/bin/python"
HOST = "127.0.0.1"
LOG_PROBLEM = re.compile(r" (ERROR|CRITICAL) |Traceback")

_WORDS = (
    "the of and to in is was for on that with as by at from his her they this have had not are but "
    "river mountain city station market garden window library museum bridge harbour village forest "
    "engine signal network protocol server request answer model vector batch queue thread memory "
    "bright quiet early late green heavy gentle narrow ancient modern rapid careful simple strange "
    "walk build carry follow measure open close write read travel observe return explain repair "
    "morning evening winter summer journey history science music weather question letter picture"
)
WORDS = _WORDS.split()


# --- the machine --------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def load_average() -> list[float]:
    try:
        return [float(x) for x in pathlib.Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def text(rng: random.Random, words: int, tag: str = "") -> str:
    return (tag + " " if tag else "") + " ".join(rng.choice(WORDS) for _ in range(words))


# --- the server process ------------------------------------------------------------------------


class Server:
    """`rinfer serve` as a child process of this script (its pid is the server's)."""

    def __init__(self, name: str, args, store: pathlib.Path, out: pathlib.Path, reranker: bool) -> None:
        self.name, self.args, self.store, self.reranker = name, args, store, reranker
        self.log_path = out / f"server-{name}.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "rinfer", "serve", "--model", str(self.args.model)]
        if self.reranker:
            cmd += ["--model", f"rr={self.args.reranker}"]
        cmd += ["--host", HOST, "--port", str(self.port), "--max-queue", str(self.args.max_queue)]
        cmd += ["--job-store-url", f"sqlite:///{self.store}"]
        if self.args.threads:
            cmd += ["--threads", str(self.args.threads)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RINFER_")}  # no stray API key
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.starts += 1
        log = open(self.log_path, "a")  # noqa: SIM115 - the child keeps it
        log.write(f"==== start {self.starts}: {' '.join(cmd)}\n")
        log.flush()
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(self.store.parent))
        log.close()

    async def wait_ready(self, client, timeout: float = 180.0) -> None:
        import httpx

        end = time.monotonic() + timeout
        for _ in range(int(timeout / 0.1) + 1):
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if (await client.get(f"{self.url}/ready", timeout=2)).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            if time.monotonic() > end:
                break
            await asyncio.sleep(0.1)
        raise RuntimeError(f"server {self.name} not ready after {timeout:.0f} s; see {self.log_path}")

    def rss_kb(self) -> int | None:
        try:
            for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except (OSError, AttributeError):
            return None
        return None

    def cpu_s(self) -> float | None:
        """User + system CPU seconds of the server process so far (/proc/PID/stat)."""
        try:
            fields = pathlib.Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, AttributeError, IndexError, ValueError):
            return None

    def fds(self) -> int | None:
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except (OSError, AttributeError):
            return None

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


async def metrics(client, server: Server) -> dict[str, float]:
    """The server's Prometheus samples, by name with their labels as printed."""
    r = await client.get(f"{server.url}/metrics", timeout=10)
    out = {}
    for line in r.text.splitlines():
        m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


async def sampler(server: Server, series: list, stop: asyncio.Event, period: float, limit_s: float) -> None:
    """(t, RSS kB, open fds) of the server every `period` s until `stop` (or `limit_s`)."""
    t0 = time.monotonic()
    for _ in range(int(limit_s / period) + 1):
        series.append((round(time.monotonic() - t0, 2), server.rss_kb(), server.fds()))
        try:
            await asyncio.wait_for(stop.wait(), period)
            return
        except TimeoutError:
            pass


async def settled_fds(server: Server, timeout: float = 15.0) -> int | None:
    """The server's descriptor count once it has not changed for a second (connections
    the clients closed are closed on the server's side too)."""
    last, same_since = server.fds(), time.monotonic()
    end = time.monotonic() + timeout
    for _ in range(int(timeout / 0.1) + 1):
        await asyncio.sleep(0.1)
        now = server.fds()
        if now != last:
            last, same_since = now, time.monotonic()
        elif time.monotonic() - same_since >= 1.0 or time.monotonic() > end:
            break
    return last


# --- (a) overload ------------------------------------------------------------------------------


class Raw:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams, for the overload phase:
    a fraction of httpx's CPU per request, so that the load generator takes less of the
    CPUs that the server's throughput is measured on. Answers with Content-Length only
    (every /embed answer has one)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: bytes, body: bytes, timeout: float) -> tuple[int, dict[bytes, bytes]]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection(HOST, self.port), timeout)
        head = b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
        self.writer.write(head % (path, HOST.encode(), len(body)) + body)
        try:
            raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
            lines = raw.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            headers = {}
            for line in lines[1:]:
                if line:
                    k, _, v = line.partition(b":")
                    headers[k.strip().lower()] = v.strip()
            await asyncio.wait_for(self.reader.readexactly(int(headers.get(b"content-length", b"0"))), timeout)
        except BaseException:
            self.close()
            raise
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, headers

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Tally:
    """Answers of one phase: statuses, Retry-After on 429/503, transport errors, and the
    completion time of every 200 and every 429/503 (for rates per second)."""

    def __init__(self) -> None:
        self.status: dict[str, int] = {}
        self.no_retry_after = 0
        self.transport: dict[str, int] = {}
        self.ok_times: list[float] = []
        self.reject_times: list[float] = []
        self.sent = 0

    def add(self, t: float, code: int, retry_after: bool) -> None:
        self.status[str(code)] = self.status.get(str(code), 0) + 1
        if code == 200:
            self.ok_times.append(t)
        elif code in (429, 503):
            self.reject_times.append(t)
            self.no_retry_after += not retry_after

    def error(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.transport[name] = self.transport.get(name, 0) + 1

    def merge(self, other: Tally) -> None:
        for k, v in other.status.items():
            self.status[k] = self.status.get(k, 0) + v
        for k, v in other.transport.items():
            self.transport[k] = self.transport.get(k, 0) + v
        self.no_retry_after += other.no_retry_after
        self.sent += other.sent


async def closed_loop(port: int, clients: int, ramp: float, seconds: float, tally: Tally, seed: int, probe=None):
    """`clients` clients on their own connections, one request outstanding each, single
    short texts to /embed for `ramp` + `seconds`; a 429/503 waits its Retry-After (+0-20 %
    jitter). Returns the measured window (start, end): the ramp is left out of rates, and
    `probe()` (CPU times) at the window's start and end."""
    t0 = time.monotonic()
    start, end = t0 + ramp, t0 + ramp + seconds
    marks = []

    async def mark() -> None:
        await asyncio.sleep(ramp)
        marks.append(probe())
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        marks.append(probe())

    async def one(k: int) -> None:
        rng = random.Random(seed * 100_003 + k)
        conn = Raw(port)
        try:
            for i in range(int((ramp + seconds) * 5000) + 1):  # more than any server answers
                if time.monotonic() >= end:
                    return
                body = json.dumps({"inputs": f"query {k}.{i}: " + text(rng, 8)}).encode()
                tally.sent += 1
                try:
                    code, headers = await conn.post(b"/embed", body, timeout=120)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
                    tally.error(exc)  # counted: an accepted request must be answered
                    await asyncio.sleep(0.1)
                    continue
                tally.add(time.monotonic(), code, b"retry-after" in headers)
                if code in (429, 503):
                    try:
                        wait = float(headers.get(b"retry-after", b"1"))
                    except ValueError:
                        wait = 1.0
                    await asyncio.sleep(min(wait, 5.0) * rng.uniform(1.0, 1.2))
        finally:
            conn.close()

    await asyncio.gather(*(one(k) for k in range(clients)), *([mark()] if probe else []))
    return start, end, marks


def rate(times: list[float], start: float, end: float) -> float:
    return sum(start <= t < end for t in times) / (end - start)


def per_second(times: list[float], start: float, end: float) -> list[int]:
    n = max(1, int(end - start + 0.999))
    out = [0] * n
    for t in times:
        if start <= t < end:
            out[min(int(t - start), n - 1)] += 1
    return out


def counter(m: dict[str, float], name: str) -> float:
    return m.get(name, 0.0)


async def overload(args, httpx, server: Server, res: dict) -> None:
    cap = args.max_queue
    levels = sorted({max(1, cap // 4), max(1, cap // 2), cap})
    peak_s, ramp = max(5.0, args.overload_seconds / 6), 2.0
    out = res["overload"] = {"capacity": cap, "levels": [], "peak_seconds_each": peak_s, "ramp_seconds": ramp}
    timeline = out["timeline"] = []  # (seconds since the first level, phase, 200/s, 429+503/s)
    origin = time.monotonic()
    ok_path = 'rinfer_http_requests_total{route="/embed",status="200"}'

    async def phase(c: int, seconds: float, seed: int, name: str) -> tuple[Tally, dict]:
        tally = Tally()
        async with httpx.AsyncClient(timeout=30) as client:
            before = await metrics(client, server)
            probe = lambda: (server.cpu_s(), time.process_time())
            start, end, marks = await closed_loop(server.port, c, ramp, seconds, tally, seed, probe)
            await asyncio.sleep(0.3)
            after = await metrics(client, server)
        okps, rejps = per_second(tally.ok_times, start, end), per_second(tally.reject_times, start, end)
        timeline.extend((round(start - origin + i, 1), f"{name}, c={c}", okps[i], rejps[i]) for i in range(len(okps)))
        figures = {
            "clients": c,
            "phase": name,
            "ok_per_s": rate(tally.ok_times, start, end),
            "rejected_per_s": rate(tally.reject_times, start, end),
            # the server's CPU seconds per second (2 = both cores of 2): what the neighbours left it
            "server_cpu_per_s": (marks[1][0] - marks[0][0]) / (end - start),
            "client_cpu_per_s": (marks[1][1] - marks[0][1]) / (end - start),
            "slowest_second_ok": min(okps),
            "sent": tally.sent,
            "answered": sum(tally.status.values()),
            "status": tally.status,
            "no_retry_after": tally.no_retry_after,
            "transport_errors": tally.transport,
            "server_200": counter(after, ok_path) - counter(before, ok_path),
            "server_texts": counter(after, "rinfer_batcher_texts_total")
            - counter(before, "rinfer_batcher_texts_total"),
            "server_rejected": counter(after, "rinfer_batcher_rejected_total")
            - counter(before, "rinfer_batcher_rejected_total"),
            "server_dropped": counter(after, "rinfer_dropped_total") - counter(before, "rinfer_dropped_total"),
        }
        print(
            f"  {name} c={c}: {figures['ok_per_s']:.0f} req/s, {figures['rejected_per_s']:.0f} 429+503/s, server "
            f"CPU {figures['server_cpu_per_s']:.2f}/s, load generator {figures['client_cpu_per_s']:.2f}/s, "
            f"statuses {tally.status}, transport errors {tally.transport or 0}",
            flush=True,
        )
        return tally, figures

    await closed_loop(server.port, cap, 0.0, 2.0, Tally(), seed=1)  # warm-up: connections, caches
    within = Tally()
    for c in levels:
        tally, figures = await phase(c, peak_s, 10 + c, "within capacity")
        within.merge(tally)
        out["levels"].append(figures)
    tally, figures = await phase(4 * cap, args.overload_seconds, 99, "overload")
    out["overload"] = figures
    tally, figures = await phase(cap, peak_s, 200, "within capacity, after")
    within.merge(tally)
    out["levels"].append(figures)
    out["within_status"] = within.status
    out["within_transport_errors"] = within.transport
    out["peak_ok_per_s"] = max(v["ok_per_s"] for v in out["levels"])
    out["ratio"] = out["overload"]["ok_per_s"] / out["peak_ok_per_s"] if out["peak_ok_per_s"] else 0.0
    # requests per CPU second the server got: the same ratio with the neighbours' share taken out
    per_cpu = [v["ok_per_s"] / v["server_cpu_per_s"] for v in out["levels"] if v["server_cpu_per_s"]]
    ov = out["overload"]
    out["ok_per_server_cpu_s_peak"] = max(per_cpu) if per_cpu else 0.0
    out["ok_per_server_cpu_s_overload"] = ov["ok_per_s"] / ov["server_cpu_per_s"] if ov["server_cpu_per_s"] else 0.0
    out["ratio_per_cpu"] = (
        out["ok_per_server_cpu_s_overload"] / out["ok_per_server_cpu_s_peak"]
        if out["ok_per_server_cpu_s_peak"]
        else 0.0
    )
    print(f"  overload / peak within capacity: {out['ratio']:.3f}", flush=True)


# --- (b) soak ----------------------------------------------------------------------------------


class SoakTally:
    def __init__(self) -> None:
        self.kinds: dict[str, dict[str, int]] = {}
        self.unexpected: list[str] = []

    def count(self, kind: str, outcome: str) -> None:
        d = self.kinds.setdefault(kind, {})
        d[outcome] = d.get(outcome, 0) + 1

    def check(self, kind: str, r, allowed=(200,)) -> bool:
        self.count(kind, str(r.status_code))
        if r.status_code not in allowed:
            self.unexpected.append(f"{kind}: {r.status_code} {r.text[:160]}")
            return False
        if r.status_code in (429, 503) and "retry-after" not in r.headers:
            self.unexpected.append(f"{kind}: {r.status_code} without Retry-After")
            return False
        return True

    def error(self, kind: str, exc: Exception) -> None:
        self.count(kind, type(exc).__name__)
        self.unexpected.append(f"{kind}: {type(exc).__name__} {exc}"[:200])


async def hang_up(port: int, method: str, path: str, body: bytes, mid_body: bool, wait: float, abort: bool) -> bool:
    """Sends a request on a raw connection and closes it before the answer, or during it
    (half the body only when `mid_body`). True when the server had begun answering."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    writer.write(head + (body[: len(body) // 2] if mid_body else body))
    await writer.drain()
    answered = False
    try:
        answered = bool(await asyncio.wait_for(reader.read(1024), wait))
    except TimeoutError:
        pass
    if abort:
        writer.transport.abort()  # RST
    else:
        writer.close()  # FIN
    try:
        await asyncio.wait_for(writer.wait_closed(), 5)
    except (TimeoutError, OSError):
        pass
    return answered


async def soak_traffic(httpx, server: Server, seconds: float, tally: SoakTally, seed: int) -> None:
    """The mixed traffic for `seconds`: 9 closed-loop workers, bounded in count and time."""
    end = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    finished: list[str] = []  # ids of jobs that succeeded, for results cut mid-download
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:

        async def short(k: int) -> None:
            rng = random.Random(seed * 1000 + k)
            for i in range(int(seconds * 2000)):
                if time.monotonic() >= end:
                    return
                texts = [f"short {k}.{i}.{j} " + text(rng, rng.randint(3, 16)) for j in range(rng.randint(1, 4))]
                try:
                    if i % 2:
                        r = await client.post("/embed", json={"inputs": texts})
                    else:
                        r = await client.post("/v1/embeddings", json={"input": texts, "model": "all-MiniLM-L6-v2"})
                except Exception as exc:  # noqa: BLE001
                    tally.error("short", exc)
                    continue
                tally.check("short", r)

        async def long(k: int) -> None:
            rng = random.Random(seed * 2000 + k)
            for i in range(int(seconds * 500)):
                if time.monotonic() >= end:
                    return
                texts = [f"long {k}.{i}.{j} " + text(rng, rng.randint(120, 400)) for j in range(rng.randint(1, 8))]
                try:
                    r = await client.post("/embed", json={"inputs": texts, "truncate": True})
                except Exception as exc:  # noqa: BLE001
                    tally.error("long", exc)
                    continue
                tally.check("long", r)

        async def rerank() -> None:
            rng = random.Random(seed * 3000)
            for i in range(int(seconds * 1000)):
                if time.monotonic() >= end:
                    return
                docs = [text(rng, rng.randint(4, 30)) for _ in range(rng.randint(2, 20))]
                q = text(rng, 5)
                try:
                    if i % 2:
                        r = await client.post("/v1/rerank", json={"model": "rr", "query": q, "documents": docs})
                    else:
                        r = await client.post("/models/rr/rerank", json={"query": q, "texts": docs})
                except Exception as exc:  # noqa: BLE001
                    tally.error("rerank", exc)
                    continue
                tally.check("rerank", r)

        async def jobs() -> None:
            rng = random.Random(seed * 4000)
            for i in range(int(seconds) + 1):
                if time.monotonic() >= end - 2:
                    return
                n = rng.randint(50, 300)
                texts = [f"job {seed}.{i}.{j} " + text(rng, rng.randint(5, 60)) for j in range(n)]
                try:
                    r = await client.post("/v1/jobs", json={"inputs": texts})
                    if not tally.check("job-submit", r, (202,)):
                        continue
                    jid = r.json()["id"]
                    if i % 5 == 4:
                        r = await client.delete(f"/v1/jobs/{jid}")
                        tally.check("job-cancel", r)
                        continue
                    status = None
                    for _ in range(600):  # 60 s at most
                        r = await client.get(f"/v1/jobs/{jid}")
                        if not tally.check("job-status", r):
                            break
                        status = r.json()["status"]
                        if status not in ("queued", "running") or time.monotonic() >= end + 30:
                            break
                        await asyncio.sleep(0.1)
                    if status != "succeeded":
                        tally.unexpected.append(f"job {jid} ended {status}")
                        continue
                    fmt = "npy" if i % 2 else "jsonl"
                    r = await client.get(f"/v1/jobs/{jid}/result", params={"format": fmt})
                    if tally.check("job-result", r):
                        rows = (len(r.content) - 128) // (384 * 4) if fmt == "npy" else r.text.count("\n")
                        if rows != n:
                            tally.unexpected.append(f"job {jid}: {rows} rows for {n} texts")
                        finished.append(jid)
                except Exception as exc:  # noqa: BLE001
                    tally.error("job", exc)

        async def hang_ups() -> None:
            rng = random.Random(seed * 5000)
            for i in range(int(seconds * 200)):
                if time.monotonic() >= end:
                    return
                texts = [f"gone {i}.{j} " + text(rng, rng.randint(100, 300)) for j in range(rng.randint(4, 32))]
                path = "/embed" if i % 3 else "/v1/rerank"
                body = {"inputs": texts} if path == "/embed" else {"model": "rr", "query": "q", "documents": texts}
                mid = i % 4 == 0
                try:
                    if i % 7 == 6 and finished:  # a job's result, cut while it streams
                        fmt = "npy" if i % 2 else "jsonl"
                        await hang_up(
                            server.port, "GET", f"/v1/jobs/{finished[-1]}/result?format={fmt}", b"", False, 5.0, True
                        )
                        tally.count("hang-up", "result download cut")
                        continue
                    answered = await hang_up(
                        server.port, "POST", path, json.dumps(body).encode(), mid, rng.uniform(0.002, 0.05), i % 2 == 0
                    )
                    tally.count("hang-up", "answered first" if answered else ("mid-body" if mid else "queued"))
                except Exception as exc:  # noqa: BLE001
                    tally.error("hang-up", exc)
                await asyncio.sleep(rng.uniform(0.0, 0.05))

        async def deadlines() -> None:
            rng = random.Random(seed * 6000)
            for i in range(int(seconds * 500)):
                if time.monotonic() >= end:
                    return
                texts = [f"late {i}.{j} " + text(rng, rng.randint(50, 250)) for j in range(rng.randint(4, 24))]
                headers = {"X-Request-Timeout": f"{rng.uniform(0.001, 0.05):.3f}"}
                try:
                    r = await client.post("/embed", json={"inputs": texts}, headers=headers)
                except Exception as exc:  # noqa: BLE001
                    tally.error("deadline", exc)
                    continue
                tally.check("deadline", r, (200, 503))

        await asyncio.gather(short(0), short(1), short(2), long(0), long(1), rerank(), jobs(), hang_ups(), deadlines())


async def soak(args, httpx, server: Server, res: dict) -> None:
    warm = min(90.0, max(10.0, args.soak_seconds * 0.15))
    series: list = []
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler(server, series, stop, 1.0, args.soak_seconds + 600))
    t0 = time.monotonic()
    tally = SoakTally()
    await soak_traffic(httpx, server, warm, tally, seed=1)
    fds_warm = await settled_fds(server)  # no client connected
    t_main = time.monotonic() - t0
    print(f"  warm-up {warm:.0f} s done: {fds_warm} fds, RSS {server.rss_kb() / 1024:.0f} MiB", flush=True)
    await soak_traffic(httpx, server, args.soak_seconds - warm, tally, seed=2)
    t_end = time.monotonic() - t0
    fds_end = await settled_fds(server)
    stop.set()
    await sampling
    window = min(30.0, (t_end - t_main) / 4)
    after_warm = [rss for t, rss, _ in series if t_main <= t < t_main + window and rss]
    last = [rss for t, rss, _ in series if t_end - window <= t <= t_end and rss]
    base, final = statistics.median(after_warm), statistics.median(last)
    peak_after = max(rss for t, rss, _ in series if t >= t_main and rss)
    res["soak"] = {
        "seconds": args.soak_seconds,
        "warmup_seconds": warm,
        "window_seconds": window,
        "rss_after_warmup_kb": base,
        "rss_end_kb": final,
        "rss_max_after_warmup_kb": peak_after,
        "rss_growth": final / base - 1,
        "fds_after_warmup": fds_warm,
        "fds_end": fds_end,
        "traffic": tally.kinds,
        "unexpected": len(tally.unexpected),
        "unexpected_first": tally.unexpected[:20],
        "server_log_errors": [x for x in server.log_text().splitlines() if LOG_PROBLEM.search(x)],
        "series": series,
        "main_start_s": t_main,
        "main_end_s": t_end,
    }
    print(
        f"  soak: RSS {base / 1024:.1f} -> {final / 1024:.1f} MiB ({final / base - 1:+.2%}), fds {fds_warm} -> "
        f"{fds_end}, unexpected {len(tally.unexpected)}",
        flush=True,
    )


# --- (c) kill -9 during a job ------------------------------------------------------------------


async def kill_during_job(args, httpx, tmp: pathlib.Path, out: pathlib.Path, res: dict) -> None:
    import numpy as np
    import rinfer

    rng = random.Random(7)
    texts = [f"text {i}: " + text(rng, rng.randint(6, 40)) for i in range(args.job_texts)]
    assert len(set(texts)) == len(texts)
    store = tmp / "jobs-kill.db"
    server = Server("job", args, store, out, reranker=False)
    r = {"texts": len(texts)}
    res["job"] = r
    async with httpx.AsyncClient(timeout=120) as client:
        server.start()
        try:
            await server.wait_ready(client)
            resp = await client.post(f"{server.url}/v1/jobs", json={"inputs": texts})
            resp.raise_for_status()
            jid = resp.json()["id"]
            done = 0
            for _ in range(6000):  # 10 minutes at most
                job = (await client.get(f"{server.url}/v1/jobs/{jid}")).json()
                done = job["done"]
                if done >= 0.4 * len(texts) or job["status"] not in ("queued", "running"):
                    break
                await asyncio.sleep(0.1)
            server.kill9()
            r["done_at_kill"] = done
            r["status_at_kill"] = job["status"]
            print(f"  kill -9 at {done}/{len(texts)} ({job['status']})", flush=True)
            t_restart = time.monotonic()
            server.start()
            await server.wait_ready(client)
            status = None
            for _ in range(6000):
                job = (await client.get(f"{server.url}/v1/jobs/{jid}")).json()
                status = job["status"]
                if status not in ("queued", "running"):
                    break
                await asyncio.sleep(0.1)
            r["status_after_restart"] = status
            r["seconds_restart_to_done"] = time.monotonic() - t_restart
            got = None
            if status == "succeeded":
                resp = await client.get(f"{server.url}/v1/jobs/{jid}/result", params={"format": "npy"})
                resp.raise_for_status()
                (tmp / "result.npy").write_bytes(resp.content)
                got = np.load(tmp / "result.npy")
        finally:
            server.stop()
    m = re.search(rf"resuming job {jid} at (\d+)/", server.log_text())
    r["resumed_at"] = int(m.group(1)) if m else None
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        n, distinct, lo, hi = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT idx), MIN(idx), MAX(idx) FROM job_rows WHERE job_id = ?", (jid,)
        ).fetchone()
    r["store_rows"], r["store_distinct_idx"], r["store_idx_range"] = n, distinct, [lo, hi]
    r["result_rows"] = None if got is None else int(got.shape[0])
    if got is not None and got.shape[0] == len(texts):
        model = rinfer.Embedder.load(str(args.model), threads=args.threads)
        ref = np.concatenate([model.encode(texts[i : i + 256]) for i in range(0, len(texts), 256)])
        diff = np.abs(got - ref).max(axis=1)
        r["max_abs_diff"] = float(diff.max())
        r["rows_over_1e-5"] = int((diff > 1e-5).sum())
        nearest = np.concatenate([np.argmax(got[i : i + 1000] @ ref.T, axis=1) for i in range(0, len(got), 1000)])
        r["rows_nearest_not_own_text"] = int((nearest != np.arange(len(got))).sum())
        r["distinct_result_rows"] = len(np.unique(got, axis=0))
    print(
        f"  restarted: {status} in {r['seconds_restart_to_done']:.1f} s, resumed at {r['resumed_at']}, rows "
        f"{r['result_rows']} (store {n}, distinct idx {distinct}), max |diff| {r.get('max_abs_diff')}",
        flush=True,
    )


# --- report ------------------------------------------------------------------------------------


def bars(res: dict) -> list[tuple[str, str, str, bool | None]]:
    """(bar, measured, required, passed; None: a figure for information, no bar)."""
    out = []
    o = res.get("overload")
    if o:
        ov = o["overload"]
        bad = {k: v for k, v in ov["status"].items() if k not in ("200", "429", "503")}
        errors = sum(ov["transport_errors"].values())
        out.append(
            (
                (
                    f"(a) overload answers: {ov['clients']} clients = 4 x queue {o['capacity']}, "
                    f"{o['ramp_seconds']:.0f} + {res['args']['overload_seconds']} s"
                ),
                f"{ov['status']}, {ov['no_retry_after']} 429/503 without Retry-After, {errors} transport errors",
                "200, or 429/503 with Retry-After",
                not bad and ov["no_retry_after"] == 0 and not errors,
            )
        )
        out.append(
            (
                "(a) answers within capacity (c = " + ", ".join(str(v["clients"]) for v in o["levels"]) + ")",
                f"{o['within_status']}, {sum(o['within_transport_errors'].values())} transport errors",
                "200 only",
                set(o["within_status"]) == {"200"} and not o["within_transport_errors"],
            )
        )
        ok, rej = ov["status"].get("200", 0), ov["status"].get("429", 0) + ov["status"].get("503", 0)
        out.append(
            (
                "(a) every accepted request answered (overload)",
                (
                    f"sent {ov['sent']}, answered {ov['answered']}; server: {ov['server_200']:.0f} 200s and "
                    f"{ov['server_texts']:.0f} texts embedded for {ok} 200s, {ov['server_rejected']:.0f} refused for "
                    f"{rej} 429/503s, {ov['server_dropped']:.0f} dropped"
                ),
                "sent = answered = 200s + refused, server and client counts equal",
                ov["sent"] == ov["answered"] == ok + rej
                and ov["server_200"] == ov["server_texts"] == ok
                and ov["server_rejected"] == rej
                and ov["server_dropped"] == 0,
            )
        )
        peak = max(o["levels"], key=lambda v: v["ok_per_s"])
        out.append(
            (
                "(a) throughput under overload / peak within capacity",
                (
                    f"{ov['ok_per_s']:.0f} / {o['peak_ok_per_s']:.0f} req/s = {o['ratio']:.3f} (peak at c={peak['clients']}"
                    f" {peak['phase']}; slowest overload second {ov['slowest_second_ok']} req/s)"
                ),
                ">= 0.90",
                o["ratio"] >= 0.9,
            )
        )
        out.append(
            (
                "(a) the same per CPU-second the server got (the neighbours' share taken out)",
                (
                    f"{o['ok_per_server_cpu_s_overload']:.0f} / {o['ok_per_server_cpu_s_peak']:.0f} req per server "
                    f"CPU-s = {o['ratio_per_cpu']:.3f} (server CPU {ov['server_cpu_per_s']:.2f}/s under overload)"
                ),
                "information",
                None,
            )
        )
    s = res.get("soak")
    if s:
        out.append(
            (
                f"(b) RSS growth over a {s['seconds']:.0f} s soak after {s['warmup_seconds']:.0f} s warm-up",
                (
                    f"{s['rss_after_warmup_kb'] / 1024:.1f} -> {s['rss_end_kb'] / 1024:.1f} MiB "
                    f"({s['rss_growth']:+.2%}; max {s['rss_max_after_warmup_kb'] / 1024:.1f})"
                ),
                "< +5 %",
                s["rss_growth"] < 0.05,
            )
        )
        out.append(
            (
                "(b) open fds, no client connected",
                f"{s['fds_after_warmup']} after warm-up, {s['fds_end']} at the end",
                "equal",
                s["fds_after_warmup"] is not None and s["fds_after_warmup"] == s["fds_end"],
            )
        )
        n = sum(sum(v.values()) for v in s["traffic"].values())
        out.append(
            (
                "(b) unexpected answers in the soak; errors in the server's log",
                f"{s['unexpected']} of {n} requests; {len(s['server_log_errors'])} log lines",
                "0; 0",
                s["unexpected"] == 0 and not s["server_log_errors"],
            )
        )
    j = res.get("job")
    if j:
        out.append(
            (
                f"(c) kill -9 mid-job ({j['texts']} texts), restart",
                (
                    f"killed at {j.get('done_at_kill')}, resumed at {j.get('resumed_at')}, "
                    f"{j.get('status_after_restart')} {j.get('seconds_restart_to_done', 0):.1f} s after the restart"
                ),
                "killed mid-job, succeeded",
                0 < (j.get("done_at_kill") or 0) < j["texts"] and j.get("status_after_restart") == "succeeded",
            )
        )
        out.append(
            (
                "(c) every text's vector exactly once",
                (
                    f"{j.get('result_rows')} rows ({j.get('distinct_result_rows')} distinct), store {j['store_rows']} "
                    f"rows / {j['store_distinct_idx']} indices, max |diff| {j.get('max_abs_diff', float('nan')):.1e}, "
                    f"{j.get('rows_nearest_not_own_text')} rows nearest another text"
                ),
                "N rows, each its text's within 1e-5",
                j.get("result_rows") == j["texts"]
                and j.get("distinct_result_rows") == j["texts"]
                and j["store_rows"] == j["store_distinct_idx"] == j["texts"]
                and j.get("rows_over_1e-5") == 0
                and j.get("rows_nearest_not_own_text") == 0,
            )
        )
    return out


def table(res: dict) -> str:
    lines = [
        (
            f"CPU: {res['cpu']}, {res['cores']} cores; load average {res['load_start']} at the start, "
            f"{res['load_end']} at the end; {res['seconds']:.0f} s in all"
        ),
        "",
        "| bar | measured | required | result |",
        "|---|---|---|---|",
    ]
    for name, got, need, ok in bars(res):
        lines.append(f"| {name} | {got} | {need} | {'-' if ok is None else 'PASS' if ok else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def plot(json_path: pathlib.Path, png: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = json.loads(json_path.read_text())
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    o = res.get("overload")
    ax = axes[0]
    if o:
        tl = o["timeline"]
        for i, phase in enumerate(dict.fromkeys(ph for _, ph, _, _ in tl)):
            pts = [(t, ok, rej) for t, ph, ok, rej in tl if ph == phase]
            xs = [t for t, _, _ in pts]
            oks = [ok for _, ok, _ in pts]
            ax.plot(xs, oks, color="tab:blue", lw=0.6, alpha=0.4, label="200/s" if i == 0 else None)
            mean5 = [sum(oks[max(0, j - 4) : j + 1]) / len(oks[max(0, j - 4) : j + 1]) for j in range(len(oks))]
            ax.plot(xs, mean5, color="tab:blue", lw=1.4, label="200/s, mean of 5 s" if i == 0 else None)
            ax.plot(xs, [r for _, _, r in pts], color="tab:red", lw=0.8, label="429+503/s" if i == 0 else None)
            if phase.startswith("overload"):
                ax.axvspan(
                    xs[0], xs[-1] + 1, color="tab:orange", alpha=0.12, label=f"{o['overload']['clients']} clients"
                )
        ax.axhline(o["peak_ok_per_s"], color="grey", ls="--", lw=1, label="peak within capacity")
        ax.axhline(0.9 * o["peak_ok_per_s"], color="grey", ls=":", lw=1, label="90 % of peak")
        clients = ", ".join(str(v["clients"]) for v in o["levels"])
        ax.set_title(f"requests/s: c = {clients} (within capacity) around the overload", fontsize=9)
        ax.set_xlabel("s")
        ax.legend(fontsize=7)
    else:
        ax.set_axis_off()
    s = res.get("soak")
    if s:
        t = [p[0] for p in s["series"]]
        for ax, k, label in ((axes[1], 1, "RSS, MiB"), (axes[2], 2, "open fds")):
            vals = [(p[k] / 1024 if k == 1 else p[k]) if p[k] is not None else float("nan") for p in s["series"]]
            ax.plot(t, vals, lw=1)
            ax.axvline(s["main_start_s"], color="grey", ls=":", lw=1, label="end of warm-up")
            if k == 1:
                base = s["rss_after_warmup_kb"] / 1024
                ax.axhspan(base, base * 1.05, color="tab:green", alpha=0.1, label="after warm-up +5 %")
            ax.set_title(f"server {label} over the soak", fontsize=9)
            ax.set_xlabel("s")
            ax.legend(fontsize=7)
    fig.suptitle(f"rinfer serve reliability, {res['cpu']}, {res['cores']} cores", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def write_plot(json_path: pathlib.Path, png: pathlib.Path) -> str:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if not BENCH_PY.exists():
            return "no plot: matplotlib is in neither this interpreter nor .bench-venv"
        cmd = [str(BENCH_PY), __file__, "--plot", str(json_path), "--out", str(png.parent)]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
        if done.returncode:
            return f"no plot: {done.stderr.strip().splitlines()[-1:]}"
        return f"plot: {png}"
    plot(json_path, png)
    return f"plot: {png}"


async def run(args) -> int:
    import httpx

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("server-*.log"):
        stale.unlink()
    res: dict = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_allowed": len(os.sched_getaffinity(0)),
        "load_start": load_average(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rinfer-reliability-") as tmpdir:
        tmp = pathlib.Path(tmpdir)
        if args.overload_seconds > 0 or args.soak_seconds > 0:
            server = Server("main", args, tmp / "jobs.db", out, reranker=True)
            server.start()
            try:
                async with httpx.AsyncClient() as c:
                    await server.wait_ready(c)
                if args.overload_seconds > 0:
                    print(f"(a) overload, queue capacity {args.max_queue}", flush=True)
                    await overload(args, httpx, server, res)
                if args.soak_seconds > 0:
                    print(f"(b) soak, {args.soak_seconds:.0f} s", flush=True)
                    await soak(args, httpx, server, res)
                if server.proc.poll() is not None:
                    raise RuntimeError(f"the server died ({server.proc.returncode}); see {server.log_path}")
            finally:
                server.stop()
        if args.job_texts > 0:
            print(f"(c) kill -9 during a {args.job_texts}-text job", flush=True)
            await kill_during_job(args, httpx, tmp, out, res)
    res["seconds"] = time.monotonic() - t0
    res["load_end"] = load_average()
    res["bars"] = [{"bar": b, "measured": m, "required": q, "pass": ok} for b, m, q, ok in bars(res)]
    (out / "reliability.json").write_text(json.dumps(res, indent=1))
    md = table(res)
    (out / "reliability.md").write_text(md)
    note = write_plot(out / "reliability.json", out / "reliability.png")
    print()
    print(md)
    print(note)
    failed = [b for b, _, _, ok in bars(res) if ok is False]
    print("FAIL: " + "; ".join(failed) if failed else "all bars PASS")
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--overload-seconds", type=float, default=60, help="overload window, s (0: skip (a))")
    ap.add_argument("--soak-seconds", type=float, default=600, help="soak length, s (0: skip (b))")
    ap.add_argument("--job-texts", type=int, default=10_000, help="texts of the killed job (0: skip (c))")
    ap.add_argument("--max-queue", type=int, default=64, help="the server's admission queue (capacity)")
    ap.add_argument("--threads", type=int, default=None, help="the server's compute threads (default: its CPUs)")
    ap.add_argument("--model", type=pathlib.Path, default=ROOT / "models/all-MiniLM-L6-v2")
    ap.add_argument("--reranker", type=pathlib.Path, default=ROOT / "tests/data/models/reranker")
    ap.add_argument("--out", default=str(ROOT / "bench-results/reliability"), help="folder for JSON, table, plot")
    ap.add_argument("--plot", type=pathlib.Path, help=argparse.SUPPRESS)  # plot a JSON only (.bench-venv)
    args = ap.parse_args()
    if args.plot:
        plot(args.plot, pathlib.Path(args.out) / "reliability.png")
        return 0
    if args.soak_seconds and args.soak_seconds < 20:
        ap.error("--soak-seconds: at least 20 (or 0 to skip)")
    try:
        import uvloop  # the server's loop too: less of the shared CPUs spent generating load
    except ImportError:
        return asyncio.run(run(args))
    return uvloop.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
