"""Regressions found by benches/reliability.py (load and faults of `rinfer serve`)."""

from __future__ import annotations

import asyncio

import httpx
from rinfer.server import Settings, create_app


def test_abandoned_requests_give_their_queue_slots_back(model_dir):
    """Requests whose deadline passed (or whose client left) stay in the batcher's queue
    until it next forms a batch; they held queue slots there, so live requests were
    refused with 429 while few were in flight. The batcher here waits 2 s for company:
    two requests expire in its queue (503), then a third still gets in."""
    app = create_app(Settings(model_path=str(model_dir), max_queue=2, max_wait_ms=2000.0))

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c,
        ):
            late = {"X-Request-Timeout": "0.05"}
            expired = await asyncio.gather(
                *(c.post("/embed", json={"inputs": f"late {i}"}, headers=late) for i in (1, 2))
            )
            assert [r.status_code for r in expired] == [503, 503]
            assert app.state.embedder.batcher_stats()["queued"] == 2  # still queued, unrun: no batch formed yet
            live = await c.post("/embed", json={"inputs": "live"})
            assert live.status_code == 200, live.text
            # the limit still holds for live requests: two waiting, the third refused
            first = [asyncio.ensure_future(c.post("/embed", json={"inputs": f"wait {i}"})) for i in (1, 2)]
            await asyncio.sleep(0.2)
            refused = await c.post("/embed", json={"inputs": "one too many"})
            assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
            assert [r.status_code for r in await asyncio.gather(*first)] == [200, 200]
            assert app.state.batcher_slots.held == 0

    asyncio.run(main())
