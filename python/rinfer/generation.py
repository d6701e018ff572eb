"""Async streaming of a :class:`rinfer.Generator`: ``async for delta in
rinfer.astream(model, prompt, **sampling)``. Each step runs in a worker thread
(the engine releases the GIL), so the event loop keeps serving; cancelling the
consuming task, or leaving the loop early, closes the stream and frees the
sequence's cache at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rinfer._rinfer import Delta, Generator


async def astream(model: Generator, prompt: Any, **sampling: Any) -> AsyncIterator[Delta]:
    """Text deltas of ``model.stream(prompt, **sampling)`` as an async iterator."""
    stream = await asyncio.to_thread(model.stream, prompt, **sampling)
    done = object()
    try:
        while True:
            delta = await asyncio.to_thread(next, stream, done)
            if delta is done:
                return
            yield delta
    finally:
        stream.close()
