"""Text generation from Python on the tiny decoder folders: greedy tokens equal
transformers' ``generate`` (goldens of scripts/make_golden_generation.py), streamed
deltas add up to the completion, chat messages go through the folder's template,
async streaming, stop strings, closing a stream, bad arguments; a bf16 KV cache,
the cache's block counters in ``stats()`` and ``/metrics``, ``RINFER_KV_CACHE_DTYPE``."""

from __future__ import annotations

import asyncio
import json
import pathlib

import pytest
import rinfer

DATA = pathlib.Path(__file__).resolve().parents[2] / "tests/data/decoders"


def gold(name: str) -> dict:
    return json.loads((DATA / name / "generation.json").read_text())


@pytest.mark.parametrize("name", ["qwen3", "llama3", "mistral", "gemma3"])
def test_greedy_generation_matches_transformers(name):
    g = gold(name)
    model = rinfer.Generator.load(DATA / name)
    for prompt, want in zip(g["prompts"], g["greedy"]):
        out = model.generate(prompt, max_tokens=len(want), ignore_eos=True)
        assert out.tokens == want
        assert out.finish_reason == "length"
        assert out.usage == {
            "prompt_tokens": len(prompt),
            "completion_tokens": len(want),
            "total_tokens": len(prompt) + len(want),
        }


def test_stream_adds_up_to_generate_and_chat_templates_apply():
    g = gold("qwen3_chat")
    model = rinfer.Generator.load(DATA / "qwen3_chat")
    case = g["chat_cases"][1]
    assert model.apply_chat_template(case["messages"]) == case["text"]
    full = model.generate(case["messages"], max_tokens=32)
    deltas = list(model.stream(case["messages"], max_tokens=32))
    assert "".join(d["text"] for d in deltas) == full.text
    assert [d["token"] for d in deltas] == full.tokens
    assert deltas[-1]["finish_reason"] == full.finish_reason
    assert all(d["finish_reason"] is None for d in deltas[:-1])


def test_async_stream_and_close():
    model = rinfer.Generator.load(DATA / "qwen3")

    async def collect() -> str:
        text = ""
        async for d in rinfer.astream(model, "The cat", max_tokens=12, ignore_eos=True):
            text += d["text"]
        return text

    assert asyncio.run(collect()) == model.generate("The cat", max_tokens=12, ignore_eos=True).text
    s = model.stream("The cat", max_tokens=50, ignore_eos=True)
    next(s)
    s.close()
    with pytest.raises(StopIteration):
        next(s)


def test_seeded_sampling_stop_strings_and_logprobs():
    model = rinfer.Generator.load(DATA / "qwen3")
    kw = {"max_tokens": 16, "temperature": 0.8, "top_p": 0.9, "seed": 5, "ignore_eos": True}
    assert model.generate("The cat", **kw).tokens == model.generate("The cat", **kw).tokens
    free = model.generate("The cat", max_tokens=30, ignore_eos=True).text
    stop = free[6:9]
    out = model.generate("The cat", max_tokens=30, ignore_eos=True, stop=[stop])
    assert out.finish_reason == "stop" and stop not in out.text
    lp = model.generate("The cat", max_tokens=3, logprobs=2, ignore_eos=True).logprobs
    assert len(lp) == 3 and all(len(top) == 2 and top[0][1] >= top[1][1] for _, top in lp)


def test_bad_arguments_are_typed_errors():
    model = rinfer.Generator.load(DATA / "qwen3")
    with pytest.raises(rinfer.InvalidInputError):
        model.generate("x", temperature=-1.0)
    with pytest.raises(rinfer.InvalidInputError):
        model.generate("x", max_tokens=0)
    with pytest.raises(TypeError):
        model.generate(3.5)
    with pytest.raises(rinfer.UnsupportedError):
        model.apply_chat_template([{"role": "user", "content": "hi"}])


def test_concurrent_callers_share_one_batch():
    from concurrent.futures import ThreadPoolExecutor

    g = gold("llama3")
    model = rinfer.Generator.load(DATA / "llama3")
    before = model.stats()["steps"]
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda p: model.generate(p, max_tokens=64, ignore_eos=True).tokens, g["prompts"]))
    assert outs == g["greedy"]
    # Sharing the batch: far fewer steps than 4 sequences one after another.
    assert model.stats()["steps"] - before < 3 * 64
    assert model.stats()["active"] == 0 and model.stats()["reserved"] == 0


def test_overload_is_a_typed_error():
    model = rinfer.Generator.load(DATA / "qwen3", max_batch_tokens=1, max_waiting=0)
    s = model.stream("The cat", max_tokens=200, ignore_eos=True)
    next(s)
    with pytest.raises(rinfer.OverloadedError):
        model.generate("The cat", max_tokens=4)
    s.close()


def test_bf16_kv_cache_generates_and_stats_report_blocks():
    import time

    model = rinfer.Generator.load(DATA / "gemma3", kv_cache_dtype="bf16", max_batch_tokens=100)
    st = model.stats()
    assert st["cache_dtype"] == "bf16" and st["cache_block_size"] == 16
    assert (st["cache_blocks_total"], st["cache_blocks_in_use"], st["cache_blocks_reserved"]) == (7, 0, 0)
    # gemma3's tiny config: 3 layers x (keys, values) x 2 kv heads x 24 x 16 positions, 2 bytes each
    assert st["cache_block_bytes"] == 3 * 2 * 2 * 24 * 16 * 2
    out = model.generate("The cat", max_tokens=20, ignore_eos=True)
    assert len(out.tokens) == 20 and out.finish_reason == "length"
    assert model.stats()["cache_blocks_in_use"] == 0
    prompt = model.encode_prompt("The cat")
    s = model.stream("The cat", max_tokens=200, ignore_eos=True)
    next(s)
    st = model.stats()
    if st["active"] == 1:  # still running (it may already have finished on a fast machine)
        need = -(-(len(prompt) + 200) // 16)
        assert st["cache_blocks_reserved"] == need, st
        assert 1 <= st["cache_blocks_in_use"] <= need, st
        assert st["cache_blocks_total"] == max(7, need), "a sequence larger than the pool grows it"
    s.close()
    deadline = time.monotonic() + 10
    while model.stats()["active"] and time.monotonic() < deadline:
        time.sleep(0.005)
    st = model.stats()
    assert (st["cache_blocks_total"], st["cache_blocks_in_use"], st["cache_blocks_reserved"]) == (7, 0, 0)
    assert rinfer.Generator.load(DATA / "qwen3").stats()["cache_dtype"] == "f32"


def test_bad_kv_cache_dtype_is_a_typed_error():
    with pytest.raises(rinfer.InvalidInputError, match='"f32", "bf16"'):
        rinfer.Generator.load(DATA / "qwen3", kv_cache_dtype="f16")


def test_server_kv_cache_setting_and_block_metrics(monkeypatch):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from pydantic import ValidationError
    from rinfer.server import Settings, create_app

    monkeypatch.setenv("RINFER_KV_CACHE_DTYPE", "bf16")
    settings = Settings(model_path=str(DATA / "qwen3_chat"))
    assert settings.kv_cache_dtype == "bf16"
    with pytest.raises(ValidationError):
        Settings(model_path=str(DATA / "qwen3_chat"), kv_cache_dtype="f16")
    with TestClient(create_app(settings)) as c:
        assert c.app.state.generator.stats()["cache_dtype"] == "bf16"
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        assert c.post("/v1/chat/completions", json=body).status_code == 200
        text = c.get("/metrics").text
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line.startswith("rinfer_")}
    assert lines["rinfer_generation_cache_blocks_in_use"] == 0
    assert lines["rinfer_generation_cache_blocks_total"] == 2048  # the default 32768 positions
    assert "rinfer_generation_cache_blocks_reserved" in lines
