"""OpenAI text generation: ``POST /v1/chat/completions`` and ``POST /v1/completions``,
whole or streamed as server-sent events (``stream: true``, ending in
``data: [DONE]``, usage last with ``stream_options.include_usage``). A client that
disconnects mid-stream ends its sequence and frees its cache; a prompt that with
``max_tokens`` passes the model's context is a 400; past ``--max-queue`` concurrent
generations, 429 with ``Retry-After``. Deadlines as for embeddings (``X-Request-Timeout``,
else ``--generation-timeout-s``): an answer not complete by then, or a stream without its
first token, is a 503 ``deadline_exceeded``; a stream already started ends with that
error as its last event; either way the sequences end at once."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

import rinfer

from ..errors import ApiError
from ..schemas import Strict, TokenIds
from ..service import deadline_s, json_response, model_of, settings_of

router = APIRouter(prefix="/v1", tags=["openai"])


class ChatMessage(Strict):
    role: Literal["system", "user", "assistant", "developer"]
    content: str
    name: str | None = None


class StreamOptions(Strict):
    include_usage: bool = False


class _Sampling(Strict):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1, description="taken modulo 2**64")
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    # Beyond OpenAI, as vLLM names them.
    top_k: int = Field(0, ge=0, le=2**32 - 1)
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    repetition_penalty: float = Field(1.0, gt=0.0)
    ignore_eos: bool = False


class ChatRequest(_Sampling):
    """OpenAI ``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None


class CompletionRequest(_Sampling):
    """OpenAI ``POST /v1/completions``."""

    prompt: str | TokenIds
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False


def _generator(request: Request) -> rinfer.Generator:
    return model_of(request, "generator", "text generation (/v1/chat/completions, /v1/completions)")


def _sampling(body: _Sampling, max_tokens: int, logprobs: int | None) -> dict[str, Any]:
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    try:
        bias = {int(k): float(v) for k, v in (body.logit_bias or {}).items()}
    except ValueError:
        bias = None
    if bias is None or any(not 0 <= k < 2**32 for k in bias):  # past u32 the engine's conversion overflowed (500)
        raise ApiError(400, "validation", "logit_bias keys must be token ids", param="logit_bias")
    return {
        "max_tokens": max_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "top_k": body.top_k,
        "min_p": body.min_p,
        "repetition_penalty": body.repetition_penalty,
        "presence_penalty": body.presence_penalty,
        "frequency_penalty": body.frequency_penalty,
        "stop": stop,
        "logit_bias": bias or None,
        "ignore_eos": body.ignore_eos,
        "logprobs": logprobs,
    }


def _budget(model: rinfer.Generator, prompt_ids: list[int], asked: int | None) -> int:
    """`max_tokens` checked against the context (default: what is left of it)."""
    room = model.max_context - len(prompt_ids)
    if room <= 0 or (asked is not None and asked > room):
        raise ApiError(
            400,
            "validation",
            f"the prompt has {len(prompt_ids)} tokens and max_tokens is {asked}: together more than the "
            f"model's context of {model.max_context} tokens",
            param="max_tokens",
        )
    return asked if asked is not None else room


class _Slots:
    """At most `limit` generations at once; beyond, 429."""

    def __init__(self, limit: int) -> None:
        self.limit, self.active = limit, 0

    def take(self) -> None:
        if self.active >= self.limit:
            raise ApiError(429, "overloaded", f"{self.active} generations are running (--max-queue)")
        self.active += 1

    def give(self) -> None:
        self.active -= 1


def _slots(request: Request, n: int) -> _Slots:
    state = request.app.state
    if getattr(state, "gen_slots", None) is None:
        state.gen_slots = _Slots(max(1, state.settings.max_queue))
    slots = state.gen_slots
    for i in range(n):
        try:
            slots.take()
        except ApiError:
            for _ in range(i):
                slots.give()
            raise
    return slots


def _logprobs_of(model_lp, chat: bool) -> dict | None:
    if not model_lp:
        return None
    if chat:
        return {
            "content": [
                {
                    "token": str(tok),
                    "logprob": lp,
                    "bytes": None,
                    "top_logprobs": [{"token": str(t), "logprob": p, "bytes": None} for t, p in top],
                }
                for tok, (lp, top) in model_lp
            ]
        }
    return {
        "tokens": [str(tok) for tok, _ in model_lp],
        "token_logprobs": [lp for _, (lp, _) in model_lp],
        "top_logprobs": [{str(t): p for t, p in top} for _, (_, top) in model_lp],
    }


class _Late(Exception):
    """The request's deadline passed."""


async def _next_event(stream, done, deadline: float):
    """The stream's next delta (or `done`), waited for until `deadline` (monotonic)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Late
    try:
        return await asyncio.wait_for(asyncio.to_thread(next, stream, done), left)
    except TimeoutError:
        raise _Late from None


async def _drain(stream, done, deadline: float) -> list[dict]:
    out = []
    while (d := await _next_event(stream, done, deadline)) is not done:
        out.append(d)
        if d["finish_reason"] is not None:
            break
    return out


def _late(what: str) -> ApiError:
    return ApiError(503, "deadline", f"the request's deadline passed {what}; its generation was stopped")


async def _run(request: Request, body: _Sampling, prompt: Any, chat: bool, logprobs: int | None, max_tokens):
    model = _generator(request)
    served = request.app.state.served_name
    deadline = time.monotonic() + deadline_s(request, settings_of(request).generation_timeout_s)
    ids = await asyncio.to_thread(model.encode_prompt, prompt)
    budget = _budget(model, ids, max_tokens)
    sampling = _sampling(body, budget, logprobs)
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    created = int(time.time())
    obj = "chat.completion" if chat else "text_completion"
    slots = _slots(request, body.n)
    seeds = [None if body.seed is None else (body.seed + i) % 2**64 for i in range(body.n)]
    streams: list = []
    done = object()
    released = False

    def release() -> None:
        # Once, whichever way the request ends: answered, failed, past its deadline, the
        # client gone mid-stream or before the body started (then the generator below
        # never runs, and only the response's own `finally` gets here). A stream may be
        # inside `next` on a worker thread (a deadline cut the wait short), so it is
        # closed on one too: the event loop never waits for a decode step.
        nonlocal released
        if not released:
            released = True
            loop = asyncio.get_running_loop()
            for stream in streams:
                loop.run_in_executor(None, stream.close)
            for _ in range(body.n):
                slots.give()

    if not body.stream:
        # The n choices decode together in the shared batch; the deadline covers them all.
        t0 = time.perf_counter()
        try:
            for seed in seeds:
                streams.append(await asyncio.to_thread(model.stream, ids, seed=seed, **sampling))
            tasks = [asyncio.ensure_future(_drain(s, done, deadline)) for s in streams]
            try:
                runs = await asyncio.gather(*tasks)
            except BaseException:
                for t in tasks:  # the other choices stop too (their streams close below)
                    t.cancel()
                raise
        except _Late:
            raise _late("before the answer was complete") from None
        finally:
            release()
        choices = []
        completion = 0
        for i, events in enumerate(runs):
            text = "".join(d["text"] for d in events)
            tokens = [d["token"] for d in events if d["token"] is not None]
            lps = [d["logprob"] for d in events if d["logprob"] is not None]
            finish = next((d["finish_reason"] for d in reversed(events) if d["finish_reason"]), "length")
            completion += len(tokens)
            lp = _logprobs_of(list(zip(tokens, lps)), chat) if lps else None
            if chat:
                choices.append(
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": lp,
                        "finish_reason": finish,
                    }
                )
            else:
                choices.append({"index": i, "text": text, "logprobs": lp, "finish_reason": finish})
        if completion:
            # Whole answers: the mean time per token stands for both.
            per = (time.perf_counter() - t0) / completion
            request.app.state.metrics.itl.observe(per)
        usage = {"prompt_tokens": len(ids), "completion_tokens": completion, "total_tokens": len(ids) + completion}
        return json_response(
            {"id": rid, "object": obj, "created": created, "model": served, "choices": choices, "usage": usage}
        )
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunk_obj = "chat.completion.chunk" if chat else "text_completion"

    def event(payload: dict) -> bytes:
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    metrics = request.app.state.metrics
    t0 = time.perf_counter()

    # The streams start, and give their first event, before the response does: a request
    # the engine refuses (its checks run at the first step) is an HTTP error, not a 200
    # whose body breaks off (found by schemathesis); so is one whose deadline passes
    # before its first token.
    head: dict[int, Any] = {}
    try:
        for seed in seeds:
            streams.append(await asyncio.to_thread(model.stream, ids, seed=seed, **sampling))
        for i, stream in enumerate(streams):
            head[i] = await _next_event(stream, done, deadline)
    except _Late:
        release()
        raise _late("before the first token") from None
    except BaseException:
        release()
        raise

    async def events():
        last = None
        completion = 0
        try:
            if chat:
                for i in range(body.n):
                    first = {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                    yield event(
                        {"id": rid, "object": chunk_obj, "created": created, "model": served, "choices": [first]}
                    )
            live = list(range(body.n))
            while live:
                for i in list(live):
                    d = head.pop(i) if i in head else await _next_event(streams[i], done, deadline)
                    if d is done:
                        live.remove(i)
                        continue
                    completion += d["token"] is not None
                    now = time.perf_counter()
                    if last is None:
                        metrics.ttft.observe(now - t0)
                    else:
                        metrics.itl.observe(now - last)
                    last = now
                    lp = None
                    if d["logprob"] is not None:
                        lp = _logprobs_of([(d["token"], d["logprob"])], chat)
                    if chat:
                        choice = {"index": i, "delta": {"content": d["text"]}, "logprobs": lp}
                    else:
                        choice = {"index": i, "text": d["text"], "logprobs": lp}
                    choice["finish_reason"] = d["finish_reason"]
                    if d["finish_reason"] is not None:
                        live.remove(i)
                    yield event(
                        {"id": rid, "object": chunk_obj, "created": created, "model": served, "choices": [choice]}
                    )
            if include_usage:
                usage = {"prompt_tokens": len(ids), "completion_tokens": completion}
                usage["total_tokens"] = len(ids) + completion
                yield event(
                    {"id": rid, "object": chunk_obj, "created": created, "model": served, "choices": [], "usage": usage}
                )
            yield b"data: [DONE]\n\n"
        except _Late:
            # The response has started: the stream says why it ends, and ends.
            err = {"message": _late("mid-stream").message, "type": "server_error", "param": None}
            yield event({"error": {**err, "code": "deadline_exceeded"}})
        except Exception as exc:  # noqa: BLE001 - the response has started: the stream says it, and ends
            yield event({"error": {"message": f"generation failed: {exc}", "type": "server_error", "param": None}})
        finally:
            release()

    return _ReleasingStream(release, events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


class _ReleasingStream(StreamingResponse):
    """A streaming response that calls `release` when it is done with the client, even
    when the client left before its body began (a never-started generator's `finally`
    never runs, so the sequences and queue slots would be held until collected)."""

    def __init__(self, release, content, **kw) -> None:
        super().__init__(content, **kw)
        self._release = release

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


@router.post("/chat/completions", summary="Create a chat completion (OpenAI-compatible; stream: true for SSE)")
async def chat_completions(body: ChatRequest, request: Request):
    if body.tools:
        raise ApiError(400, "validation", "tools / function calling are not supported", param="tools")
    if body.response_format is not None and body.response_format.get("type") != "text":
        raise ApiError(
            400,
            "validation",
            f"response_format {body.response_format.get('type')!r} is not supported (only 'text')",
            param="response_format",
        )
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.content} for m in body.messages]
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    if body.top_logprobs and not body.logprobs:
        raise ApiError(400, "validation", "top_logprobs needs logprobs: true", param="top_logprobs")
    max_tokens = body.max_completion_tokens or body.max_tokens
    return await _run(request, body, messages, True, logprobs, max_tokens)


@router.post("/completions", summary="Create a completion (OpenAI-compatible; stream: true for SSE)")
async def completions(body: CompletionRequest, request: Request):
    if body.echo:
        raise ApiError(400, "validation", "echo is not supported", param="echo")
    return await _run(request, body, body.prompt, False, body.logprobs, body.max_tokens or 16)
