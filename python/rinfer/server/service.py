"""What the routes share: the loaded model, limits, deadlines and fast JSON."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
from fastapi import HTTPException, Request
from fastapi.responses import Response

import rinfer

from .settings import Settings


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def model_of(request: Request, kind: str, what: str):
    """The loaded model if it is of `kind`; 503 while loading, 400 if another kind."""
    state = request.app.state
    if not getattr(state, "ready", False):
        raise HTTPException(503, "the model is not loaded yet", headers={"Retry-After": "1"})
    model = getattr(state, kind, None)
    if model is None:
        raise rinfer.UnsupportedError(f"the loaded model is a {state.kind}; {what} needs a {kind} model")
    return model


def embedder_of(request: Request) -> rinfer.Embedder:
    return model_of(request, "embedder", "this route")


def check_count(request: Request, n: int) -> None:
    limit = settings_of(request).max_inputs
    if n == 0:
        raise HTTPException(422, "no input given")
    if n > limit:
        raise HTTPException(413, f"{n} inputs, more than the limit of {limit} per request")


def deadline_s(request: Request) -> float:
    header = request.headers.get("X-Request-Timeout")
    if header is not None:
        try:
            value = float(header)
        except ValueError:
            raise HTTPException(422, "X-Request-Timeout must be a number of seconds") from None
        if value <= 0:
            raise HTTPException(422, "X-Request-Timeout must be positive")
        return value
    return settings_of(request).request_timeout_s


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
    work = model.aencode(texts, normalize=normalize, truncate=truncate, timeout_s=timeout, return_tokens=return_tokens)
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


def shrink(vectors: np.ndarray, dimensions: int | None, renormalize: bool) -> np.ndarray:
    """Keep the first `dimensions` columns (Matryoshka-style), renormalised."""
    if dimensions is None:
        return vectors
    if dimensions > vectors.shape[1]:
        raise HTTPException(422, f"dimensions {dimensions} exceeds the model's {vectors.shape[1]}")
    out = np.ascontiguousarray(vectors[:, :dimensions])
    if renormalize:
        out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
    return out


def json_response(obj) -> Response:
    """Serialises numpy arrays directly (no per-float Python objects)."""
    return Response(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")
