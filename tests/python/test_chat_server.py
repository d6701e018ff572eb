"""OpenAI chat and text completions over HTTP on a tiny Qwen3 with a ChatML template:
the folder decides (a causal LM without sentence-transformers modules is served as
a generator); whole and streamed (SSE) answers equal the Python API's; usage, n,
stop, seed, logprobs; 400 past the context, refused options; the official openai
client, streaming and not."""

from __future__ import annotations

import json
import pathlib

import httpx
import pytest
import rinfer
from fastapi.testclient import TestClient
from rinfer.server import Settings, create_app

DATA = pathlib.Path(__file__).resolve().parents[2] / "tests/data/decoders"
CHAT = DATA / "qwen3_chat"


@pytest.fixture(scope="module")
def client():
    assert rinfer.model_kind(CHAT) == "generator"
    with TestClient(create_app(Settings(model_path=str(CHAT)))) as c:
        yield c


def sse(text: str) -> list:
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_chat_completion_matches_python(client):
    gold = json.loads((CHAT / "generation.json").read_text())
    case = gold["chat_cases"][1]
    model = rinfer.Generator.load(CHAT)
    want = model.generate(case["messages"], max_tokens=20, seed=1)
    r = client.post("/v1/chat/completions", json={"messages": case["messages"], "max_tokens": 20, "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "qwen3_chat"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": want.text}
    assert body["choices"][0]["finish_reason"] == want.finish_reason
    assert body["usage"]["prompt_tokens"] == len(case["input_ids"])


def test_streamed_chat_adds_up_and_ends_with_done(client):
    msgs = [{"role": "user", "content": "Say something."}]
    whole = client.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 12, "temperature": 0}).json()
    r = client.post(
        "/v1/chat/completions",
        json={
            "messages": msgs,
            "max_tokens": 12,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["usage"] == whole["usage"]


def test_completions_n_seed_stop_logprobs(client):
    base = {"prompt": "The cat", "max_tokens": 8, "temperature": 0.9, "seed": 3, "ignore_eos": True}
    a = client.post("/v1/completions", json={**base, "n": 2}).json()
    b = client.post("/v1/completions", json={**base, "n": 2}).json()
    assert [c["text"] for c in a["choices"]] == [c["text"] for c in b["choices"]]
    assert a["usage"]["completion_tokens"] == 16
    free = client.post("/v1/completions", json={"prompt": "The cat", "max_tokens": 20, "temperature": 0}).json()
    text = free["choices"][0]["text"]
    if len(text) > 6:
        stop = text[3:6]
        r = client.post(
            "/v1/completions", json={"prompt": "The cat", "max_tokens": 20, "temperature": 0, "stop": stop}
        ).json()
        assert r["choices"][0]["finish_reason"] == "stop" and stop not in r["choices"][0]["text"]
    lp = client.post("/v1/completions", json={"prompt": "The cat", "max_tokens": 3, "logprobs": 2}).json()
    assert len(lp["choices"][0]["logprobs"]["token_logprobs"]) == 3


def test_refusals_are_openai_errors(client):
    msgs = [{"role": "user", "content": "hi"}]
    r = client.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 10**6})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    r = client.post("/v1/chat/completions", json={"messages": msgs, "response_format": {"type": "json_object"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"
    r = client.post("/v1/chat/completions", json={"messages": msgs, "bogus": 1})
    assert r.status_code == 422 and "error" in r.json()
    r = client.post("/embed", json={"inputs": "x"})
    assert r.status_code == 424


def test_embedders_answer_424_on_chat():
    with TestClient(create_app(Settings(model_path=str(DATA / "qwen3_embedding")))) as c:
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 424, r.text


def test_official_openai_client_streams(client):
    import openai  # in the test lock: missing is a failure, not a skip

    api = openai.OpenAI(base_url="http://testserver/v1", api_key="x", http_client=client)
    msgs = [{"role": "user", "content": "Say something."}]
    whole = api.chat.completions.create(model="qwen3_chat", messages=msgs, max_tokens=10, temperature=0)
    parts = [
        c.choices[0].delta.content or ""
        for c in api.chat.completions.create(
            model="qwen3_chat", messages=msgs, max_tokens=10, temperature=0, stream=True
        )
        if c.choices
    ]
    assert "".join(parts) == whole.choices[0].message.content
    done = api.completions.create(model="qwen3_chat", prompt="The cat", max_tokens=5, temperature=0)
    assert done.choices[0].finish_reason in ("length", "stop")


def test_generation_metrics(client):
    client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True},
    )
    text = client.get("/metrics").text
    for name in (
        "rinfer_generation_active",
        "rinfer_generation_reserved",
        "rinfer_generation_generated_total",
        "rinfer_time_to_first_token_seconds_count",
        "rinfer_inter_token_seconds_count",
    ):
        assert name in text, name


def test_a_client_gone_before_the_stream_starts_frees_its_sequence_and_slot():
    """The server's send fails at the response's start (the socket is gone): the body's
    generator never runs, yet the sequence ends and the queue slot comes back."""
    import asyncio

    app = create_app(Settings(model_path=str(CHAT), max_queue=1))
    body = json.dumps({"prompt": "hello there", "max_tokens": 200, "stream": True}).encode()

    async def main():
        async with app.router.lifespan_context(app):
            given = False

            async def receive():
                nonlocal given
                if not given:
                    given = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return {"type": "http.disconnect"}

            async def send(message):
                if message["type"] == "http.response.start":
                    raise OSError("the client is gone")

            scope = {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.4"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": "/v1/completions",
                "raw_path": b"/v1/completions",
                "query_string": b"",
                "root_path": "",
                "headers": [(b"content-type", b"application/json"), (b"host", b"test")],
                "client": ("127.0.0.1", 1),
                "server": ("127.0.0.1", 80),
                "state": {},
            }
            from starlette.requests import ClientDisconnect

            try:
                await app(scope, receive, send)
            except (OSError, ClientDisconnect):
                pass  # how a dead socket surfaces to the server; nothing may leak
            for _ in range(100):
                if app.state.generator.stats()["active"] == 0:
                    break
                await asyncio.sleep(0.05)
            assert app.state.generator.stats()["active"] == 0
            assert app.state.gen_slots.active == 0
            # the one queue slot is free again: a new request gets in
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                r = await c.post("/v1/completions", json={"prompt": "hi", "max_tokens": 3})
                assert r.status_code == 200, r.text

    asyncio.run(main())


class _Slow:
    """The loaded generator, its streams slowed to one event per `delay` s after
    `first` s, so that deadlines can be crossed at will; the real stream underneath
    is closed when the slow one is."""

    def __init__(self, real, delay: float, first: float = 0.0) -> None:
        self.real, self.delay, self.first = real, delay, first

    def __getattr__(self, name):
        return getattr(self.real, name)

    def stream(self, *args, **kw):
        inner = self.real.stream(*args, **kw)
        outer = self

        class S:
            started = False

            def __iter__(self):
                return self

            def __next__(self):
                import time

                time.sleep(outer.first if not self.started else outer.delay)
                self.started = True
                return next(inner)

            def close(self):
                inner.close()

        return S()


def _wait_idle(gen) -> None:
    import time

    for _ in range(100):
        if gen.stats()["active"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError(gen.stats())


def test_deadlines_end_generations_with_503_or_an_error_event():
    app = create_app(Settings(model_path=str(CHAT)))
    body = {"prompt": "hello there", "max_tokens": 60, "ignore_eos": True}
    with TestClient(app) as c:
        real = app.state.generator
        try:
            # a whole answer not complete by the deadline: 503, OpenAI's shape, sequences ended
            app.state.generator = _Slow(real, 0.05)
            r = c.post("/v1/completions", json={**body, "n": 2}, headers={"X-Request-Timeout": "0.4"})
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "deadline_exceeded"
            _wait_idle(real)
            # a stream without its first token by then: 503 too, not a 200 that breaks off
            app.state.generator = _Slow(real, 0.0, first=1.0)
            r = c.post("/v1/completions", json={**body, "stream": True}, headers={"X-Request-Timeout": "0.3"})
            assert r.status_code == 503, r.text
            _wait_idle(real)
            # a started stream: its last event says why it ends (no [DONE]), the sequence ends
            app.state.generator = _Slow(real, 0.05)
            r = c.post("/v1/completions", json={**body, "stream": True}, headers={"X-Request-Timeout": "0.6"})
            assert r.status_code == 200
            events = sse(r.text)
            assert "[DONE]" not in events and 1 < len(events) < 60, events
            assert events[-1]["error"]["code"] == "deadline_exceeded"
            _wait_idle(real)
            # within its deadline the same request completes, and the queue slots all came back
            app.state.generator = real
            r = c.post("/v1/completions", json={**body, "max_tokens": 5}, headers={"X-Request-Timeout": "30"})
            assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5
            assert app.state.gen_slots.active == 0
        finally:
            app.state.generator = real
