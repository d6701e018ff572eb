"""OpenAI-compatible embeddings: ``POST /v1/embeddings`` and ``GET /v1/models``."""

from __future__ import annotations

import asyncio
import base64

from fastapi import APIRouter, Request

from ..schemas import EmbeddingsRequest
from ..service import check_count, embed_texts, embedder_of, json_response, settings_of, shrink

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post("/embeddings", summary="Create embeddings (OpenAI-compatible)")
async def create_embeddings(body: EmbeddingsRequest, request: Request):
    model = embedder_of(request)
    inp = body.input
    if isinstance(inp, str):
        inp = [inp]
    if inp and isinstance(inp[0], int):
        inp = [inp]
    if inp and isinstance(inp[0], list):
        check_count(request, len(inp))
        vectors = await asyncio.to_thread(model.encode_ids, inp)
        tokens = sum(len(x) for x in inp)
    else:
        vectors, tokens = await embed_texts(request, inp, normalize=None, truncate=True, return_tokens=True)
    vectors = shrink(vectors, body.dimensions, renormalize=model.normalizes)
    if body.encoding_format == "base64":
        rows = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
    else:
        rows = list(vectors)
    data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(rows)]
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": body.model or settings_of(request).model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


@router.get("/models", summary="The served model (OpenAI-compatible)")
async def list_models(request: Request):
    name = settings_of(request).model_name
    return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "rinfer"}]}
