"""In-process dynamic batching: aencode from asyncio and the blocking variant."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import rinfer


def texts_of_mixed_lengths(n: int) -> list[str]:
    return [("word " * (1 + (i * 37) % 120)).strip() + f" {i}" for i in range(n)]


def test_200_concurrent_aencode_calls_are_coalesced(model_dir):
    model = rinfer.Embedder.load(model_dir, max_wait_ms=5.0)
    texts = texts_of_mixed_lengths(200)
    want = model.encode(texts)

    async def main():
        return await asyncio.gather(*(model.aencode(t) for t in texts))

    got = asyncio.run(main())
    for i, g in enumerate(got):
        assert g.shape == (384,)
        assert np.abs(g - want[i]).max() <= 1e-6, i
    stats = model.batcher_stats()
    assert stats["requests"] == 200 and stats["texts"] == 200
    assert stats["batches"] < 200, stats


def test_event_loop_keeps_running_while_batches_run(model_dir):
    model = rinfer.Embedder.load(model_dir)
    texts = texts_of_mixed_lengths(64)

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.create_task(ticker())
        await model.aencode(texts)
        t.cancel()
        return ticks

    assert asyncio.run(main()) > 10


def test_overload_raises_at_once(model_dir):
    model = rinfer.Embedder.load(model_dir, max_queue=2, max_wait_ms=200.0)
    long = "many words in a long text " * 40

    async def main():
        futs = []
        with pytest.raises(rinfer.OverloadedError):
            for _ in range(50):
                futs.append(model.aencode([long] * 8))
        done = await asyncio.gather(*futs)
        return len(done)

    accepted = asyncio.run(main())
    assert 1 <= accepted < 50
    assert model.batcher_stats()["rejected"] >= 1


def test_cancelled_caller_does_not_break_the_batcher(model_dir):
    model = rinfer.Embedder.load(model_dir, max_wait_ms=20.0)

    async def main():
        doomed = asyncio.ensure_future(model.aencode(["cancel me"] * 4))
        await asyncio.sleep(0)
        doomed.cancel()
        ok = await model.aencode("still works")
        return doomed, ok

    doomed, ok = asyncio.run(main())
    assert doomed.cancelled()
    np.testing.assert_allclose(ok, model.encode("still works"), atol=1e-6)


def test_errors_reach_the_caller(model_dir):
    model = rinfer.Embedder.load(model_dir)

    async def main():
        return await model.aencode(["x", "word " * 500], truncate=False)

    with pytest.raises(rinfer.InvalidInputError):
        asyncio.run(main())
    with pytest.raises(TypeError):
        asyncio.run(model.aencode(3))


def test_blocking_batched_variant(model_dir):
    model = rinfer.Embedder.load(model_dir)
    got = model.encode_batched(["one", "two"])
    np.testing.assert_allclose(got, model.encode(["one", "two"]), atol=1e-6)


def test_expired_and_cancelled_requests_are_dropped_unrun(model_dir):
    # A long wait keeps requests queued; a short deadline expires them there.
    model = rinfer.Embedder.load(model_dir, max_wait_ms=300.0)

    async def main():
        with pytest.raises(TimeoutError):
            await model.aencode(["expires in the queue"] * 4, timeout_s=0.05)
        doomed = asyncio.ensure_future(model.aencode(["caller gives up"] * 4))
        await asyncio.sleep(0.01)
        doomed.cancel()
        return await model.aencode("after both")

    ok = asyncio.run(main())
    assert ok.shape == (384,)
    stats = model.batcher_stats()
    assert stats["dropped"] == 2, stats
    assert stats["texts"] == 1, stats  # only the last request was embedded
    with pytest.raises(rinfer.InvalidInputError):
        model.encode_batched("x", timeout_s=-1)
