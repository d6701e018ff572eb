"""TEI's ``POST /embed_sparse`` for a sparse (SPLADE) model: per input, the non-zero
vocabulary weights as ``{"index", "value"}`` pairs."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request

from ..schemas import EmbedSparseRequest
from ..service import check_count, json_response, model_of

router = APIRouter(tags=["tei"])


@router.post("/embed_sparse", summary="Sparse (SPLADE) vectors of texts (TEI-compatible)")
async def embed_sparse(body: EmbedSparseRequest, request: Request):
    if body.truncation_direction.lower() != "right":
        raise HTTPException(422, "truncation_direction Left is not supported; use Right")
    model = model_of(request, "sparse", "embed_sparse")
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    check_count(request, len(texts))
    vectors = await asyncio.to_thread(model.encode_sparse, texts, truncate=body.truncate, prompt_name=body.prompt_name)
    return json_response(
        [[{"index": int(i), "value": float(v)} for i, v in zip(idx.tolist(), val.tolist())] for idx, val in vectors]
    )
