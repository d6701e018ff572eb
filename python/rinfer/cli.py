"""The ``rinfer`` command: ``rinfer serve`` (HTTP server), ``rinfer embed`` (lines
on stdin, one JSON vector per line on stdout) and ``rinfer bench`` (speed and
quality of each precision on this machine)."""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys
import time


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from rinfer.server import Settings, create_app

    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    if overrides.get("model_path"):
        from rinfer.compat import resolve_model

        def resolved(item: str) -> str:
            # a folder, or a Hugging Face id found in the local cache (TEI's --model-id); NAME=FOLDER names it
            name, sep, path = item.partition("=")
            if sep and not pathlib.Path(item).exists():
                return f"{name}={resolve_model(path)}"
            return str(resolve_model(item))

        paths = [resolved(x) for x in overrides.pop("model_path")]
        if len(paths) == 1 and "=" not in paths[0]:
            overrides["model_path"] = paths[0]
        else:
            overrides["models"] = paths
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:  # e.g. an API key file that cannot be read: say so, no traceback
        for err in exc.errors():
            where = ".".join(str(x) for x in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            print(f"rinfer serve: {where + ': ' if where else ''}{msg}", file=sys.stderr)
        return 2
    app = create_app(settings)
    # uvloop and httptools when installed (the server extra pins them), else asyncio and h11.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level.lower(),
        log_config=None,
        access_log=settings.access_log,
        loop="auto",
        http="auto",
    )
    return 0


class _Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal, or forced)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.perf_counter()

    def update(self, done: int) -> None:
        if self.enabled:
            rate = done / max(time.perf_counter() - self.start, 1e-9)
            sys.stderr.write(f"\rembedded {done} lines ({rate:.0f}/s)")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    import rinfer

    model = rinfer.Embedder.load(
        args.model or rinfer.default_model_path(),
        threads=args.threads,
        dtype=args.dtype,
        quality_floor=args.quality_floor,
    )
    info = model.model_info
    log = logging.getLogger("rinfer")
    if info["note"]:
        log.warning("%s", info["note"])
    log.info(
        "model %s dim=%d dtype=%s gemm=%s isa=%s threads=%d",
        info["path"],
        info["dim"],
        info["dtype"],
        info["gemm_kernel"],
        info["isa"],
        info["threads"],
    )
    if info["quality"]:
        q = info["quality"]
        log.info(
            "quality vs f32 on %d probe texts: min cosine %.6f, mean %.6f",
            q["probes"],
            q["min_cosine"],
            q["mean_cosine"],
        )
    progress = _Progress(args.progress or sys.stderr.isatty())
    done = 0
    batch: list[str] = []
    out = sys.stdout

    def flush() -> None:
        nonlocal done
        if not batch:
            return
        vecs = model.encode(batch, normalize=args.normalize)
        for v in vecs:
            out.write("[" + ",".join(np.char.mod("%.7g", v)) + "]\n")
        done += len(batch)
        batch.clear()
        progress.update(done)

    for line in sys.stdin:
        batch.append(line.rstrip("\n"))
        if len(batch) >= args.batch_size:
            flush()
    flush()
    progress.close()
    return 0


def _bench(args: argparse.Namespace) -> int:
    import statistics

    import numpy as np

    import rinfer

    path = args.model or rinfer.default_model_path()
    rng = np.random.default_rng(0)
    vocab_lo, vocab_hi = 1000, 20000  # ordinary word pieces of BERT vocabularies
    shapes = [tuple(int(x) for x in s.lower().split("x")) for s in args.shapes.split(",")]
    rows = []
    for dtype in args.dtypes.split(","):
        model = rinfer.Embedder.load(path, threads=args.threads, dtype=dtype, quality_floor=-1.0)
        info = model.model_info
        if info["note"]:
            logging.getLogger("rinfer").warning("%s", info["note"])
        for n, length in shapes:
            ids = [
                np.concatenate([[101], rng.integers(vocab_lo, vocab_hi, max(length - 2, 0)), [102]]).astype(np.uint32)
                for _ in range(n)
            ]
            model.encode_ids(ids, batch_size=n)  # warm-up
            times = []
            progress = _Progress(args.progress or sys.stderr.isatty())
            for i in range(args.reps):
                t = time.perf_counter()
                model.encode_ids(ids, batch_size=n)
                times.append(time.perf_counter() - t)
                progress.update(i + 1)
            progress.close()
            med = statistics.median(times)
            q = info["quality"]
            rows.append(
                {
                    "dtype": info["dtype"],
                    "shape": f"{n}x{length}",
                    "ms": med * 1e3,
                    "tokens_per_s": n * length / med,
                    "min_cosine": q["min_cosine"] if q else 1.0,
                }
            )
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'dtype':<6} {'shape':>9} {'median ms':>10} {'tokens/s':>10} {'probe min cosine':>17}")
    for r in rows:
        print(f"{r['dtype']:<6} {r['shape']:>9} {r['ms']:>10.2f} {r['tokens_per_s']:>10.0f} {r['min_cosine']:>17.6f}")
    return 0


_DTYPES = {"f32": "f32", "float32": "f32", "bf16": "bf16", "bfloat16": "bf16", "int8": "int8"}


def _dtype(value: str) -> str:
    """rinfer's dtypes and TEI's names for them (float32, bfloat16)."""
    if value in _DTYPES:
        return _DTYPES[value]
    hint = " (rinfer has no float16 path; use bfloat16 or float32)" if value in ("float16", "f16") else ""
    raise argparse.ArgumentTypeError(f"invalid dtype {value!r}: choose f32/float32, bf16/bfloat16 or int8{hint}")


def _add_precision_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dtype",
        type=_dtype,
        metavar="{f32,bf16,int8}",
        help="precision of the matrix products: f32 (exact, default), bf16 or int8 (faster; the "
        "loss is measured at load and reported); TEI's float32 and bfloat16 are accepted",
    )
    p.add_argument(
        "--quality-floor",
        type=float,
        help="bf16/int8: fail to load when the probe-set cosine to f32 is under this (default 0.999 bf16, 0.99 int8)",
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("rinfer")
    except Exception:  # noqa: BLE001 - not installed as a distribution: ask the extension
        import rinfer

        return rinfer.__version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rinfer", description="rinfer: an embedded transformer inference engine")
    p.add_argument("--version", action="version", version=f"rinfer {_version()}", help="print the version and exit")
    p.add_argument("--log-level", default="INFO", help="logging level: DEBUG, INFO, WARNING, ERROR (default INFO)")
    p.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="log lines as text or JSON objects (default text)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "serve",
        help="serve a model over HTTP (OpenAI- and TEI-compatible; TEI's launcher flags are accepted too)",
    )
    s.add_argument(
        "--model",
        "--model-id",
        dest="model_path",
        action="append",
        help="model folder, or a Hugging Face id in the local cache (default: rinfer.default_model_path()); "
        "repeat it to serve several models (NAME=FOLDER names one; the first is the default; also RINFER_MODELS)",
    )
    s.add_argument(
        "--served-model-name",
        "--model-name",
        dest="served_model_name",
        help="name reported by /v1/models, /info and responses (default: the model folder's name)",
    )
    s.add_argument("--host", "--hostname", dest="host", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port to listen on (default 8000)")
    s.add_argument("--threads", type=int, help="compute threads (default: the CPUs this process may use)")
    _add_precision_args(s)
    s.add_argument(
        "--auto-truncate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="truncate over-long inputs when a request does not say (default on)",
    )
    s.add_argument(
        "--pooling",
        help="TEI's pooling flag: accepted when it names the folder's pooling (cls, mean, max, splade, "
        "last-token), else the server refuses to start",
    )
    s.add_argument(
        "--default-prompt-name",
        help="prompt of the model's config used when a request names none (default: no prompt)",
    )
    s.add_argument(
        "--kv-cache-dtype",
        choices=["f32", "bf16"],
        help="generation: how the KV cache stores keys and values: f32 (exact, default) or bf16 (half the "
        "memory; logits within about 2%% of the largest f32-cache logit)",
    )
    s.add_argument("--json-output", action="store_true", help="log lines as JSON objects (as --log-format json)")
    s.add_argument("--max-batch-tokens", type=int, help="tokens per engine batch (default 16384)")
    s.add_argument(
        "--max-wait-ms", type=float, help="longest wait for a batch to fill, ms (default 0: continuous batching)"
    )
    s.add_argument("--max-queue", type=int, help="requests that may wait or run at once before 429 (default 1024)")
    s.add_argument(
        "--max-inputs",
        "--max-client-batch-size",
        dest="max_inputs",
        type=int,
        help="inputs per request before 413 (default 2048)",
    )
    s.add_argument(
        "--max-body-bytes",
        "--payload-limit",
        dest="max_body_bytes",
        type=int,
        help="request body limit in bytes before 413 (default 8 MiB)",
    )
    s.add_argument("--request-timeout-s", type=float, help="deadline per request, s (default 30)")
    s.add_argument(
        "--generation-timeout-s",
        type=float,
        help="deadline per text-generation request, s (default 600); X-Request-Timeout overrides either",
    )
    s.add_argument("--job-store-url", help="background job store (default sqlite:///rinfer-jobs.db)")
    s.add_argument("--max-job-inputs", type=int, help="texts per background job (default 100000)")
    s.add_argument(
        "--api-key",
        action="append",
        metavar="KEY",
        help="require 'Authorization: Bearer KEY' on every route but /health, /ready and /ping; repeat it "
        "to allow several keys (also RINFER_API_KEY=KEY1,KEY2); a background job is visible only with the key "
        "that created it (default: no auth)",
    )
    s.add_argument(
        "--api-key-file",
        metavar="PATH",
        help="allowed API keys, one per line (blank lines and lines starting with # are ignored), besides "
        "--api-key (also RINFER_API_KEY_FILE); a missing, unreadable or empty file stops the start",
    )
    s.add_argument(
        "--cors-origins",
        nargs="*",
        help="origins (SCHEME://HOST[:PORT]) allowed by CORS (also RINFER_CORS_ORIGINS=A,B); default: none, "
        "no CORS headers are sent",
    )
    s.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=None, help="log every request (default off)"
    )
    s.set_defaults(func=_serve)

    e = sub.add_parser("embed", help="embed lines of stdin; one JSON array per line on stdout")
    e.add_argument("--model", help="model folder (default: rinfer.default_model_path())")
    e.add_argument("--threads", type=int, help="compute threads (default: the CPUs this process may use)")
    _add_precision_args(e)
    e.add_argument("--batch-size", type=int, default=256, help="lines per engine call (default 256)")
    e.add_argument(
        "--normalize", action=argparse.BooleanOptionalAction, default=None, help="L2-normalise (default: as the model)"
    )
    e.add_argument("--progress", action="store_true", help="show progress even when stderr is not a terminal")
    e.set_defaults(func=_embed)

    b = sub.add_parser(
        "bench", help="time the model on synthetic batches in each precision; print tokens/s and quality"
    )
    b.add_argument("--model", help="model folder (default: rinfer.default_model_path())")
    b.add_argument("--threads", type=int, help="compute threads (default: the CPUs this process may use)")
    b.add_argument("--dtypes", default="f32,bf16,int8", help="precisions to compare, comma-separated (default all)")
    b.add_argument(
        "--shapes", default="1x10,32x128", help="batches as TEXTSxTOKENS, comma-separated (default 1x10,32x128)"
    )
    b.add_argument("--reps", type=int, default=10, help="timed runs per shape, median reported (default 10)")
    b.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    b.add_argument("--progress", action="store_true", help="show progress even when stderr is not a terminal")
    b.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    if args.log_format == "json" or getattr(args, "json_output", False):
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler], force=True)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
