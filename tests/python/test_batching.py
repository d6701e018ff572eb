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


def test_a_lone_request_does_not_wait_for_company(model_dir):
    """Continuous batching (the default): a lone request runs as soon as the worker is
    free; only an explicit max_wait makes it wait for others."""
    import time

    async def one(model) -> float:
        await model.aencode("warm up")
        t = time.perf_counter()
        await model.aencode("a lone query")
        return time.perf_counter() - t

    waiting = rinfer.Embedder.load(model_dir, max_wait_ms=300.0)
    assert asyncio.run(one(waiting)) >= 0.29
    model = rinfer.Embedder.load(model_dir)
    assert asyncio.run(one(model)) < 0.15
    assert model.batcher_stats()["batches"] == 2


def test_continuous_batching_still_coalesces_under_load(model_dir):
    model = rinfer.Embedder.load(model_dir)
    texts = texts_of_mixed_lengths(128)

    async def main():
        return await asyncio.gather(*(model.aencode(t) for t in texts))

    got = asyncio.run(main())
    want = model.encode(texts)
    assert all(np.abs(g - w).max() <= 1e-6 for g, w in zip(got, want))
    assert model.batcher_stats()["batches"] < 128


def test_return_tokens_counts_what_the_engine_ran(model_dir):
    model = rinfer.Embedder.load(model_dir)
    texts = ["short", "a somewhat longer text with more word pieces", "word " * 400]

    async def main():
        return await model.aencode(texts, return_tokens=True), await model.aencode("one", return_tokens=True)

    (vectors, tokens), (one, one_tokens) = asyncio.run(main())
    assert vectors.shape == (3, 384) and one.shape == (384,)
    assert tokens == sum(len(ids) for ids in model.tokenize(texts)) and one_tokens == len(model.tokenize("one")[0])


def test_results_reach_several_event_loops(model_dir):
    """Each loop gets its own inbox; a closed loop's is dropped, a new loop works."""
    import threading

    model = rinfer.Embedder.load(model_dir)
    want = model.encode("x")
    out = []

    async def call():
        return await model.aencode("x")

    def in_thread():
        out.append(asyncio.run(call()))

    threads = [threading.Thread(target=in_thread) for _ in range(4)]
    for t in threads:
        t.start()
    got_here = [asyncio.run(call()) for _ in range(3)]
    for t in threads:
        t.join()
    assert len(out) == 4
    assert all(np.abs(g - want).max() <= 1e-6 for g in out + got_here)
