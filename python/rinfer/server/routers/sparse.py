"""TEI's ``POST /embed_sparse`` for a sparse (SPLADE) model: per input, the non-zero
vocabulary weights as ``{"index", "value"}`` pairs."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..errors import ApiError
from ..schemas import EmbedSparseRequest
from ..service import check_count, json_response, model_of, run_engine, settings_of, truncate_of

router = APIRouter(tags=["tei"])


@router.post("/embed_sparse", summary="Sparse (SPLADE) vectors of texts (TEI-compatible)")
async def embed_sparse(body: EmbedSparseRequest, request: Request):
    model = model_of(request, "sparse", "embed_sparse")
    if body.truncation_direction.lower() != "right":
        raise ApiError(
            422,
            "validation",
            "truncation_direction Left is not supported for sparse models; use Right",
            param="truncation_direction",
        )
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    check_count(request, len(texts))
    prompt_name = body.prompt_name or settings_of(request).default_prompt_name
    vectors = await run_engine(
        request,
        len(texts),
        model.encode_sparse,
        texts,
        truncate=truncate_of(request, body.truncate),
        prompt_name=prompt_name,
        prompt=None if prompt_name else "",
    )
    return json_response(
        [[{"index": int(i), "value": float(v)} for i, v in zip(idx.tolist(), val.tolist())] for idx, val in vectors]
    )
