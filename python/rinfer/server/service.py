"""What the routes share: the loaded model, limits, deadlines and fast JSON."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import orjson
from fastapi import HTTPException, Request
from fastapi.responses import Response

import rinfer

from .errors import ApiError, WrongModelError
from .settings import Settings


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def model_of(request: Request, kind: str, what: str):
    """The loaded model if it is of `kind`; 503 while loading, 424 if another kind."""
    state = request.app.state
    if not getattr(state, "ready", False):
        raise ApiError(503, "unhealthy", "the model is not loaded yet")
    model = getattr(state, kind, None)
    if model is None:
        raise WrongModelError(f"the loaded model is a {state.kind}; {what} needs a {kind} model")
    return model


def embedder_of(request: Request) -> rinfer.Embedder:
    return model_of(request, "embedder", "this route")


def check_count(request: Request, n: int, field: str = "inputs") -> None:
    limit = settings_of(request).max_inputs
    if n == 0:
        raise ApiError(400, "empty", f"`{field}` cannot be empty", param=field)
    if n > limit:
        raise ApiError(413, "too_many", f"batch size {n} > maximum allowed batch size {limit}", param=field)


def truncate_of(request: Request, truncate: bool | None) -> bool:
    """A request's `truncate`, else the server's --auto-truncate."""
    return settings_of(request).auto_truncate if truncate is None else truncate


def deadline_s(request: Request, default: float | None = None) -> float:
    """Seconds the request may take: its `X-Request-Timeout`, else `default`, else the
    server's `request_timeout_s`."""
    header = request.headers.get("X-Request-Timeout")
    if header is not None:
        try:
            value = float(header)
        except ValueError:
            raise ApiError(422, "validation", "X-Request-Timeout must be a number of seconds") from None
        if value <= 0:
            raise ApiError(422, "validation", "X-Request-Timeout must be positive")
        return value
    return settings_of(request).request_timeout_s if default is None else default


async def _watch_disconnect(receive, work: asyncio.Future, why: list[str]) -> None:
    """Waits for the client's ``http.disconnect`` (the body is already read, so the
    next message is that one) and then gives the queued work up."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
    if not work.done():
        why.append("disconnected")
        work.cancel()


def _expire(work: asyncio.Future, why: list[str]) -> None:
    if not work.done():
        why.append("expired")
        work.cancel()


async def embed_texts(
    request: Request, texts: list[str], *, normalize: bool | None, truncate: bool, return_tokens: bool = False
):
    """Through the batcher, within the request's deadline: one hop from the event loop
    into the engine, whose worker resolves the future on this loop. Queued work whose
    deadline passes, or whose client goes away, is dropped by the engine before any
    compute. With `return_tokens`, returns `(vectors, tokens)` (the engine counts them)."""
    check_count(request, len(texts))
    model = embedder_of(request)
    metrics = request.app.state.metrics
    metrics.batch_texts.observe(len(texts))
    timeout = deadline_s(request)
    slots = request.app.state.batcher_slots
    slots.take()
    try:
        work = model.aencode(
            texts, normalize=normalize, truncate=truncate, timeout_s=timeout, return_tokens=return_tokens
        )
        return await _admitted(request, work, timeout, metrics)
    finally:
        slots.release()  # at once when the deadline passed or the client left


#: The embedder's own queue holds this many times ``max_queue``: a backstop only. An
#: abandoned request (deadline passed, client gone) stays in that queue until the
#: batcher next forms a batch, which can be seconds away; counted there, abandoned
#: requests filled the queue and live ones were refused (429) with few in flight.
BATCHER_BACKSTOP = 16


class Slots:
    """The limit on requests through the embedder's batcher (``max_queue``), counted
    here: a request holds a slot while it waits or runs and gives it back as soon as
    it is answered, its deadline passes or its client leaves. More than the limit:
    OverloadedError (429)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.rejected = 0

    def take(self) -> None:
        if self.held >= self.limit:
            self.rejected += 1
            raise rinfer.OverloadedError(f"{self.held} requests in flight, the limit is {self.limit}")
        self.held += 1

    def release(self) -> None:
        self.held -= 1


async def _admitted(request: Request, work: asyncio.Future, timeout: float, metrics):
    """Awaits queued work within the request's deadline; gives it up (unrun, if it has
    not started) when the deadline passes (TimeoutError) or the client leaves (499)."""
    loop = asyncio.get_running_loop()
    why: list[str] = []
    timer = loop.call_later(timeout, _expire, work, why)
    watch = loop.create_task(_watch_disconnect(request.receive, work, why))
    try:
        return await work
    except asyncio.CancelledError:
        if not why:
            raise  # this task itself was cancelled
        if why[0] == "disconnected":
            metrics.disconnected.inc()
            raise HTTPException(499, "client disconnected") from None
        metrics.expired.inc()
        raise TimeoutError from None
    finally:
        timer.cancel()
        watch.cancel()


class Admission:
    """Engine calls that do not go through the embedder's batcher (token ids, left
    truncation, rerank, predict, sparse vectors, background jobs) queue here: one
    engine call at a time (each already uses every compute thread), at most
    `max_queue` waiting (more: OverloadedError, 429), and a call whose request expired
    or whose client left before it started is dropped unrun."""

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rinfer-engine")
        self.queued = 0
        self.rejected = 0
        self.dropped = 0
        self.runs = 0

    def submit(self, fn, *args, background: bool = False, **kw) -> asyncio.Future:
        """`fn(*args, **kw)` on the engine thread, as a future of the running loop.
        Background work (jobs) waits for its turn without counting against the limit."""
        if not background and self.queued >= self.max_queue:
            self.rejected += 1
            raise rinfer.OverloadedError(f"{self.queued} requests queued, the limit is {self.max_queue}")
        loop = asyncio.get_running_loop()
        self.queued += 1
        cf = self.executor.submit(functools.partial(fn, *args, **kw))
        cf.add_done_callback(lambda f: loop.call_soon_threadsafe(self._finished, f))
        return asyncio.wrap_future(cf, loop=loop)

    def _finished(self, cf: concurrent.futures.Future) -> None:
        self.queued -= 1
        if cf.cancelled():
            self.dropped += 1
        else:
            self.runs += 1

    def stats(self) -> dict[str, int]:
        return {"queued": self.queued, "rejected": self.rejected, "dropped": self.dropped, "runs": self.runs}

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


async def run_engine(request: Request, n_inputs: int, fn, *args, **kw):
    """`fn(*args, **kw)` through the admission queue within the request's deadline."""
    metrics = request.app.state.metrics
    metrics.batch_texts.observe(n_inputs)
    timeout = deadline_s(request)
    stamps: list[float] = [time.perf_counter()]
    state = getattr(request, "state", None)
    if state is not None:
        state.engine_stamps = stamps
    work = request.app.state.admission.submit(_stamped, stamps, fn, *args, **kw)
    return await _admitted(request, work, timeout, metrics)


def _stamped(stamps: list[float], fn, *args, **kw):
    """`fn` on the engine thread, noting when it started and ended (TEI's queue and
    inference times)."""
    stamps.append(time.perf_counter())
    try:
        return fn(*args, **kw)
    finally:
        stamps.append(time.perf_counter())


def timing_headers(request: Request, start: float, tokens: int, chars: int) -> dict[str, str]:
    """TEI's per-request headers, in whole milliseconds as TEI gives them. Through the
    admission queue the queue and inference times are measured apart; through the
    batcher tokenisation, queueing and the forward pass are one engine call, reported
    as x-inference-time (x-queue-time and x-tokenization-time 0)."""
    now = time.perf_counter()
    stamps = getattr(request.state, "engine_stamps", None)
    if stamps is not None and len(stamps) == 3:
        queue, inference = stamps[1] - stamps[0], stamps[2] - stamps[1]
    else:
        queue, inference = 0.0, now - start
    total = str(int((now - start) * 1000))
    return {
        "x-compute-type": "cpu",
        "x-compute-time": total,
        "x-compute-characters": str(chars),
        "x-compute-tokens": str(tokens),
        "x-total-time": total,
        "x-tokenization-time": "0",
        "x-queue-time": str(int(queue * 1000)),
        "x-inference-time": str(int(inference * 1000)),
    }


def _fits(model: rinfer.Embedder, text: str):
    """The token ids of `text` if it is within the model's limit, else None."""
    try:
        return model.tokenize([text], truncate=False)[0]
    except rinfer.InputTooLongError:
        return None


def _left_truncated(model: rinfer.Embedder, text: str) -> np.ndarray:
    """Token ids of `text` cut on the left to the model's limit (TEI's
    ``truncation_direction: Left``): the special tokens stay, the first content tokens
    go. The engine tokenizes with a limit, so the end is found from suffixes cut just
    before a word (a whitespace character and what follows, which tokenize as they do
    in the whole text): the longest suffix that fits, completed by the last pieces of
    the word before it."""
    ids = _fits(model, text)
    if ids is not None:
        return ids
    head = model.tokens([text], truncate=True)[0]
    lead = 0
    while lead < len(head) and head[lead][2]:
        lead += 1
    trail = 0
    while trail < len(head) - lead and head[len(head) - 1 - trail][2]:
        trail += 1
    first = [t[0] for t in head[:lead]]
    last = [t[0] for t in head[len(head) - trail :]]
    keep = model.max_seq_length - lead - trail
    cuts = [i for i in range(len(text) - 1) if text[i].isspace() and not text[i + 1].isspace()]
    lo, hi = 0, len(cuts)  # the first cut whose suffix fits (suffixes shrink as the cut moves right)
    while lo < hi:
        mid = (lo + hi) // 2
        if _fits(model, text[cuts[mid] :]) is None:
            lo = mid + 1
        else:
            hi = mid
    if lo == len(cuts) or lo == 0:
        raise ApiError(
            422,
            "validation",
            "cannot truncate this input on the left: its last word alone is longer than the model's limit",
            param="truncation_direction",
        )
    suffix = _fits(model, text[cuts[lo] :]).tolist()
    content = suffix[lead : len(suffix) - trail]
    need = keep - len(content)
    if need > 0:
        word = _fits(model, text[cuts[lo - 1] : cuts[lo]])
        if word is None:
            raise ApiError(
                422,
                "validation",
                "cannot truncate this input on the left: a word is longer than the model's limit",
                param="truncation_direction",
            )
        word = word.tolist()[lead : len(word) - trail]
        content = word[len(word) - need :] + content
    return np.asarray(first + content + last, dtype=np.uint32)


def _encode_left(model: rinfer.Embedder, texts: list[str], normalize: bool | None):
    ids = [_left_truncated(model, t) for t in texts]
    return model.encode_ids(ids, normalize=normalize), sum(len(x) for x in ids)


def _encode_prompted(model: rinfer.Embedder, texts: list[str], normalize, truncate: bool, prompt: str):
    vectors = model.encode(texts, normalize=normalize, truncate=truncate, prompt=prompt)
    tokens = sum(len(x) for x in model.tokenize([prompt + t for t in texts], truncate=truncate))
    return vectors, tokens


def prompt_text(request: Request, model: rinfer.Embedder, prompt_name: str | None) -> str | None:
    """The text of `prompt_name` (else of the server's --default-prompt-name); 422 if
    the model has no such prompt."""
    name = prompt_name or settings_of(request).default_prompt_name
    if name is None:
        return None
    prompts = model.prompts
    if name not in prompts:
        have = ", ".join(sorted(prompts)) or "it has none"
        raise ApiError(
            422, "validation", f"prompt_name `{name}` is not one of the model's prompts ({have})", param="prompt_name"
        )
    return prompts[name]


async def embed_request(
    request: Request,
    texts: list[str],
    *,
    normalize: bool | None,
    truncate: bool,
    left: bool = False,
    prompt_name: str | None = None,
    return_tokens: bool = False,
):
    """`embed_texts` with TEI's options: a prompt (prepended to every text, as
    sentence-transformers does) and truncation on the left (by token ids). Requests
    without them take the batcher's path unchanged."""
    model = embedder_of(request)
    prompt = prompt_text(request, model, prompt_name)
    if prompt and not request.app.state.include_prompt:
        # Pooling leaves the prompt's tokens out: the engine's own prompt path knows how many.
        if left:
            raise ApiError(
                422,
                "validation",
                "truncation_direction Left with a prompt is not supported for this model "
                "(its pooling leaves the prompt out)",
                param="truncation_direction",
            )
        check_count(request, len(texts))
        out = await run_engine(request, len(texts), _encode_prompted, model, texts, normalize, truncate, prompt)
        return out if return_tokens else out[0]
    if prompt:
        texts = [prompt + t for t in texts]
    if left and truncate:
        check_count(request, len(texts))
        out = await run_engine(request, len(texts), _encode_left, model, texts, normalize)
        return out if return_tokens else out[0]
    return await embed_texts(request, texts, normalize=normalize, truncate=truncate, return_tokens=return_tokens)


def shrink(vectors: np.ndarray, dimensions: int | None, renormalize: bool) -> np.ndarray:
    """Keep the first `dimensions` columns (Matryoshka-style), renormalised."""
    if dimensions is None:
        return vectors
    if dimensions > vectors.shape[1]:
        raise ApiError(
            422, "validation", f"dimensions {dimensions} exceeds the model's {vectors.shape[1]}", param="dimensions"
        )
    out = np.ascontiguousarray(vectors[:, :dimensions])
    if renormalize:
        out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
    return out


def json_response(obj, headers: dict[str, str] | None = None) -> Response:
    """Serialises numpy arrays directly (no per-float Python objects)."""
    return Response(
        orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json", headers=headers
    )
